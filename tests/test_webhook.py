"""The Stripe webhook: each Refund status Stripe reports moves items as DESIGN.md §1 says, once,
newest word winning, whether the refund is ours or made in the Stripe Dashboard."""

import datetime as dt
import time

import pytest

from refunds import gateway
from refunds.exceptions import StripeRetryableError
from refunds.gateway import StripeRefund
from refunds.models import ItemState, Refund, RefundOrigin, RefundStatus, StripeEvent
from refunds.services import preview_refunds

from .stripe_payloads import body_of, charge_object, deliver, event, refund_object, refund_object_for, signed_by_many
from .webhook_scenarios import force_state, requested_refund, states, stripe_event_transitions, submitted_refund

pytestmark = pytest.mark.django_db

CAPTURED, PENDING, SUCCEEDED, FAILED, REFUNDED = (
    ItemState.PAYMENT_CAPTURED,
    ItemState.PAYMENT_REFUND_PENDING,
    ItemState.PAYMENT_REFUND_SUCCEEDED,
    ItemState.PAYMENT_REFUND_FAILED,
    ItemState.PAYMENT_REFUNDED,
)
ALL_ITEM_STATES = [CAPTURED, PENDING, SUCCEEDED, FAILED, REFUNDED]

# DESIGN.md §1, written out: (Stripe refund status, item state before) → item state after.
EXPECTED = {
    **{("succeeded", s): s for s in ALL_ITEM_STATES},
    ("succeeded", PENDING): SUCCEEDED,
    ("succeeded", FAILED): SUCCEEDED,  # "the other way around"
    **{("failed", s): s for s in ALL_ITEM_STATES},
    ("failed", PENDING): FAILED,
    ("failed", SUCCEEDED): FAILED,  # previously successful refunds may be declined
    ("failed", REFUNDED): FAILED,  # even after the settlement period
    **{("canceled", s): s for s in ALL_ITEM_STATES},
    ("canceled", PENDING): FAILED,
    ("canceled", SUCCEEDED): FAILED,
    ("canceled", REFUNDED): FAILED,
    **{("pending", s): s for s in ALL_ITEM_STATES},
    **{("requires_action", s): s for s in ALL_ITEM_STATES},
}


@pytest.fixture(autouse=True)
def _stripe(fake_stripe):
    return fake_stripe


@pytest.fixture
def pending_refund(paid_order, back_office_user):
    """Two of the order's three items, sent to Stripe and pending there."""
    items = list(paid_order.items.order_by("pk")[:2])
    return submitted_refund(items, back_office_user, stripe_refund_id="re_pending00001")


@pytest.mark.parametrize("item_state", ALL_ITEM_STATES)
@pytest.mark.parametrize("stripe_status", ["pending", "requires_action", "succeeded", "failed", "canceled"])
def test_each_stripe_status_moves_an_item_in_each_state_as_the_refund_process_says(
    client, pending_refund, stripe_status, item_state
):
    items = list(pending_refund.items.order_by("pk"))
    for item in items:
        force_state(item, item_state)
    evt = event("refund.updated", refund_object_for(pending_refund, status=stripe_status, failure_reason="lost_or_stolen_card"))

    response = deliver(client, evt)

    assert response.status_code == 200
    expected = EXPECTED[(stripe_status, item_state)]
    assert states(items) == [expected, expected]
    moved = stripe_event_transitions(refund=pending_refund, by=f"Stripe event {evt['id']}")
    assert moved.count() == (2 if expected != item_state else 0)
    pending_refund.refresh_from_db()
    assert pending_refund.status == stripe_status
    assert pending_refund.failure_reason == {"failed": "lost_or_stolen_card", "canceled": "canceled"}.get(stripe_status, "")
    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    assert stored.processed_at is not None and stored.error == "" and stored.refund == pending_refund


@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"])
def test_every_refund_event_type_applies_its_refund(client, pending_refund, event_type):
    status = "failed" if event_type == "refund.failed" else "succeeded"

    assert deliver(client, event(event_type, refund_object_for(pending_refund, status=status))).status_code == 200

    assert set(states(pending_refund.items.all())) == {SUCCEEDED if status == "succeeded" else FAILED}


