"""The webhook's hot path (issue 13): an event about one refund of ours writes what the bare
floor writes — event row, refund, items, audit rows — in as many statements (SQLite) or two
(PostgreSQL: the event's INSERT with the lock query, the three writes as one)."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from refunds.models import ItemState, ItemTransition, StripeEvent

from .stripe_payloads import deliver, event, refund_object_for
from .webhook_scenarios import states, submitted_refund

pytestmark = pytest.mark.django_db


def statements(captured) -> list[str]:
    """The statements' verbs, without transaction control (a test runs inside a transaction,
    so the view's own is a savepoint here)."""
    verbs = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    return [verb for verb in verbs if verb not in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")]


def test_one_refund_of_ours_takes_as_few_statements_as_the_floor_and_links_the_event(paid_order, back_office_user):
    items = list(paid_order.items.order_by("pk")[:2])
    refund = submitted_refund(items, back_office_user, stripe_refund_id="re_hot_path")
    evt = event("refund.updated", refund_object_for(refund, status="succeeded"))

    with CaptureQueriesContext(connection) as captured:
        response = deliver(Client(), evt)

    assert response.status_code == 200
    if connection.vendor == "postgresql":
        # insert the event (linked) while locking refund + items; then the refund's view, the
        # items and the audit rows in one statement (services.locked_rows.batched_transaction)
        assert statements(captured) == ["WITH", "WITH"]
        writes = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("WITH w0 AS (")]
        assert len(writes) == 1 and writes[0].count(" AS (") == 2  # three writes joined in one
    else:
        # insert the event (linked), lock refund + items, the refund's view, the items, the audit rows
        assert statements(captured) == ["INSERT", "SELECT", "UPDATE", "UPDATE", "INSERT"]
    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    assert stored.refund_id == refund.pk and stored.processed_at is not None
    assert stored.payload == evt  # the raw body, as Stripe sent it
    assert states(items) == [ItemState.PAYMENT_REFUND_SUCCEEDED] * 2
    assert ItemTransition.objects.filter(refund=refund, by=f"Stripe event {evt['id']}").count() == 2


def test_a_second_delivery_on_the_hot_path_changes_nothing(paid_order, back_office_user):
    items = list(paid_order.items.order_by("pk")[:1])
    refund = submitted_refund(items, back_office_user, stripe_refund_id="re_hot_again")
    evt = event("refund.updated", refund_object_for(refund, status="succeeded"))
    assert deliver(Client(), evt).status_code == 200

    again = deliver(Client(), evt)

    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert ItemTransition.objects.filter(refund=refund).exclude(transition="start_refund").count() == 1
    assert StripeEvent.objects.filter(stripe_event_id=evt["id"]).count() == 1


def test_an_event_about_a_refund_we_do_not_know_takes_the_general_path(paid_order, back_office_user):
    obj = refund_object_for(
        submitted_refund(list(paid_order.items.all()[:1]), back_office_user, stripe_refund_id="re_known"),
        status="succeeded", id="re_unknown_here",
    )
    obj["metadata"] = {}
    evt = event("refund.updated", obj)

    assert deliver(Client(), evt).status_code == 200

    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    assert stored.processed_at is not None
    # Not ours: recorded as made outside this system on the order's PaymentIntent.
    assert stored.refund is not None and stored.refund.stripe_refund_id == "re_unknown_here"
