"""What the webhook refuses: a delivery that is no signed Stripe event is answered 400 (or 413)
with a log line saying why, nothing stored; a signed event whose content cannot be applied is
stored with the reason and answered 200 (no redelivery could mend it). No item moves."""

import io
import json
import time

import pytest
import time_machine
from django.test import RequestFactory

from refunds.models import ItemState, StripeEvent
from refunds.views import MAX_BODY_BYTES, stripe_webhook

from .stripe_payloads import body_of, charge_object, deliver, event, refund_object, refund_object_for, sign
from .webhook_scenarios import states, submitted_refund

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending_refund(paid_order, back_office_user, fake_stripe):
    return submitted_refund(paid_order.items.all(), back_office_user, stripe_refund_id="re_bad_input")


@pytest.fixture
def succeeded_event(pending_refund):
    """A well-formed event that, if it got through, would move every item to succeeded."""
    return event("refund.updated", refund_object_for(pending_refund, status="succeeded"))


def assert_refused(response, status, caplog, why, pending_refund):
    assert response.status_code == status
    assert not StripeEvent.objects.exists()
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}
    pending_refund.refresh_from_db()
    assert pending_refund.status == "pending"
    assert any(
        record.name == "refunds.views" and "stripe webhook rejected" in record.getMessage() and why in record.getMessage()
        for record in caplog.records
    ), caplog.text


def test_a_missing_signature_is_refused(client, caplog, succeeded_event, pending_refund):
    response = deliver(client, succeeded_event, signature="")
    assert_refused(response, 400, caplog, "No Stripe-Signature header", pending_refund)


def test_a_signature_made_with_another_secret_is_refused(client, caplog, succeeded_event, pending_refund):
    body = body_of(succeeded_event)
    response = deliver(client, body=body, signature=sign(body, secret="whsec_someone_else"))
    assert_refused(response, 400, caplog, "No signatures found matching", pending_refund)


def test_a_body_changed_after_signing_is_refused(client, caplog, succeeded_event, pending_refund):
    signature = sign(body_of(succeeded_event))
    succeeded_event["data"]["object"]["amount"] = 999_999
    response = deliver(client, body=body_of(succeeded_event), signature=signature)
    assert_refused(response, 400, caplog, "No signatures found matching", pending_refund)


def test_a_garbled_signature_header_is_refused(client, caplog, succeeded_event, pending_refund):
    response = deliver(client, succeeded_event, signature="t=soon,v1=abc")
    assert_refused(response, 400, caplog, "Unable to extract timestamp", pending_refund)


def test_a_signature_header_without_a_v1_signature_is_refused(client, caplog, succeeded_event, pending_refund):
    body = body_of(succeeded_event)
    v0_only = sign(body).replace("v1=", "v0=")
    response = deliver(client, body=body, signature=v0_only)
    assert_refused(response, 400, caplog, "No signatures found with expected scheme v1", pending_refund)


def test_a_delivery_older_than_the_tolerance_is_refused(client, caplog, succeeded_event, pending_refund):
    body = body_of(succeeded_event)
    signature = sign(body)  # signed now, replayed 301 s later
    with time_machine.travel(time.time() + 301, tick=False):
        response = deliver(client, body=body, signature=signature)
    assert_refused(response, 400, caplog, "Timestamp outside the tolerance zone", pending_refund)


def test_a_delivery_just_inside_the_tolerance_is_accepted(client, succeeded_event, pending_refund):
    body = body_of(succeeded_event)
    signature = sign(body)
    with time_machine.travel(time.time() + 299, tick=False):
        response = deliver(client, body=body, signature=signature)
    assert response.status_code == 200
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_a_timestamp_beyond_the_tolerance_in_the_future_is_refused(client, caplog, succeeded_event, pending_refund):
    body = body_of(succeeded_event)
    response = deliver(client, body=body, signature=sign(body, timestamp=int(time.time()) + 301))
    assert_refused(response, 400, caplog, "Timestamp in the future", pending_refund)


def test_a_signed_body_that_is_not_json_is_refused(client, caplog, pending_refund):
    response = deliver(client, body=b"refund.updated re_bad_input succeeded")
    assert_refused(response, 400, caplog, "body is not JSON", pending_refund)


