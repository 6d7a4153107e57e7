"""Reconciliation: lost tasks and missing webhooks are repaired by the job, not by a user noticing."""

import datetime as dt
import logging

import pytest

from refunds import services
from refunds.exceptions import StripeFinalError, StripeRetryableError
from refunds.models import ItemState, ItemTransition, Refund, RefundStatus
from refunds.tasks import reconcile_refunds

from .factories import paid_order_with_items
from .fakes import WorkerDied

pytestmark = pytest.mark.django_db

CREATED_AT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(CREATED_AT, tick=False)

    def at(**delta):
        time_machine.move_to(CREATED_AT + dt.timedelta(**delta), tick=False)
    return at


def lost_refund(back_office_user, order=None) -> Refund:
    """A refund committed and queued whose submit_refund task never ran (broker down, worker lost)."""
    order = order or paid_order_with_items(1000, 2000)
    # Outside a transaction=True test, on_commit callbacks (the task) do not run.
    [refund] = services.request_refund(items=order.items.all(), user=back_office_user)
    return refund


def pending_refund(back_office_user, fake_stripe) -> Refund:
    """A refund Stripe answered `pending`; its refund.updated webhook never arrives."""
    fake_stripe.next_status = "pending"
    refund = services.submit_refund(refund_id=lost_refund(back_office_user).pk)
    fake_stripe.next_status = "succeeded"
    assert refund.status == RefundStatus.PENDING
    return refund


def item_states(refund):
    return set(refund.items.values_list("state", flat=True))


def test_a_refund_whose_task_was_lost_is_sent_by_the_job(back_office_user, fake_stripe, clock):
    refund = lost_refund(back_office_user)
    clock(minutes=6)

    assert reconcile_refunds.delay().get() == {"resubmitted": 1, "synced": 0, "repaired": 1, "errors": 0}

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.stripe_refund_id == "re_fake000001"
    assert [call["idempotency_key"] for call in fake_stripe.create_calls] == [refund.idempotency_key]
    assert item_states(refund) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_a_refund_queued_4_minutes_ago_is_left_to_its_task(back_office_user, fake_stripe, clock):
    refund = lost_refund(back_office_user)
    clock(minutes=4)

    reconcile_refunds.delay()

    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.QUEUED
    assert fake_stripe.create_calls == []


def test_a_refund_sent_a_minute_ago_by_a_retry_is_left_to_its_task(back_office_user, fake_stripe, clock):
    refund = lost_refund(back_office_user)
    fake_stripe.errors = [StripeRetryableError("Stripe 503")]
    clock(minutes=30)
    with pytest.raises(StripeRetryableError):
        services.submit_refund(refund_id=refund.pk)  # the task's attempt, to be retried by Celery
    clock(minutes=31)

    reconcile_refunds.delay()

    assert len(fake_stripe.create_calls) == 1


def test_reconciling_twice_sends_the_refund_once(back_office_user, fake_stripe, clock):
    fake_stripe.honours_idempotency_keys = False  # as localstripe: our code must not rely on it
    lost_refund(back_office_user)
    clock(minutes=6)

    reconcile_refunds.delay()
    reconcile_refunds.delay()

    assert fake_stripe.refund_count == 1


def test_a_never_attempted_refund_older_than_the_key_lifetime_is_sent_once(back_office_user, fake_stripe, clock, settings):
    """Its key may be gone at Stripe, but nothing was ever sent with it: no lookup needed."""
    refund = lost_refund(back_office_user)
    clock(hours=25)
    assert dt.timedelta(hours=25) > settings.STRIPE_IDEMPOTENCY_KEY_TTL

    reconcile_refunds.delay()

    refund.refresh_from_db()
    assert (refund.status, refund.submit_attempts) == (RefundStatus.SUCCEEDED, 1)
    assert fake_stripe.refund_count == 1


def test_a_refund_stripe_made_before_the_worker_died_is_found_not_sent_again_after_the_key_expired(
    back_office_user, fake_stripe, clock
):
    fake_stripe.honours_idempotency_keys = False  # the key expired after 24 h
    refund = lost_refund(back_office_user)
    fake_stripe.die_after_create = True
    with pytest.raises(WorkerDied):
        services.submit_refund(refund_id=refund.pk)
    clock(hours=25)

    reconcile_refunds.delay()

    refund.refresh_from_db()
    assert fake_stripe.refund_count == 1 and len(fake_stripe.create_calls) == 1
    assert (refund.status, refund.stripe_refund_id) == (RefundStatus.SUCCEEDED, "re_fake000001")


