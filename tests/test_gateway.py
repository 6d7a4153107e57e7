"""The gateway against a real HTTP server that answers as Stripe does when things go wrong."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from refunds import gateway
from refunds.exceptions import StripeFinalError, StripeRetryableError

from .conftest import free_port

REFUND = {
    "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ", "object": "refund", "amount": 1000, "currency": "eur",
    "created": 1692942318, "status": "succeeded", "payment_intent": "pi_1", "metadata": {"oms_refund_id": "7"},
}


class FakeStripeServer:
    """Answers each request with the next scripted (status, body, delay) and records requests."""

    def __init__(self):
        self.script: list[tuple[int, dict, float]] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                server.requests.append({"path": self.path, "headers": dict(self.headers), "form": parse_qs(body)})
                status, payload, delay = server.script.pop(0) if server.script else (200, REFUND, 0)
                time.sleep(delay)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up, as the timeout test intends

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def stripe_server(settings):
    server = FakeStripeServer()
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_TIMEOUT_SECONDS = 1
    yield server
    server.httpd.shutdown()


def create(**overrides):
    params = {"payment_intent": "pi_1", "amount": 1000, "idempotency_key": "oms-refund-abc", "metadata": {"oms_refund_id": "7"}}
    return gateway.create_refund(**{**params, **overrides})


def error(kind, message, code=""):
    return {"error": {"type": kind, "message": message, "code": code}}


def test_a_refund_is_created_with_idempotency_key_pinned_version_and_metadata(stripe_server, settings):
    refund = create()

    assert (refund.id, refund.status, refund.amount, refund.oms_refund_id) == (REFUND["id"], "succeeded", 1000, 7)
    [request] = stripe_server.requests
    assert request["path"] == "/v1/refunds"
    assert request["headers"]["Idempotency-Key"] == "oms-refund-abc"
    assert request["headers"]["Stripe-Version"] == settings.STRIPE_API_VERSION
    assert request["form"]["metadata[oms_refund_id]"] == ["7"]
    assert request["form"]["amount"] == ["1000"]
    assert "reason" not in request["form"]  # localstripe answers 400 to parameters it does not know


def test_a_chosen_reason_is_sent(stripe_server):
    create(reason="duplicate")
    assert stripe_server.requests[0]["form"]["reason"] == ["duplicate"]


def test_the_reason_can_be_withheld_from_an_emulator_that_refuses_it(stripe_server, settings):
    settings.STRIPE_SEND_REFUND_REASON = False
    create(reason="duplicate")
    assert "reason" not in stripe_server.requests[0]["form"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, error("invalid_request_error", "Too many requests", "rate_limit")),
        (500, error("api_error", "Something went wrong on Stripe's end.")),
        (503, error("api_error", "Service unavailable")),
        (409, error("idempotency_error", "Keys for idempotent requests can only be used with the same parameters")),
    ],
)
def test_rate_limits_server_errors_and_idempotency_conflicts_are_retryable(stripe_server, status, body):
    stripe_server.script = [(status, body, 0)]
    with pytest.raises(StripeRetryableError) as caught:
        create()
    assert caught.value.http_status == status
    assert caught.value.message


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, error("invalid_request_error", "Charge ch_1 has already been refunded.", "charge_already_refunded"), "charge_already_refunded"),
        (402, error("card_error", "Your card was declined.", "card_declined"), "card_declined"),
        (401, error("invalid_request_error", "Invalid API Key provided"), ""),
        (404, error("invalid_request_error", "No such payment_intent: 'pi_1'", "resource_missing"), "resource_missing"),
    ],
)
def test_invalid_requests_and_card_errors_are_final(stripe_server, status, body, code):
    stripe_server.script = [(status, body, 0)]
    with pytest.raises(StripeFinalError) as caught:
        create()
    assert caught.value.http_status == status
    assert caught.value.code == code
    assert body["error"]["message"] in caught.value.message


def test_a_timeout_is_retryable_and_the_retry_sends_the_same_key(stripe_server):
    stripe_server.script = [(200, REFUND, 3)]  # longer than STRIPE_TIMEOUT_SECONDS
    with pytest.raises(StripeRetryableError):
        create()

    create()

    keys = [request["headers"]["Idempotency-Key"] for request in stripe_server.requests]
    assert keys == ["oms-refund-abc", "oms-refund-abc"]


def test_a_connection_refused_is_retryable(settings):
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StripeRetryableError):
        create()


def test_find_refund_pages_through_the_payment_intents_refunds(stripe_server):
    first = {**REFUND, "id": "re_a", "metadata": {"oms_idempotency_key": "other"}}
    second = {**REFUND, "id": "re_b", "metadata": {"oms_idempotency_key": "oms-refund-abc"}}
    stripe_server.script = [
        (200, {"object": "list", "data": [first], "has_more": True, "url": "/v1/refunds"}, 0),
        (200, {"object": "list", "data": [second], "has_more": False, "url": "/v1/refunds"}, 0),
    ]

    found = gateway.find_refund(payment_intent="pi_1", idempotency_key="oms-refund-abc")

    assert found.id == "re_b"
    assert "starting_after=re_a" in stripe_server.requests[1]["path"]
    assert "payment_intent=pi_1" in stripe_server.requests[0]["path"]


def test_metadata_splits_long_item_lists_within_stripes_500_character_limit():
    item_ids = list(range(100000, 101000))
    metadata = gateway.refund_metadata(order_reference="DE--1001", refund_id=7, idempotency_key="k", item_ids=item_ids)

    assert all(len(value) <= 500 for value in metadata.values())
    assert len(metadata) <= 50
    chunks = [value for key, value in metadata.items() if key.startswith("oms_item_ids")]
    assert [int(part) for chunk in chunks for part in chunk.split(",")] == item_ids
