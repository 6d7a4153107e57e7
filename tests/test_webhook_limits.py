"""Signed events with bad content never answer 500 (DESIGN.md §10): each field the intake reads
has a limit; content beyond it is stored unprocessed with the reason and answered 200 (or, for
a body that is no Stripe event at all, 400), and moves nothing. Work per event is bounded."""

import json
import time

import pytest

from refunds.event_checks import MAX_REFUNDS_PER_EVENT
from refunds.models import ItemState, Refund, RefundOrigin, StripeEvent

from .stripe_payloads import charge_object, deliver, event, refund_object, refund_object_for, sign
from .webhook_scenarios import requested_refund, states, submitted_refund

pytestmark = pytest.mark.django_db

NOW = int(time.time())


@pytest.fixture(autouse=True)
def _stripe(fake_stripe):
    return fake_stripe


@pytest.fixture
def pending_refund(paid_order, back_office_user):
    return submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_limits")


def assert_nothing_moved(refund):
    refund.refresh_from_db()
    assert refund.status == "pending"
    assert set(states(refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}


def assert_stored_unprocessed(response, evt, why):
    assert response.status_code == 200, response.content
    assert why in response.json()["unprocessable"]
    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    assert stored.processed_at is None and why in stored.error


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"status": "weird"}, "has status 'weird'"),
        ({"amount": 2**64}, "outside 0…9223372036854775807"),
        ({"amount": -1}, "outside 0…"),
        ({"created": 10**12}, "has created 1000000000000"),
        ({"currency": "EURO"}, "not a lower-case ISO code"),
        ({"payment_intent": "pi with spaces"}, "not a Stripe id"),
        ({"failure_reason": "x" * 256}, "failure_reason that is not a text"),
        ({"metadata": {"oms_refund_id": 1}}, "metadata 'oms_refund_id' that is not a text"),
        ({"metadata": {f"k{n}": "v" for n in range(51)}}, "51 metadata keys"),
        ({"id": "re_" + "x" * 300}, "refund without an id"),
    ],
    ids=["status-weird", "amount-2**64", "amount-negative", "refund-created-10**12", "currency", "payment-intent",
         "failure-reason-long", "metadata-value-not-text", "metadata-51-keys", "id-too-long"],
)
def test_a_refund_field_beyond_its_limit_is_stored_unprocessed(client, pending_refund, change, why):
    obj = refund_object_for(pending_refund, status="succeeded")
    obj.update(change)
    evt = event("refund.updated", obj)

    response = deliver(client, evt)

    assert_stored_unprocessed(response, evt, why)
    assert_nothing_moved(pending_refund)


@pytest.mark.parametrize(
    ("created", "why"),
    [(NOW + 24 * 3600, "outside"), (NOW - 31 * 24 * 3600, "outside")],
    ids=["a-day-ahead", "31-days-old"],
)
def test_an_event_created_outside_a_sane_window_of_now_is_stored_unprocessed(client, pending_refund, created, why):
    # A far-future `created` would make every later event about this refund look older.
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=created)

    response = deliver(client, evt)

    assert_stored_unprocessed(response, evt, why)
    assert_nothing_moved(pending_refund)
    pending_refund.refresh_from_db()
    assert pending_refund.stripe_event_created_at is None


def test_an_event_created_10_to_the_12_is_refused_not_a_500(client, pending_refund):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=10**12)

    response = deliver(client, evt)

    assert response.status_code == 200
    assert "outside" in response.json()["unprocessable"]
    assert_nothing_moved(pending_refund)


def test_a_redelivered_unprocessable_event_opens_no_second_case(client, caplog, pending_refund):
    evt = event("refund.updated", {**refund_object_for(pending_refund, status="succeeded"), "status": "weird"})

    first, second = deliver(client, evt), deliver(client, evt)

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["duplicate"] is True
    assert sum("attention case event_error" in r.getMessage() for r in caplog.records) == 1


