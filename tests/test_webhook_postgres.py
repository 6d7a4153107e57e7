"""The webhook under real concurrency on PostgreSQL: deliveries that overlap in time.

Each test holds the first delivery inside its transaction until PostgreSQL shows the second one
waiting for a lock, so the two really overlap (no sleeps, no luck).
"""

import time

import pytest
from django.test import Client
from django.utils import timezone

from refunds import gateway, services
from refunds.services import stripe_view
from refunds.models import ItemState, Refund, RefundOrigin, StripeEvent

from .concurrency import HeldCall, run_overlapping
from .conftest import skip_unless_postgres
from .stripe_payloads import charge_object, deliver, event, refund_object, refund_object_for
from .webhook_scenarios import states, stripe_event_transitions, submitted_refund

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_submission_task(monkeypatch):
    """Refunds stay as the test builds them: committed transactions would run submit_refund."""
    from refunds.tasks import submit_refund

    monkeypatch.setattr(submit_refund, "delay", lambda *args, **kwargs: None)


@pytest.fixture
def first_apply_held(monkeypatch) -> HeldCall:
    """stripe_view.apply_refund_status, whose first call (once armed) waits until released."""
    held = HeldCall(stripe_view.apply_refund_status)
    monkeypatch.setattr(stripe_view, "apply_refund_status", held)
    return held


def applied_by(held: HeldCall) -> list[str]:
    return [kwargs["by"].label for _, kwargs in held.calls]


def deliver_concurrently(first: dict, second: dict, *, hold: HeldCall) -> list:
    """Deliver two events from threads and connections of their own, the first held inside its
    transaction until the second waits for a lock; returns the status codes."""
    return run_overlapping(
        lambda: deliver(Client(), first).status_code,
        lambda: deliver(Client(), second).status_code,
        held=hold,
    )


def test_the_same_event_delivered_twice_at_once_is_applied_once(paid_order, back_office_user, fake_stripe, first_apply_held):
    skip_unless_postgres()
    refund = submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_concurrent")
    evt = event("refund.updated", refund_object_for(refund, status="succeeded"))

    codes = deliver_concurrently(evt, evt, hold=first_apply_held)

    assert codes == [200, 200]
    assert applied_by(first_apply_held) == [f"Stripe event {evt['id']}"]  # the second delivery applied nothing
    assert StripeEvent.objects.filter(stripe_event_id=evt["id"]).count() == 1
    assert set(states(paid_order.items.all())) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    for item in paid_order.items.all():
        assert stripe_event_transitions(item=item).count() == 1


def test_two_events_about_one_new_dashboard_refund_at_once_record_it_once(paid_order, fake_stripe, first_apply_held):
    skip_unless_postgres()
    pi = paid_order.stripe_payment_intent_id
    now = int(time.time())
    created = event("refund.created", refund_object(id="re_dash_race", status="pending", amount=500, payment_intent=pi), created=now - 2)
    refunded = event(
        "charge.refunded",
        charge_object(refunds=[refund_object(id="re_dash_race", status="succeeded", amount=500, payment_intent=pi)], payment_intent=pi),
        created=now,
    )

    codes = deliver_concurrently(created, refunded, hold=first_apply_held)

    assert codes == [200, 200]
    refund = Refund.objects.get(stripe_refund_id="re_dash_race")
    assert (refund.origin, refund.status, refund.amount) == (RefundOrigin.STRIPE_DASHBOARD, "succeeded", 500)
    assert refund.events.count() == 2
    assert set(states(paid_order.items.all())) == {ItemState.PAYMENT_CAPTURED}


def test_a_webhook_arriving_while_submit_refund_talks_to_stripe_waits_and_sees_the_stripe_id(
    paid_order, back_office_user, fake_stripe, monkeypatch, time_machine
):
    """submit_refund holds the refund's row lock during the Stripe call; the webhook, matched by
    metadata, waits for it and then applies on top of what it saved."""
    skip_unless_postgres()
    # One frozen second: the webhook's event and submit's answer tie, whatever the threads take.
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    [refund] = services.request_refund(items=paid_order.items.all(), user=back_office_user)
    real_create = fake_stripe.create_refund

    def create_then_fail_at_stripe(**kwargs):
        created = real_create(**kwargs)
        # Stripe fails the refund in the same second; a tie with submit's answer is settled by
        # asking Stripe, which by then says failed.
        fake_stripe.set_status(created.id, "failed")
        return created

    # submit_refund is inside its Stripe call, the refund's row locked, until the webhook waits for it.
    held = HeldCall(create_then_fail_at_stripe)
    monkeypatch.setattr(gateway, "create_refund", held)
    evt = event("refund.updated", refund_object_for(refund, id="re_fake000001", status="failed"))

    submitted, code = run_overlapping(
        lambda: services.submit_refund(refund_id=refund.pk).status,
        lambda: deliver(Client(), evt).status_code,
        held=held,
    )

    assert (submitted, code) == ("succeeded", 200)
    refund.refresh_from_db()
    assert (refund.stripe_refund_id, refund.status) == ("re_fake000001", "failed")
    assert set(states(paid_order.items.all())) == {ItemState.PAYMENT_REFUND_FAILED}
