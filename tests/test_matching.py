"""A Stripe refund is ours only when everything agrees (DESIGN.md §10): found by our Stripe id,
or by metadata `oms_refund_id` and `oms_idempotency_key` together, and its PaymentIntent,
currency and amount are our refund's. Anything else moves no item of ours; money on an order's
PaymentIntent is recorded as made outside this system, in its own currency, and a mismatch is a
`mismatched_refund` case."""

import logging
import time

import pytest

from refunds import services
from refunds.models import ItemState, Refund, RefundOrigin, RefundStatus, StripeEvent

from .factories import paid_order_with_items
from .stripe_payloads import deliver, event, refund_object, refund_object_for
from .webhook_scenarios import requested_refund, states, submitted_refund

pytestmark = pytest.mark.django_db

PENDING = ItemState.PAYMENT_REFUND_PENDING
NOW = int(time.time())


@pytest.fixture(autouse=True)
def _stripe(fake_stripe):
    return fake_stripe


def cases(caplog, kind: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "refunds.services.attention" and r.getMessage().startswith(f"attention case {kind}:")]


def test_a_dashboard_refund_typing_our_refund_id_without_the_key_moves_nothing(client, caplog, paid_order, back_office_user, fake_stripe):
    """Finding 1: refund.updated for re_x, succeeded, amount 1, USD, another order's PaymentIntent,
    metadata {"oms_refund_id": "<ours>"} and no key used to mark our queued refund succeeded."""
    refund = requested_refund(paid_order.items.all(), back_office_user)
    Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.QUEUED)  # its task not run yet
    other = paid_order_with_items(500)
    obj = refund_object(id="re_x", status="succeeded", amount=1, currency="usd",
                        payment_intent=other.stripe_payment_intent_id, metadata={"oms_refund_id": str(refund.pk)})

    response = deliver(client, event("refund.updated", obj))

    assert response.status_code == 200
    refund.refresh_from_db()
    assert (refund.status, refund.stripe_refund_id) == (RefundStatus.QUEUED, None)
    assert set(states(paid_order.items.all())) == {PENDING}
    assert "without the refund's idempotency key" in refund.warning
    assert len(cases(caplog, "mismatched_refund")) == 2  # names our refund; and USD on a EUR order
    # Money did leave on the other order's PaymentIntent: recorded there, in its own currency.
    outside = Refund.objects.get(stripe_refund_id="re_x")
    assert (outside.order, outside.origin, outside.amount, outside.currency) == (other, RefundOrigin.STRIPE_DASHBOARD, 1, "usd")
    # …and our refund is still sent to Stripe: submit_refund does not "return at once".
    services.submit_refund(refund_id=refund.pk)
    assert [call["amount"] for call in fake_stripe.create_calls][-1] == refund.amount


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"payment_intent": "pi_someone_elses"}, "its PaymentIntent pi_someone_elses is not the order's"),
        ({"currency": "usd"}, "its currency USD is not EUR"),
        ({"amount": 1}, "its amount 1 is not"),
    ],
    ids=["payment-intent", "currency", "amount"],
)
@pytest.mark.parametrize("matched_by", ["stripe id", "metadata with key"])
def test_a_stripe_refund_that_disagrees_in_any_field_moves_nothing(client, caplog, paid_order, back_office_user, change, problem, matched_by):
    if matched_by == "stripe id":
        refund = submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_ours")
        obj = refund_object_for(refund, status="succeeded")
    else:
        refund = requested_refund(paid_order.items.all(), back_office_user)
        Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.QUEUED)
        obj = refund_object_for(refund, id="re_by_metadata", status="succeeded")
    obj.update(change)

    response = deliver(client, event("refund.updated", obj))

    assert response.status_code == 200
    refund.refresh_from_db()
    assert refund.status in (RefundStatus.PENDING, RefundStatus.QUEUED)
    assert set(states(paid_order.items.all())) == {PENDING}
    assert problem in refund.warning
    assert any(problem in message for message in cases(caplog, "mismatched_refund"))