@pytest.mark.parametrize("listed", ["newest first", "oldest first"])
def test_charge_refunded_applies_every_refund_it_lists_and_is_listed_under_the_newest(
    client, paid_order, back_office_user, listed
):
    first, second, third = paid_order.items.order_by("pk")
    one = submitted_refund([first], back_office_user, stripe_refund_id="re_first")
    two = submitted_refund([second], back_office_user, stripe_refund_id="re_second")
    now = int(time.time())
    # re_first is the newer at Stripe, though its id sorts first.
    newest = refund_object_for(one, status="succeeded", created=now)
    older = refund_object_for(two, status="failed", created=now - 60)
    charge = charge_object(
        refunds=[newest, older] if listed == "newest first" else [older, newest],
        payment_intent=paid_order.stripe_payment_intent_id,
    )

    assert deliver(client, event("charge.refunded", charge)).status_code == 200

    assert states([first, second, third]) == [SUCCEEDED, FAILED, CAPTURED]
    assert StripeEvent.objects.get().refund == one


def test_a_charge_refunded_listing_refunds_of_the_same_second_is_listed_under_the_last_by_id(
    client, paid_order, back_office_user
):
    first, second, _ = paid_order.items.order_by("pk")
    one = submitted_refund([first], back_office_user, stripe_refund_id="re_b_second_by_id")
    two = submitted_refund([second], back_office_user, stripe_refund_id="re_a_first_by_id")
    now = int(time.time())
    charge = charge_object(
        refunds=[refund_object_for(refund, status="succeeded", created=now) for refund in (one, two)],
        payment_intent=paid_order.stripe_payment_intent_id,
    )

    assert deliver(client, event("charge.refunded", charge)).status_code == 200

    assert StripeEvent.objects.get().refund == one


def test_charge_refunded_without_its_refund_list_is_stored_and_moves_nothing(client, pending_refund):
    charge = charge_object(refunds=None, payment_intent=pending_refund.order.stripe_payment_intent_id)

    assert deliver(client, event("charge.refunded", charge)).status_code == 200

    assert set(states(pending_refund.items.all())) == {PENDING}
    assert StripeEvent.objects.get().processed_at is not None


def test_an_unknown_event_type_is_stored_and_answered_200(client, pending_refund):
    evt = event("payment_intent.succeeded", {"id": "pi_x", "object": "payment_intent", "status": "succeeded"})

    response = deliver(client, evt)

    assert response.status_code == 200
    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    assert stored.type == "payment_intent.succeeded" and stored.processed_at is not None
    assert stored.payload == evt
    assert set(states(pending_refund.items.all())) == {PENDING}


def test_the_failure_reason_stripe_gives_is_kept(client, pending_refund):
    deliver(client, event("refund.failed", refund_object_for(pending_refund, status="failed", failure_reason="insufficient_funds")))

    pending_refund.refresh_from_db()
    assert (pending_refund.status, pending_refund.failure_reason) == ("failed", "insufficient_funds")


def test_a_webhook_before_submit_refund_saved_the_stripe_id_is_matched_by_metadata(client, paid_order, back_office_user):
    refund = requested_refund(paid_order.items.all(), back_office_user)
    assert refund.stripe_refund_id is None

    deliver(client, event("refund.created", refund_object_for(refund, id="re_from_metadata", status="succeeded")))

    refund.refresh_from_db()
    assert (refund.stripe_refund_id, refund.status) == ("re_from_metadata", "succeeded")
    assert set(states(paid_order.items.all())) == {SUCCEEDED}
    assert StripeEvent.objects.get().refund == refund


def test_metadata_with_another_idempotency_key_is_not_our_refund(client, paid_order, back_office_user):
    refund = requested_refund(paid_order.items.all(), back_office_user)
    obj = refund_object_for(refund, id="re_other_install", status="succeeded")
    obj["metadata"]["oms_idempotency_key"] = "oms-refund-of-another-database"

    assert deliver(client, event("refund.created", obj)).status_code == 200

    refund.refresh_from_db()
    assert (refund.stripe_refund_id, refund.status) == (None, RefundStatus.QUEUED)
    assert set(states(paid_order.items.all())) == {PENDING}
    # It is still money refunded on this order's PaymentIntent, so it is recorded as outside ours.
    assert Refund.objects.get(stripe_refund_id="re_other_install").origin == RefundOrigin.STRIPE_DASHBOARD


def test_a_dashboard_refund_with_a_refund_id_too_big_for_the_database_in_its_metadata_is_recorded(client, paid_order):
    obj = refund_object(id="re_typed", status="succeeded", amount=100, payment_intent=paid_order.stripe_payment_intent_id,
                        metadata={"oms_refund_id": "9" * 30})

    assert deliver(client, event("refund.created", obj)).status_code == 200

    assert Refund.objects.get(stripe_refund_id="re_typed").origin == RefundOrigin.STRIPE_DASHBOARD


