"""`manage.py stripe_trigger`: Stripe's later word on one of our refunds, sent signed to the
running webhook endpoint (pytest-django's live server: a real HTTP server on 127.0.0.1)."""

import datetime as dt
import json

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.utils import timezone

from refunds import gateway, services
from refunds_dev import stripe_tools, trigger
from refunds_dev.management.commands import stripe_trigger as command
from refunds.models import ItemState, ItemTransition, Refund, RefundStatus, StripeEvent

from .conftest import TEST_WEBHOOK_SECRET
from .stripe_payloads import STRIPE_OBJECTS

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_running_demo(monkeypatch, tmp_path):
    # A `make run` in this checkout writes var/demo.json; the tests must not pick up its secret.
    monkeypatch.setattr(command, "DEMO_STATE_FILE", tmp_path / "demo.json")


@pytest.fixture
def webhook_url(live_server):
    return f"{live_server.url}/stripe/webhook/"


def refund_an_hour_ago(fake_stripe, paid_order, user, *, stripe_status="succeeded"):
    """A refund submitted to Stripe an hour ago (the worker is eager here), answered `stripe_status`."""
    fake_stripe.next_status = stripe_status
    with time_machine.travel(timezone.now() - dt.timedelta(hours=1), tick=True):
        refund, = services.request_refund(items=[paid_order.items.first()], user=user)
    refund.refresh_from_db()
    assert refund.status == stripe_status
    return refund


def test_a_decline_after_success_moves_the_item_to_payment_refund_failed(
    fake_stripe, paid_order, back_office_user, webhook_url, capsys
):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user)
    item = refund.items.get()
    assert item.state == ItemState.PAYMENT_REFUND_SUCCEEDED

    call_command("stripe_trigger", "failed", "--failure-reason", "expired_or_canceled_card", "--url", webhook_url)

    item.refresh_from_db()
    refund.refresh_from_db()
    assert item.state == ItemState.PAYMENT_REFUND_FAILED
    assert (refund.status, refund.failure_reason) == (RefundStatus.FAILED, "expired_or_canceled_card")
    event = StripeEvent.objects.get()
    assert event.type == "refund.updated" and event.processed_at is not None and event.error == ""
    last = ItemTransition.objects.filter(item=item).last()
    assert (last.to_state, last.by) == (ItemState.PAYMENT_REFUND_FAILED, f"Stripe event {event.stripe_event_id}")
    assert "answered 200" in capsys.readouterr().out


def test_a_late_success_moves_a_failed_item_to_payment_refund_succeeded(
    fake_stripe, paid_order, back_office_user, webhook_url
):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user, stripe_status="failed")
    item = refund.items.get()
    assert item.state == ItemState.PAYMENT_REFUND_FAILED

    call_command("stripe_trigger", "succeeded", "--refund", refund.stripe_refund_id, "--url", webhook_url)

    item.refresh_from_db()
    assert item.state == ItemState.PAYMENT_REFUND_SUCCEEDED


def test_a_cancellation_chosen_by_item_fails_the_item(fake_stripe, paid_order, back_office_user, webhook_url):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user)
    item = refund.items.get()

    call_command("stripe_trigger", "canceled", "--item", str(item.pk), "--url", webhook_url)

    item.refresh_from_db()
    refund.refresh_from_db()
    assert item.state == ItemState.PAYMENT_REFUND_FAILED
    assert refund.status == RefundStatus.CANCELED


def test_an_endpoint_with_another_secret_refuses_the_event_and_the_command_fails(
    fake_stripe, paid_order, back_office_user, webhook_url
):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user)

    with pytest.raises(CommandError, match=r"refused the event \(400\)"):
        call_command("stripe_trigger", "failed", "--url", webhook_url, "--secret", "whsec_someone_else")

    assert refund.items.get().state == ItemState.PAYMENT_REFUND_SUCCEEDED
    assert not StripeEvent.objects.exists()


def test_the_running_demos_endpoint_and_secret_are_the_defaults(
    fake_stripe, paid_order, back_office_user, webhook_url, settings
):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user)
    settings.STRIPE_WEBHOOK_SECRET = "whsec_demo_secret_of_the_running_demo"
    command.DEMO_STATE_FILE.write_text(json.dumps(
        {"webhook_url": webhook_url, "webhook_secret": "whsec_demo_secret_of_the_running_demo"}
    ))

    call_command("stripe_trigger", "failed")

    assert refund.items.get().state == ItemState.PAYMENT_REFUND_FAILED


def test_a_refund_that_has_not_reached_stripe_cannot_be_triggered(paid_order):
    refund = Refund.objects.create(order=paid_order, amount=1000, currency="eur")  # queued, no Stripe id

    with pytest.raises(CommandError, match="has not reached Stripe yet"):
        call_command("stripe_trigger", "failed", "--refund", str(refund.pk), "--url", "http://127.0.0.1:9/")


def test_the_event_has_stripes_shape_and_a_signature_the_endpoint_verifies(fake_stripe, paid_order, back_office_user):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user)

    event = trigger.refund_event(refund=refund, status="failed", failure_reason="insufficient_funds")
    payload = json.dumps(event)
    verified = gateway.construct_event(
        payload.encode(), stripe_tools.sign_payload(payload, TEST_WEBHOOK_SECRET), TEST_WEBHOOK_SECRET, 300
    )

    refund_object = verified["data"]["object"]
    assert set(STRIPE_OBJECTS["event"]) <= set(verified)
    assert set(STRIPE_OBJECTS["refund"]) <= set(refund_object)
    assert refund_object["id"] == refund.stripe_refund_id
    assert (refund_object["status"], refund_object["failure_reason"]) == ("failed", "insufficient_funds")
    assert refund_object["metadata"]["oms_refund_id"] == str(refund.pk)
    assert verified["data"]["previous_attributes"] == {"status": "succeeded"}
    with pytest.raises(gateway.InvalidSignature):
        gateway.construct_event(payload.encode(), stripe_tools.sign_payload(payload, "whsec_other"), TEST_WEBHOOK_SECRET, 300)


@pytest.mark.parametrize(
    ("status", "event_type", "failure_reason", "message"),
    [
        ("succeeded", "refund.failed", "", "only carries a failed refund"),
        ("failed", "refund.updated", "because", "failure reason must be one of"),
        ("pending", "refund.updated", "", "status must be one of"),
    ],
)
def test_events_stripe_would_never_send_are_refused(
    fake_stripe, paid_order, back_office_user, status, event_type, failure_reason, message
):
    refund = refund_an_hour_ago(fake_stripe, paid_order, back_office_user)

    with pytest.raises(trigger.TriggerError, match=message):
        trigger.refund_event(refund=refund, status=status, event_type=event_type, failure_reason=failure_reason)