def test_a_stripe_refund_that_agrees_in_everything_is_applied(client, paid_order, back_office_user):
    refund = requested_refund(paid_order.items.all(), back_office_user)
    Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.QUEUED)

    deliver(client, event("refund.updated", refund_object_for(refund, id="re_all_agree", status="succeeded")))

    refund.refresh_from_db()
    assert (refund.status, refund.stripe_refund_id, refund.warning) == ("succeeded", "re_all_agree", "")
    assert set(states(paid_order.items.all())) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_stripes_answer_to_our_own_call_that_disagrees_is_not_applied(paid_order, back_office_user, fake_stripe, caplog, monkeypatch):
    refund = requested_refund(paid_order.items.all(), back_office_user)
    Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.QUEUED)
    real_create = fake_stripe.create_refund

    def create_in_another_currency(**kwargs):
        from dataclasses import replace
        return replace(real_create(**kwargs), currency="usd")

    monkeypatch.setattr("refunds.gateway.create_refund", create_in_another_currency)

    services.submit_refund(refund_id=refund.pk)

    refund.refresh_from_db()
    assert refund.status == RefundStatus.QUEUED and refund.stripe_refund_id is None
    assert set(states(paid_order.items.all())) == {PENDING}
    assert "its currency USD is not EUR" in refund.warning
    assert cases(caplog, "mismatched_refund")


def test_metadata_naming_one_of_our_orders_on_another_payment_intent_is_a_case(client, caplog, paid_order):
    other = paid_order_with_items(700)
    obj = refund_object(id="re_named_order", status="succeeded", amount=300,
                        payment_intent=other.stripe_payment_intent_id, metadata={"order_reference": paid_order.reference})

    assert deliver(client, event("refund.created", obj)).status_code == 200

    assert Refund.objects.get(stripe_refund_id="re_named_order").order == other  # recorded where the money left
    [case] = cases(caplog, "mismatched_refund")
    assert f"its metadata names order {paid_order.reference}" in case


# --- A late success of a superseded refund (finding 8) -----------------------------------------


def test_a_late_success_of_a_refund_whose_items_were_refunded_again_is_recorded_and_a_case(client, caplog, paid_order, back_office_user, fake_stripe):
    items = list(paid_order.items.order_by("pk"))
    first = submitted_refund(items, back_office_user, stripe_refund_id="re_first_try")
    deliver(client, event("refund.failed", refund_object_for(first, status="failed"), created=NOW - 60))
    assert set(states(items)) == {ItemState.PAYMENT_REFUND_FAILED}
    second = submitted_refund(items, back_office_user, stripe_refund_id="re_second_try")

    response = deliver(client, event("refund.updated", refund_object_for(first, status="succeeded"), created=NOW))

    assert response.status_code == 200
    first.refresh_from_db()
    assert first.status == "succeeded"  # Stripe's word about it is kept…
    assert set(states(items)) == {PENDING}  # …but the items stay with the newer refund
    assert f"its items were refunded again by refund #{second.pk}" in first.warning
    assert "may have been refunded twice" in first.warning
    [case] = cases(caplog, "possible_double_refund")
    assert f"(#{first.pk})" in case and paid_order.reference in case
    assert any(r.levelno == logging.ERROR and "possible_double_refund" in r.getMessage() for r in caplog.records)


def test_a_late_success_after_the_newer_refund_failed_too_is_no_double_refund_case(client, caplog, paid_order, back_office_user):
    items = list(paid_order.items.order_by("pk"))
    first = submitted_refund(items, back_office_user, stripe_refund_id="re_a")
    deliver(client, event("refund.failed", refund_object_for(first, status="failed"), created=NOW - 60))
    second = submitted_refund(items, back_office_user, stripe_refund_id="re_b")
    deliver(client, event("refund.failed", refund_object_for(second, status="failed"), created=NOW - 30))

    deliver(client, event("refund.updated", refund_object_for(first, status="succeeded"), created=NOW))

    assert not cases(caplog, "possible_double_refund")
    assert StripeEvent.objects.filter(error="").count() == 3