def test_a_metadata_refund_id_that_only_looks_like_digits_is_no_id_of_ours(client, paid_order, back_office_user):
    """"²".isdigit() is true and int("²") raises: such a refund is someone's Dashboard refund."""
    refund = requested_refund(paid_order.items.all(), back_office_user)
    obj = refund_object(id="re_superscript", status="succeeded", amount=100, payment_intent=paid_order.stripe_payment_intent_id,
                        metadata={"oms_refund_id": "²", "oms_idempotency_key": refund.idempotency_key})

    response = deliver(client, event("refund.created", obj))

    assert response.status_code == 200 and "unprocessable" not in response.json()
    assert Refund.objects.get(stripe_refund_id="re_superscript").origin == RefundOrigin.STRIPE_DASHBOARD
    refund.refresh_from_db()
    assert refund.stripe_refund_id is None


@pytest.mark.parametrize("typed", ["0{pk}", "+{pk}", " {pk}", "{pk}.0"])
def test_a_metadata_refund_id_we_could_not_have_written_is_no_id_of_ours(client, paid_order, back_office_user, typed):
    """We write str(refund.pk); "01" names refund 1 only to int(), not to us. (The id is the
    refund's own: PostgreSQL's sequences do not restart with each test, so it is not always 1.)"""
    refund = requested_refund(paid_order.items.all(), back_office_user)
    typed = typed.format(pk=refund.pk)
    assert int(float(typed)) == refund.pk and typed != str(refund.pk)
    obj = refund_object(id="re_leading_zero", status="succeeded", amount=refund.amount,
                        payment_intent=paid_order.stripe_payment_intent_id,
                        metadata={"oms_refund_id": typed, "oms_idempotency_key": refund.idempotency_key})

    response = deliver(client, event("refund.created", obj))

    assert response.status_code == 200
    assert Refund.objects.get(stripe_refund_id="re_leading_zero").origin == RefundOrigin.STRIPE_DASHBOARD
    refund.refresh_from_db()
    assert refund.stripe_refund_id is None


@pytest.mark.parametrize("depth", [5000, 40])
def test_json_nested_too_deep_is_refused_with_400(client, caplog, pending_refund, depth):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    evt["data"]["object"]["metadata"] = {"deep": "__NEST__"}
    body = json.dumps(evt).replace('"__NEST__"', "[" * depth + "]" * depth).encode()

    response = deliver(client, body=body, signature=sign(body))

    assert response.status_code == 400
    assert "nested more than 32 levels" in response.json()["error"]
    assert not StripeEvent.objects.exists()
    assert_nothing_moved(pending_refund)


# --- Bounded work per event (finding 3) ---------------------------------------------------------


def test_a_charge_refunded_listing_more_than_100_refunds_is_refused(client, paid_order):
    pi = paid_order.stripe_payment_intent_id
    listed = [refund_object(status="succeeded", amount=1, payment_intent=pi) for _ in range(MAX_REFUNDS_PER_EVENT + 1)]
    evt = event("charge.refunded", charge_object(refunds=listed, payment_intent=pi))

    response = deliver(client, evt)

    assert_stored_unprocessed(response, evt, "lists 101 refunds; at most 100")
    assert not Refund.objects.exists()


def test_a_charge_refunded_listing_100_refunds_is_applied(client, paid_order):
    pi = paid_order.stripe_payment_intent_id
    listed = [refund_object(status="succeeded", amount=1, payment_intent=pi) for _ in range(MAX_REFUNDS_PER_EVENT)]

    response = deliver(client, event("charge.refunded", charge_object(refunds=listed, payment_intent=pi)))

    assert response.status_code == 200 and "unprocessable" not in response.json()
    assert Refund.objects.filter(order=paid_order, origin=RefundOrigin.STRIPE_DASHBOARD).count() == 100


@pytest.mark.parametrize(("text", "why"), [("\\u0000", "U+0000"), ("\\ud800", "lone UTF-16 surrogate")], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize("where", ["value", "key"])
def test_text_a_json_column_cannot_hold_is_refused_with_400(client, pending_refund, text, why, where):
    # PostgreSQL's jsonb refuses U+0000 ("unsupported Unicode escape sequence"): it used to be a 500.
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    evt["data"]["object"]["metadata"] = {"note": "__TEXT__"} if where == "value" else {"__TEXT__": "x"}
    body = json.dumps(evt).replace("__TEXT__", text).encode()

    response = deliver(client, body=body, signature=sign(body))

    assert response.status_code == 400
    assert why in response.json()["error"]
    assert not StripeEvent.objects.exists()
    assert_nothing_moved(pending_refund)