def test_a_second_stripe_refund_naming_a_refund_that_has_one_does_not_take_it_over(client, pending_refund):
    obj = refund_object_for(pending_refund, id="re_second_one", status="failed")

    deliver(client, event("refund.updated", obj))

    pending_refund.refresh_from_db()
    assert (pending_refund.stripe_refund_id, pending_refund.status) == ("re_pending00001", "pending")
    assert set(states(pending_refund.items.all())) == {PENDING}


# --- ordering ---------------------------------------------------------------------------------


def test_an_event_older_than_the_last_one_applied_changes_nothing(client, pending_refund):
    now = int(time.time())
    newer = event("refund.updated", refund_object_for(pending_refund, status="failed"), created=now)
    older = event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=now - 5)

    deliver(client, newer)
    response = deliver(client, older)

    assert response.status_code == 200
    assert set(states(pending_refund.items.all())) == {FAILED}
    pending_refund.refresh_from_db()
    assert pending_refund.status == "failed"
    assert pending_refund.stripe_event_created_at == dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
    assert StripeEvent.objects.get(stripe_event_id=older["id"]).processed_at is not None


def test_a_newer_event_overrides_an_older_one_applied_before_it(client, pending_refund):
    now = int(time.time())
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=now - 60))
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="failed"), created=now))

    assert set(states(pending_refund.items.all())) == {FAILED}


@pytest.mark.parametrize("stripe_says_now", ["succeeded", "failed"])
def test_on_a_tie_stripe_is_asked_and_its_answer_applied(client, pending_refund, fake_stripe, stripe_says_now):
    now = int(time.time())
    obj = refund_object_for(pending_refund, status=stripe_says_now)
    fake_stripe.refunds[obj["id"]] = StripeRefund.from_stripe(obj)
    first = event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=now)
    second = event("refund.updated", refund_object_for(pending_refund, status="failed"), created=now)

    deliver(client, first)
    deliver(client, second)

    assert set(states(pending_refund.items.all())) == {SUCCEEDED if stripe_says_now == "succeeded" else FAILED}


def test_a_failure_after_the_settlement_period_moves_refunded_items_to_failed(client, pending_refund):
    for item in pending_refund.items.all():
        force_state(item, REFUNDED)

    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="failed")))

    assert set(states(pending_refund.items.all())) == {FAILED}


def test_a_late_word_about_an_older_refund_does_not_move_an_item_a_newer_refund_handles(
    client, paid_order, back_office_user
):
    item = paid_order.items.order_by("pk").first()
    old = submitted_refund([item], back_office_user, stripe_refund_id="re_old", status="failed")
    force_state(item, FAILED)
    submitted_refund([item], back_office_user, stripe_refund_id="re_new")

    deliver(client, event("refund.updated", refund_object_for(old, status="succeeded")))

    assert states([item]) == [PENDING]
    old.refresh_from_db()
    assert old.status == "succeeded"


# --- Stripe Dashboard refunds -----------------------------------------------------------------


def test_a_dashboard_refund_is_recorded_against_its_order_and_moves_no_item(client, paid_order):
    obj = refund_object(id="re_dashboard", status="succeeded", amount=700, payment_intent=paid_order.stripe_payment_intent_id, reason="requested_by_customer")

    assert deliver(client, event("refund.created", obj)).status_code == 200

    refund = Refund.objects.get(stripe_refund_id="re_dashboard")
    assert (refund.order, refund.origin, refund.amount, refund.currency, refund.status) == (
        paid_order, RefundOrigin.STRIPE_DASHBOARD, 700, "eur", "succeeded"
    )
    assert refund.created_by is None and not refund.items.exists()
    assert set(states(paid_order.items.all())) == {CAPTURED}
    assert not stripe_event_transitions().exists()
    assert StripeEvent.objects.get().refund == refund
    [plan] = preview_refunds(paid_order.items.all())
    assert plan.committed == 700


def test_later_events_of_a_dashboard_refund_update_it_once(client, paid_order):
    pi = paid_order.stripe_payment_intent_id
    now = int(time.time())
    deliver(client, event("refund.created", refund_object(id="re_dash", status="pending", amount=300, payment_intent=pi), created=now - 10))
    deliver(client, event("charge.refunded", charge_object(refunds=[refund_object(id="re_dash", status="pending", amount=300, payment_intent=pi)], payment_intent=pi), created=now - 5))
    deliver(client, event("refund.failed", refund_object(id="re_dash", status="failed", amount=300, payment_intent=pi), created=now))

    refund = Refund.objects.get(stripe_refund_id="re_dash")
    assert (refund.status, refund.failure_reason) == ("failed", "expired_or_canceled_card")
    assert refund.events.count() == 3
    assert set(states(paid_order.items.all())) == {CAPTURED}


