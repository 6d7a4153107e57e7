"""Submitting a queued refund to Stripe: exactly one Stripe refund, whatever fails on the way."""

import pytest
from celery.exceptions import Retry

from refunds import services
from refunds.exceptions import StripeFinalError, StripeRetryableError
from refunds.models import ItemState, ItemTransition, Refund, RefundStatus
from refunds.tasks import submit_refund

from .fakes import WorkerDied

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_refund(paid_order, back_office_user, fake_stripe, django_capture_on_commit_callbacks):
    """A whole-order refund committed and queued, its task not yet run."""
    with django_capture_on_commit_callbacks(execute=False):
        [refund] = services.request_refund(items=paid_order.items.all(), user=back_office_user)
    return refund


def item_states(refund):
    return set(refund.items.values_list("state", flat=True))


@pytest.mark.parametrize(
    ("stripe_status", "item_state"),
    [
        ("succeeded", ItemState.PAYMENT_REFUND_SUCCEEDED),
        ("pending", ItemState.PAYMENT_REFUND_PENDING),
        ("requires_action", ItemState.PAYMENT_REFUND_PENDING),
        ("failed", ItemState.PAYMENT_REFUND_FAILED),
        ("canceled", ItemState.PAYMENT_REFUND_FAILED),
    ],
)
def test_stripe_answer_moves_the_items(queued_refund, fake_stripe, stripe_status, item_state):
    fake_stripe.next_status = stripe_status
    fake_stripe.next_failure_reason = "expired_or_canceled_card" if stripe_status == "failed" else ""

    submit_refund.delay(queued_refund.pk)

    queued_refund.refresh_from_db()
    assert queued_refund.status == stripe_status
    assert queued_refund.stripe_refund_id == "re_fake000001"
    assert item_states(queued_refund) == {item_state}
    if stripe_status == "failed":
        assert queued_refund.failure_reason == "expired_or_canceled_card"
    if stripe_status == "canceled":
        assert queued_refund.failure_reason == "canceled"


def test_what_is_sent_to_stripe(queued_refund, paid_order, fake_stripe):
    submit_refund.delay(queued_refund.pk)

    [call] = fake_stripe.create_calls
    item_ids = ",".join(str(pk) for pk in paid_order.items.order_by("pk").values_list("pk", flat=True))
    assert call == {
        "payment_intent": paid_order.stripe_payment_intent_id,
        "amount": 4045,
        "idempotency_key": queued_refund.idempotency_key,
        "metadata": {
            "order_reference": paid_order.reference,
            "oms_refund_id": str(queued_refund.pk),
            "oms_idempotency_key": queued_refund.idempotency_key,
            "oms_item_ids": item_ids,
        },
        "reason": "",
    }


def test_the_answer_is_audited_as_the_stripe_api_response(queued_refund):
    submit_refund.delay(queued_refund.pk)
    moved = ItemTransition.objects.filter(transition="refund_succeeded")
    assert moved.count() == 3
    assert set(moved.values_list("by", "refund_id")) == {("Stripe API response", queued_refund.pk)}


def test_running_the_task_twice_creates_one_stripe_refund(queued_refund, fake_stripe):
    fake_stripe.honours_idempotency_keys = False  # as localstripe: our code must not rely on it

    submit_refund.delay(queued_refund.pk)
    submit_refund.delay(queued_refund.pk)

    assert fake_stripe.refund_count == 1
    assert len(fake_stripe.create_calls) == 1


@pytest.mark.parametrize("fault", ["timeout", "connection error", "429 rate limit", "500 server error"])
def test_a_retryable_fault_is_retried_with_the_same_idempotency_key(queued_refund, fake_stripe, fault):
    fake_stripe.errors = [StripeRetryableError(f"Stripe {fault}")]

    with pytest.raises(StripeRetryableError):
        services.submit_refund(refund_id=queued_refund.pk)
    queued_refund.refresh_from_db()
    assert queued_refund.status == RefundStatus.QUEUED
    assert queued_refund.last_error == f"Stripe unavailable, will retry: Stripe {fault}"
    assert item_states(queued_refund) == {ItemState.PAYMENT_REFUND_PENDING}

    services.submit_refund(refund_id=queued_refund.pk)

    queued_refund.refresh_from_db()
    assert queued_refund.status == RefundStatus.SUCCEEDED
    assert queued_refund.last_error == ""
    assert [call["idempotency_key"] for call in fake_stripe.create_calls] == [queued_refund.idempotency_key] * 2
    assert fake_stripe.refund_count == 1


def run_like_a_worker(task, *args, max_runs: int = 20) -> tuple[object, list[Retry]]:
    """Run `task` eagerly, then every retry it schedules, as a worker would (without waiting
    out the countdowns). Returns the last run's result and the retries scheduled on the way.

    With task_eager_propagates, Celery's autoretry surfaces as `Retry` in the caller, carrying
    the signature the worker would receive next (retries counted, countdown set).
    """
    signature, retries = task.s(*args), []
    for _ in range(max_runs):
        try:
            return signature.apply().get(), retries
        except Retry as retry:
            retries.append(retry)
            signature = retry.sig
    raise AssertionError(f"still retrying after {max_runs} runs")