def test_a_signed_body_that_is_not_utf8_is_refused(client, caplog, pending_refund):
    body = b'{"object": "event", "id": "evt_\xff"}'
    response = deliver(client, body=body, signature=f"t={int(time.time())},v1=00")
    assert_refused(response, 400, caplog, "not UTF-8", pending_refund)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ([1, 2, 3], 'no "object": "event"'),
        ({"object": "refund", "id": "re_x", "status": "succeeded"}, 'no "object": "event"'),
        ({"object": "event", "type": "refund.updated", "created": 1, "data": {"object": {}}}, "'id' is not"),
        ({"object": "event", "id": "evt_1", "created": 1, "data": {"object": {}}}, "'type' is not"),
        ({"object": "event", "id": "evt_1", "type": "refund.updated", "created": "yesterday", "data": {"object": {}}}, "'created' is not"),
        ({"object": "event", "id": "evt_1", "type": "refund.updated", "created": 1}, "'data.object' is not"),
        ({"object": "event", "id": "evt_1", "type": "refund.updated", "created": 1, "data": {"object": "re_1"}}, "'data.object' is not"),
    ],
    ids=["a-list", "a-refund-not-an-event", "no-id", "no-type", "created-not-a-time", "no-data", "data-object-a-string"],
)
def test_a_signed_json_body_that_is_not_a_stripe_event_is_refused(client, caplog, pending_refund, payload, why):
    response = deliver(client, body=json.dumps(payload).encode())
    assert_refused(response, 400, caplog, why, pending_refund)


@pytest.mark.parametrize(
    ("event_type", "obj", "why"),
    [
        ("refund.updated", charge_object(refunds=[], payment_intent="pi_x"), "expected a refund, got a 'charge'"),
        ("refund.updated", {**refund_object(status="succeeded"), "id": None}, "refund without an id"),
        ("refund.failed", {**refund_object(status="failed"), "status": None}, "without a status"),
        ("charge.refund.updated", {**refund_object(), "amount": "10.00"}, "without an integer amount"),
        ("charge.refunded", refund_object(), "not a charge"),
        ("charge.refunded", {**charge_object(refunds=[]), "refunds": {"object": "list", "data": [{"id": "x"}]}}, "expected a refund"),
    ],
    ids=["refund-event-carrying-a-charge", "refund-without-id", "refund-without-status", "amount-not-integer",
         "charge-event-carrying-a-refund", "charge-listing-a-non-refund"],
)
def test_a_refund_event_whose_object_has_the_wrong_shape_is_stored_unprocessed(client, caplog, pending_refund, event_type, obj, why):
    evt = event(event_type, obj)
    response = deliver(client, evt)
    assert_stored_unprocessed(response, evt, caplog, why, pending_refund)


def assert_stored_unprocessed(response, evt, caplog, why, pending_refund):
    """200 (Stripe stops retrying), the event kept unprocessed with the reason, an event_error
    case, nothing moved."""
    assert response.status_code == 200, response.content
    assert why in response.json()["unprocessable"]
    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    assert stored.processed_at is None and stored.error.startswith("Unprocessable: ") and why in stored.error
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}
    pending_refund.refresh_from_db()
    assert pending_refund.status == "pending"
    assert any(
        record.name == "refunds.services.attention" and "attention case event_error" in record.getMessage()
        and evt["id"] in record.getMessage()
        for record in caplog.records
    ), caplog.text


def test_a_body_over_one_mebibyte_is_refused_with_413(client, caplog, succeeded_event, pending_refund):
    succeeded_event["data"]["object"]["metadata"]["padding"] = "x" * MAX_BODY_BYTES
    body = body_of(succeeded_event)
    response = deliver(client, body=body, signature=sign(body))
    assert_refused(response, 413, caplog, "exceeds 1048576", pending_refund)


class CountingStream(io.BytesIO):
    def __init__(self, size):
        super().__init__(b"{" + b" " * (size - 2) + b"}")
        self.bytes_read = 0

    def read(self, *args):
        chunk = super().read(*args)
        self.bytes_read += len(chunk)
        return chunk

    def readline(self, *args):
        chunk = super().readline(*args)
        self.bytes_read += len(chunk)
        return chunk


def test_an_oversized_body_is_refused_on_its_declared_length_without_reading_it(caplog, pending_refund):
    stream = CountingStream(MAX_BODY_BYTES + 1)
    request = RequestFactory().generic(
        "POST", "/stripe/webhook/", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00",
    )
    request.META["CONTENT_LENGTH"] = str(MAX_BODY_BYTES + 1)
    request._stream = stream

    response = stripe_webhook(request)

    assert stream.bytes_read == 0
    assert_refused(response, 413, caplog, "body of 1048577 bytes", pending_refund)


def test_a_body_of_exactly_one_mebibyte_is_read_and_judged_on_its_signature(client, caplog, pending_refund):
    body = b"{" + b" " * (MAX_BODY_BYTES - 2) + b"}"
    response = deliver(client, body=body, signature=sign(body, secret="whsec_wrong"))
    assert_refused(response, 400, caplog, "No signatures found matching", pending_refund)


def test_without_a_configured_secret_events_are_answered_500_so_stripe_keeps_them(client, settings, caplog, succeeded_event, pending_refund):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = deliver(client, succeeded_event)
    assert response.status_code == 500
    assert not StripeEvent.objects.exists()
    assert set(states(pending_refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}
    assert "STRIPE_WEBHOOK_SECRET is not set" in caplog.text