def test_a_pending_refund_whose_webhook_never_came_is_settled_from_stripe(back_office_user, fake_stripe, clock):
    refund = pending_refund(back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")  # Stripe's view; no webhook came
    clock(minutes=61)

    assert reconcile_refunds.delay().get() == {"resubmitted": 0, "synced": 1, "repaired": 1, "errors": 0}

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert item_states(refund) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    assert set(ItemTransition.objects.filter(transition="refund_succeeded").values_list("by", "refund_id")) == {
        ("reconciliation job", refund.pk)
    }


def test_a_pending_refund_stripe_failed_fails_its_items(back_office_user, fake_stripe, clock):
    refund = pending_refund(back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "failed", failure_reason="expired_or_canceled_card")
    clock(minutes=61)

    reconcile_refunds.delay()

    refund.refresh_from_db()
    assert (refund.status, refund.failure_reason) == (RefundStatus.FAILED, "expired_or_canceled_card")
    assert item_states(refund) == {ItemState.PAYMENT_REFUND_FAILED}


def test_a_refund_pending_for_59_minutes_is_not_asked_about(back_office_user, fake_stripe, clock):
    refund = pending_refund(back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")
    clock(minutes=59)

    reconcile_refunds.delay()

    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.PENDING


def test_a_refund_stripe_keeps_pending_is_asked_about_again_an_hour_later(back_office_user, fake_stripe, clock, monkeypatch):
    refund = pending_refund(back_office_user, fake_stripe)
    asked = spy_on_retrieve(monkeypatch, fake_stripe)

    for minutes in (61, 90, 122):
        clock(minutes=minutes)
        reconcile_refunds.delay()

    assert asked == [refund.stripe_refund_id] * 2  # at 61 and at 122 minutes, not at 90
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.PENDING


def test_refunds_stripe_keeps_pending_take_turns_when_more_than_the_limit(
    back_office_user, fake_stripe, clock, monkeypatch, settings
):
    settings.REFUND_RECONCILE_LIMIT = 1
    first = pending_refund(back_office_user, fake_stripe)
    second = pending_refund(back_office_user, fake_stripe)
    asked = spy_on_retrieve(monkeypatch, fake_stripe)

    clock(minutes=61)
    reconcile_refunds.delay()
    clock(minutes=62)
    reconcile_refunds.delay()

    assert asked == [first.stripe_refund_id, second.stripe_refund_id]


def test_each_run_handles_at_most_the_limit_oldest_first(back_office_user, fake_stripe, clock, settings):
    settings.REFUND_RECONCILE_LIMIT = 2
    refunds = []
    for minute in range(3):
        clock(minutes=minute)
        refunds.append(lost_refund(back_office_user))
    clock(minutes=10)

    report = services.reconcile_refunds()

    assert [repair.refund_id for repair in report.resubmitted] == [refunds[0].pk, refunds[1].pk]
    assert Refund.objects.get(pk=refunds[2].pk).status == RefundStatus.QUEUED


def test_a_stripe_outage_on_one_refund_does_not_stop_the_others(back_office_user, fake_stripe, clock, caplog):
    first, second = lost_refund(back_office_user), lost_refund(back_office_user)
    fake_stripe.errors = [StripeRetryableError("Stripe 503: service unavailable", http_status=503)]
    clock(minutes=6)

    with caplog.at_level(logging.INFO, logger="refunds.settlement"):
        result = reconcile_refunds.delay().get()

    assert result == {"resubmitted": 2, "synced": 0, "repaired": 1, "errors": 1}
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, first.last_error) == (RefundStatus.QUEUED, "Stripe unavailable, will retry: Stripe 503: service unavailable")
    assert second.status == RefundStatus.SUCCEEDED
    assert f"refund {first.pk} not repaired, Stripe: Stripe 503" in caplog.text
    assert f"refund {second.pk} repaired: queued → succeeded" in caplog.text

    clock(minutes=12)
    reconcile_refunds.delay()
    assert Refund.objects.get(pk=first.pk).status == RefundStatus.SUCCEEDED
    assert fake_stripe.refund_count == 2


def test_a_refund_stripe_does_not_know_does_not_stop_the_others(back_office_user, fake_stripe, clock, monkeypatch):
    unknown, known = pending_refund(back_office_user, fake_stripe), pending_refund(back_office_user, fake_stripe)
    fake_stripe.set_status(known.stripe_refund_id, "succeeded")
    retrieve = fake_stripe.retrieve_refund

    def retrieve_or_404(stripe_refund_id):
        if stripe_refund_id == unknown.stripe_refund_id:
            raise StripeFinalError(f"No such refund: '{stripe_refund_id}'", code="resource_missing", http_status=404)
        return retrieve(stripe_refund_id)
    monkeypatch.setattr("refunds.gateway.retrieve_refund", retrieve_or_404)
    clock(minutes=61)

    report = services.reconcile_refunds()

    assert [(repair.refund_id, repair.error) for repair in report.errors] == [
        (unknown.pk, f"No such refund: '{unknown.stripe_refund_id}'")
    ]
    assert Refund.objects.get(pk=known.pk).status == RefundStatus.SUCCEEDED
    assert Refund.objects.get(pk=unknown.pk).status == RefundStatus.PENDING


def spy_on_retrieve(monkeypatch, fake_stripe) -> list[str]:
    asked = []
    retrieve = fake_stripe.retrieve_refund

    def spy(stripe_refund_id):
        asked.append(stripe_refund_id)
        return retrieve(stripe_refund_id)
    monkeypatch.setattr("refunds.gateway.retrieve_refund", spy)
    return asked