def test_the_task_retries_a_retryable_fault_with_the_same_key_and_backs_off(queued_refund, fake_stripe):
    fake_stripe.errors = [StripeRetryableError("Stripe 503"), StripeRetryableError("Stripe timeout")]

    result, retries = run_like_a_worker(submit_refund, queued_refund.pk)

    assert result == "succeeded"
    assert [call["idempotency_key"] for call in fake_stripe.create_calls] == [queued_refund.idempotency_key] * 3
    assert fake_stripe.refund_count == 1
    assert [retry.sig.options["retries"] for retry in retries] == [1, 2]
    assert [retry.sig.args for retry in retries] == [(queued_refund.pk,), (queued_refund.pk,)]
    # Exponential backoff with full jitter: at most 5 s before the first retry, 10 s before the second.
    assert all(0 <= retry.when <= limit for retry, limit in zip(retries, [5, 10], strict=True))


def test_the_task_gives_up_after_its_retries_leaving_the_refund_queued_for_reconciliation(
    queued_refund, fake_stripe
):
    fake_stripe.errors = [StripeRetryableError("Stripe 503")] * 50

    with pytest.raises(StripeRetryableError):
        run_like_a_worker(submit_refund, queued_refund.pk, max_runs=50)

    # Several retries, then the worker stops: reconcile_refunds sends the refund later.
    assert 6 <= len(fake_stripe.create_calls) < 50
    queued_refund.refresh_from_db()
    assert queued_refund.status == RefundStatus.QUEUED
    assert queued_refund.last_error == "Stripe unavailable, will retry: Stripe 503"


def test_the_task_does_not_retry_a_final_error(queued_refund, fake_stripe):
    fake_stripe.errors = [StripeFinalError("No such payment_intent", http_status=400)]

    result, retries = run_like_a_worker(submit_refund, queued_refund.pk)

    assert (result, retries) == ("failed", [])
    assert len(fake_stripe.create_calls) == 1


def test_a_final_error_fails_the_refund_and_its_items(queued_refund, fake_stripe):
    fake_stripe.errors = [StripeFinalError("Refund amount (€40.45) is greater than charge amount", code="amount_too_large", http_status=400)]

    assert submit_refund.delay(queued_refund.pk).get() == "failed"

    queued_refund.refresh_from_db()
    assert queued_refund.status == RefundStatus.FAILED
    assert queued_refund.failure_reason == "stripe_error: amount_too_large"
    assert "greater than charge amount" in queued_refund.last_error
    assert item_states(queued_refund) == {ItemState.PAYMENT_REFUND_FAILED}
    assert fake_stripe.refund_count == 0


def test_failed_items_can_be_refunded_again(queued_refund, fake_stripe, back_office_user, paid_order):
    fake_stripe.errors = [StripeFinalError("No such payment_intent", http_status=400)]
    submit_refund.delay(queued_refund.pk)

    [retry] = services.request_refund(items=paid_order.items.all(), user=back_office_user)

    assert retry.amount == queued_refund.amount
    assert item_states(retry) == {ItemState.PAYMENT_REFUND_PENDING}


@pytest.mark.parametrize("keys_honoured", [True, False], ids=["stripe", "emulator-ignoring-keys"])
def test_a_crash_between_stripe_answer_and_commit_then_a_retry_leaves_one_stripe_refund(
    queued_refund, fake_stripe, keys_honoured
):
    fake_stripe.honours_idempotency_keys = keys_honoured
    fake_stripe.die_after_create = True

    with pytest.raises(WorkerDied):
        services.submit_refund(refund_id=queued_refund.pk)
    queued_refund.refresh_from_db()
    assert (queued_refund.status, queued_refund.stripe_refund_id) == (RefundStatus.QUEUED, None)

    services.submit_refund(refund_id=queued_refund.pk)

    queued_refund.refresh_from_db()
    assert fake_stripe.refund_count == 1
    assert queued_refund.stripe_refund_id == next(iter(fake_stripe.refunds))
    assert queued_refund.status == RefundStatus.SUCCEEDED
    assert queued_refund.submit_attempts == 2


def test_a_refund_that_no_longer_exists_is_logged_not_retried(db, fake_stripe):
    assert submit_refund.delay(987654).get() == "missing"
    assert fake_stripe.create_calls == []


def test_a_late_word_about_an_old_refund_does_not_move_items_a_newer_refund_handles(
    queued_refund, fake_stripe, back_office_user, paid_order
):
    from refunds.services import Actor

    fake_stripe.next_status = "failed"
    submit_refund.delay(queued_refund.pk)
    fake_stripe.next_status = "pending"
    [retry] = services.request_refund(items=paid_order.items.all(), user=back_office_user)
    submit_refund.delay(retry.pk)

    old = Refund.objects.get(pk=queued_refund.pk)
    moved = services.apply_refund_status(refund=old, status="succeeded", by=Actor.stripe_api())

    assert moved == []
    assert Refund.objects.get(pk=old.pk).status == RefundStatus.SUCCEEDED
    assert item_states(retry) == {ItemState.PAYMENT_REFUND_PENDING}


def test_an_event_older_than_stripes_answer_to_the_submission_changes_nothing(queued_refund, fake_stripe, client):
    from .stripe_payloads import deliver, event, refund_object_for

    submit_refund.delay(queued_refund.pk)  # Stripe answers: succeeded
    queued_refund.refresh_from_db()
    older = int(queued_refund.stripe_event_created_at.timestamp()) - 5
    stale = event("refund.created", refund_object_for(queued_refund, status="pending"), created=older)

    assert deliver(client, stale).status_code == 200

    queued_refund.refresh_from_db()
    assert queued_refund.status == RefundStatus.SUCCEEDED
    assert item_states(queued_refund) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