def test_a_refund_of_no_order_of_ours_is_stored_processed_and_logged(client, caplog):
    obj = refund_object(id="re_stranger", status="succeeded", payment_intent="pi_not_ours")

    response = deliver(client, event("refund.created", obj))

    assert response.status_code == 200
    assert not Refund.objects.exists()
    stored = StripeEvent.objects.get()
    assert stored.processed_at is not None and stored.refund is None
    assert "re_stranger" in caplog.text and "pi_not_ours" in caplog.text and "no order" in caplog.text


# --- delivery ---------------------------------------------------------------------------------


def test_a_duplicate_delivery_changes_nothing(client, pending_refund):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    deliver(client, evt)
    pending_refund.refresh_from_db()
    first_state = (pending_refund.status, pending_refund.status_changed_at, pending_refund.stripe_event_created_at)
    first_processed = StripeEvent.objects.get().processed_at

    response = deliver(client, evt)

    assert response.status_code == 200 and response.json()["duplicate"] is True
    pending_refund.refresh_from_db()
    assert (pending_refund.status, pending_refund.status_changed_at, pending_refund.stripe_event_created_at) == first_state
    assert StripeEvent.objects.get().processed_at == first_processed
    assert stripe_event_transitions().count() == 2  # two items, once each


def test_an_error_while_applying_answers_500_keeps_the_error_and_the_next_delivery_succeeds(
    client, pending_refund, monkeypatch
):
    from refunds.services import stripe_view

    real_transition_items = stripe_view.transition_items

    def write_then_fail(*args, **kwargs):
        real_transition_items(*args, **kwargs)
        raise RuntimeError("disk full while writing the audit log")

    monkeypatch.setattr(stripe_view, "transition_items", write_then_fail)
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))

    response = deliver(client, evt)

    assert response.status_code == 500
    assert set(states(pending_refund.items.all())) == {PENDING}  # rolled back
    assert not stripe_event_transitions().exists()
    pending_refund.refresh_from_db()
    assert (pending_refund.status, pending_refund.stripe_event_created_at) == ("pending", None)
    stored = StripeEvent.objects.get()
    assert stored.processed_at is None
    assert stored.error.startswith("RuntimeError: disk full while writing the audit log")

    monkeypatch.setattr(stripe_view, "transition_items", real_transition_items)
    response = deliver(client, evt)

    assert response.status_code == 200
    assert set(states(pending_refund.items.all())) == {SUCCEEDED}
    stored.refresh_from_db()
    assert stored.processed_at is not None and stored.error == "" and stored.refund == pending_refund
    assert stripe_event_transitions().count() == 2


def test_a_stripe_outage_during_a_tie_answers_500_and_stripe_delivers_again(
    client, pending_refund, fake_stripe, monkeypatch
):
    now = int(time.time())
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=now))
    second = event("refund.updated", refund_object_for(pending_refund, status="failed"), created=now)
    fake_stripe.refunds[pending_refund.stripe_refund_id] = StripeRefund.from_stripe(second["data"]["object"])

    def unreachable(stripe_refund_id):
        raise StripeRetryableError("Could not connect to Stripe.")  # what the gateway raises on an outage

    monkeypatch.setattr(gateway, "retrieve_refund", unreachable)

    assert deliver(client, second).status_code == 500
    assert set(states(pending_refund.items.all())) == {SUCCEEDED}
    assert StripeEvent.objects.get(stripe_event_id=second["id"]).error.startswith(
        "StripeRetryableError: Could not connect to Stripe."
    )

    monkeypatch.setattr(gateway, "retrieve_refund", fake_stripe.retrieve_refund)  # Stripe is back

    assert deliver(client, second).status_code == 200
    assert set(states(pending_refund.items.all())) == {FAILED}


def test_signatures_of_a_rolled_secret_verify_with_either_secret_first(client, settings, pending_refund):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = body_of(evt)
    settings.STRIPE_WEBHOOK_SECRET = "whsec_new"

    response = deliver(client, body=body, signature=signed_by_many(body, "whsec_old", "whsec_new"))

    assert response.status_code == 200
    assert set(states(pending_refund.items.all())) == {SUCCEEDED}


def test_get_is_not_allowed(client):
    assert client.get("/stripe/webhook/").status_code == 405
    assert not StripeEvent.objects.exists()
