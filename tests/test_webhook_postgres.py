"""The webhook under real concurrency on PostgreSQL: deliveries that overlap in time.

Each test holds the first delivery inside its transaction until PostgreSQL shows the second one
waiting for a lock, so the two really overlap (no sleeps, no luck).
"""

import threading
import time

import pytest
from django.db import close_old_connections, connection
from django.test import Client

from refunds import gateway, services
from refunds.services import stripe_view
from refunds.models import ItemState, Refund, RefundOrigin, StripeEvent

from .conftest import skip_unless_postgres
from .stripe_payloads import charge_object, deliver, event, refund_object, refund_object_for
from .webhook_scenarios import states, stripe_event_transitions, submitted_refund

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_submission_task(monkeypatch):
    """Refunds stay as the test builds them: committed transactions would run submit_refund."""
    from refunds.tasks import submit_refund

    monkeypatch.setattr(submit_refund, "delay", lambda *args, **kwargs: None)


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def first_apply_held(monkeypatch):
    """Once armed, the first call of stripe_view.apply_refund_status waits until released."""
    real = stripe_view.apply_refund_status
    entered, release = threading.Event(), threading.Event()
    calls, armed = [], []

    def held(**kwargs):
        if not armed:
            return real(**kwargs)
        calls.append(kwargs["by"].label)
        if len(calls) == 1:
            entered.set()
            assert release.wait(30), "never released"
        return real(**kwargs)

    monkeypatch.setattr(stripe_view, "apply_refund_status", held)

    def release_when_second_waits():
        assert entered.wait(30), "the first delivery never started applying"
        deadline = time.monotonic() + 30
        while lock_waiters() < 1:
            assert time.monotonic() < deadline, "the second delivery never waited for the first"
            time.sleep(0.01)
        release.set()

    held.calls = calls
    held.arm = lambda: armed.append(True)
    held.release_when_second_waits = release_when_second_waits
    return held


def deliver_concurrently(*events, hold):
    """Deliver each event from its own thread and connection; returns the status codes."""
    results = [None] * len(events)

    def run(index, evt):
        try:
            results[index] = deliver(Client(), evt).status_code
        except Exception as error:  # noqa: BLE001 — the test inspects it
            results[index] = error
        finally:
            close_old_connections()

    hold.arm()
    threads = [threading.Thread(target=run, args=(i, evt)) for i, evt in enumerate(events)]
    threads[0].start()
    # The first delivery is inside its transaction before the second starts.
    hold_error = None
    try:
        for thread in threads[1:]:
            thread.start()
        hold.release_when_second_waits()
    except AssertionError as error:
        hold_error = error
    finally:
        hold.release_when_second_waits = lambda: None
    for thread in threads:
        thread.join(timeout=60)
    if hold_error:
        raise hold_error
    return results


def test_the_same_event_delivered_twice_at_once_is_applied_once(paid_order, back_office_user, fake_stripe, first_apply_held):
    skip_unless_postgres()
    refund = submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_concurrent")
    evt = event("refund.updated", refund_object_for(refund, status="succeeded"))

    codes = deliver_concurrently(evt, evt, hold=first_apply_held)

    assert codes == [200, 200]
    assert first_apply_held.calls == [f"Stripe event {evt['id']}"]  # the second delivery applied nothing
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
    paid_order, back_office_user, fake_stripe, monkeypatch
):
    """submit_refund holds the refund's row lock during the Stripe call; the webhook, matched by
    metadata, waits for it and then applies on top of what it saved."""
    skip_unless_postgres()
    [refund] = services.request_refund(items=paid_order.items.all(), user=back_office_user)
    real_create = fake_stripe.create_refund
    in_stripe_call, answer = threading.Event(), threading.Event()

    def slow_create(**kwargs):
        created = real_create(**kwargs)
        # Stripe fails the refund in the same second; a tie with submit's answer is settled by
        # asking Stripe, which by then says failed.
        fake_stripe.set_status(created.id, "failed")
        in_stripe_call.set()
        assert answer.wait(30)
        return created

    monkeypatch.setattr(gateway, "create_refund", slow_create)
    results = {}

    def submit():
        try:
            results["submit"] = services.submit_refund(refund_id=refund.pk).status
        finally:
            close_old_connections()

    def webhook():
        try:
            evt = event("refund.updated", refund_object_for(refund, id="re_fake000001", status="failed"))
            results["webhook"] = deliver(Client(), evt).status_code
        finally:
            close_old_connections()

    try:
        submitter = threading.Thread(target=submit)
        submitter.start()
        assert in_stripe_call.wait(30)
        receiver = threading.Thread(target=webhook)
        receiver.start()
        deadline = time.monotonic() + 30
        while lock_waiters() < 1:
            assert time.monotonic() < deadline, "the webhook never waited for submit_refund"
            time.sleep(0.01)
        answer.set()
        submitter.join(60)
        receiver.join(60)
    finally:
        answer.set()

    assert results == {"submit": "succeeded", "webhook": 200}
    refund.refresh_from_db()
    assert (refund.stripe_refund_id, refund.status) == ("re_fake000001", "failed")
    assert set(states(paid_order.items.all())) == {ItemState.PAYMENT_REFUND_FAILED}
