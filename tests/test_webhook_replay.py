"""Re-applying stored events: `process_event` (the Back Office "Reprocess") and
`manage.py replay_stripe_events`."""

import io
import time

import pytest
from django.core.management import CommandError, call_command

from refunds import services
from refunds.services import stripe_view
from refunds.gateway import StripeRefund
from refunds.models import ItemState, StripeEvent
from refunds.webhooks import process_event

from .stripe_payloads import deliver, event, refund_object_for
from .webhook_scenarios import states, stripe_event_transitions, submitted_refund

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending_refund(paid_order, back_office_user, fake_stripe):
    return submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_replay")


@pytest.fixture
def failing_apply(monkeypatch):
    """Every apply fails until `.heal()`: an outage while the events arrived."""

    real = stripe_view.apply_refund_status

    class Outage:
        def heal(self):
            monkeypatch.setattr(stripe_view, "apply_refund_status", real)

    def broken(**kwargs):
        raise ConnectionError("ledger service unreachable")

    monkeypatch.setattr(stripe_view, "apply_refund_status", broken)
    return Outage()


def test_process_event_applies_a_failed_event_and_clears_its_error(client, pending_refund, failing_apply):
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="succeeded")))
    stored = StripeEvent.objects.get()
    assert stored.error and stored.processed_at is None
    failing_apply.heal()

    process_event(stored)

    assert stored.error == "" and stored.processed_at is not None and stored.refund_id == pending_refund.pk
    stored.refresh_from_db()
    assert stored.error == "" and stored.processed_at is not None
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_process_event_that_fails_again_keeps_the_new_error_and_raises(client, pending_refund, failing_apply):
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="succeeded")))
    stored = StripeEvent.objects.get()
    StripeEvent.objects.filter(pk=stored.pk).update(error="old error")

    with pytest.raises(ConnectionError):
        process_event(stored)

    stored.refresh_from_db()
    assert stored.error.startswith("ConnectionError: ledger service unreachable")
    assert stored.processed_at is None
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}


def test_reprocessing_an_applied_event_changes_nothing_more(client, pending_refund, fake_stripe):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    deliver(client, evt)
    fake_stripe.refunds["re_replay"] = StripeRefund.from_stripe(refund_object_for(pending_refund, status="succeeded"))

    process_event(StripeEvent.objects.get())

    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    assert stripe_event_transitions().count() == pending_refund.items.count()  # from the first delivery only


def test_replay_failed_applies_every_failed_event_in_stripe_order(client, pending_refund, failing_apply):
    now = int(time.time())
    older = event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=now - 30)
    newer = event("refund.failed", refund_object_for(pending_refund, status="failed"), created=now)
    for evt in (newer, older):
        assert deliver(client, evt).status_code == 500
    failing_apply.heal()
    out = io.StringIO()

    call_command("replay_stripe_events", "--failed", stdout=out)

    assert "2 of 2 event(s) applied." in out.getvalue()
    assert not StripeEvent.objects.exclude(error="").exists()
    assert not StripeEvent.objects.filter(processed_at__isnull=True).exists()
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_FAILED}


def test_replay_by_id_applies_only_the_named_event(client, paid_order, back_office_user, failing_apply):
    first, second, _ = paid_order.items.order_by("pk")
    one = submitted_refund([first], back_office_user, stripe_refund_id="re_one")
    two = submitted_refund([second], back_office_user, stripe_refund_id="re_two")
    evt_one = event("refund.updated", refund_object_for(one, status="succeeded"))
    deliver(client, evt_one)
    deliver(client, event("refund.updated", refund_object_for(two, status="succeeded")))
    failing_apply.heal()

    call_command("replay_stripe_events", evt_one["id"], stdout=io.StringIO())

    assert states([first, second]) == [ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_REFUND_PENDING]


def test_replay_reports_events_that_fail_again_and_exits_with_an_error(client, pending_refund, failing_apply):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    deliver(client, evt)
    err = io.StringIO()

    with pytest.raises(CommandError, match="1 event"):
        call_command("replay_stripe_events", "--failed", stdout=io.StringIO(), stderr=err)

    assert evt["id"] in err.getvalue() and "ledger service unreachable" in err.getvalue()
    assert StripeEvent.objects.get().error.startswith("ConnectionError")


def test_replay_of_an_unknown_event_id_is_refused():
    with pytest.raises(CommandError, match="No stored Stripe event evt_nope"):
        call_command("replay_stripe_events", "evt_nope")


def test_replay_without_ids_or_failed_is_refused():
    with pytest.raises(CommandError, match="--failed"):
        call_command("replay_stripe_events")
