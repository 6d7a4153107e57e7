"""The WSGI intake (refunds/intake.py): POSTs to the webhook URL are answered as the Django view
answers them, with Django's request signals; every other request reaches the wrapped app.

Called as a WSGI server calls it: an environ, a start_response, then close() on the answer.
Transactional, since the intake's `request_started` closes connections left in a transaction.
"""

import io
import json
from dataclasses import dataclass

import pytest
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.test import Client

from refunds import intake, views
from refunds.intake import with_webhook_intake
from refunds.models import ItemState, ItemTransition, StripeEvent
from refunds.views import MAX_BODY_BYTES

from .factories import paid_order_with_items
from .stripe_payloads import WEBHOOK_URL, body_of, deliver, event, refund_object_for, sign
from .webhook_scenarios import states, submitted_refund

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_submission_task(monkeypatch, fake_stripe):
    """submitted_refund commits a queued refund; its task must not replace our Stripe id."""
    from refunds.tasks import submit_refund

    monkeypatch.setattr(submit_refund, "delay", lambda *args, **kwargs: None)


# --- A WSGI server, by hand -------------------------------------------------------------------


def wsgi_environ(body: bytes = b"", *, method="POST", path=WEBHOOK_URL, signature=None, length=None, stream=None) -> dict:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver", "REMOTE_ADDR": "203.0.113.7",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body) if length is None else length),
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": stream or io.BytesIO(body),
        "wsgi.errors": io.StringIO(), "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if signature is not None:
        environ["HTTP_STRIPE_SIGNATURE"] = signature
    return environ


@dataclass
class Served:
    status: str
    headers: dict
    body: bytes
    iterable: object

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def json(self):
        return json.loads(self.body)


def serve(app, environ, *, close=True) -> Served:
    started = []

    def start_response(status, headers, exc_info=None):
        started.append((status, headers))
        return lambda data: None

    iterable = app(environ, start_response)
    body = b"".join(iterable)
    if close and hasattr(iterable, "close"):
        iterable.close()
    [(status, headers)] = started
    return Served(status, dict(headers), body, iterable)


def post_event(app, evt: dict, **extra) -> Served:
    body = body_of(evt)
    return serve(app, wsgi_environ(body, signature=sign(body), **extra))


class StubApp:
    """The wrapped application: records what reached it."""

    def __init__(self):
        self.calls = []

    def __call__(self, environ, start_response):
        self.calls.append(environ)
        start_response("204 No Content", [("X-Answered-By", "stub")])
        return [b""]


class FailingStream:
    """A wsgi.input that must not be read."""

    def __init__(self):
        self.reads = 0

    def read(self, *args):
        self.reads += 1
        raise AssertionError("the body was read")

    readline = read  # a wsgi.input has both (PEP 3333)


@pytest.fixture
def inner():
    return StubApp()


@pytest.fixture
def app(inner):
    return with_webhook_intake(inner)


@pytest.fixture
def pending_refund(paid_order, back_office_user):
    items = list(paid_order.items.order_by("pk")[:2])
    return submitted_refund(items, back_office_user, stripe_refund_id="re_intake_one")


@pytest.fixture
def received_signals():
    """Each request signal's senders, as sent."""
    sent = {"started": [], "finished": [], "exception": []}
    receivers = {
        "started": (signals.request_started, lambda sender, **kw: sent["started"].append(sender)),
        "finished": (signals.request_finished, lambda sender, **kw: sent["finished"].append(sender)),
        "exception": (signals.got_request_exception, lambda sender, **kw: sent["exception"].append(sender)),
    }
    for signal, receiver in receivers.values():
        signal.connect(receiver, weak=False)
    yield sent
    for signal, receiver in receivers.values():
        signal.disconnect(receiver)


def what_the_event_did(refund, evt) -> dict:
    refund.refresh_from_db()
    stored = StripeEvent.objects.get(stripe_event_id=evt["id"])
    return {
        "refund_status": refund.status,
        "item_states": states(refund.items.all()),
        "transitions": list(
            ItemTransition.objects.filter(refund=refund, by=f"Stripe event {evt['id']}")
            .order_by("item_id").values_list("from_state", "transition", "to_state")
        ),
        "stored_processed": stored.processed_at is not None and stored.error == "",
        "stored_linked": stored.refund_id == refund.pk,
        "stored_payload": stored.payload == evt,
    }


# --- Deliveries ---------------------------------------------------------------------------------


def test_a_signed_event_is_answered_and_applied_as_the_django_view_does(app, inner, pending_refund, back_office_user):
    other_order = paid_order_with_items(1000, 2000)
    other_refund = submitted_refund(list(other_order.items.order_by("pk")), back_office_user, stripe_refund_id="re_intake_two")
    by_intake = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    by_view = event("refund.updated", refund_object_for(other_refund, status="succeeded"))

    served = post_event(app, by_intake)
    viewed = deliver(Client(), by_view)

    assert served.status == "200 OK" and viewed.status_code == 200
    assert served.json() == {"received": by_intake["id"], "duplicate": False}
    assert viewed.json() == {"received": by_view["id"], "duplicate": False}
    assert served.headers["Content-Type"] == viewed["Content-Type"] == "application/json"
    assert served.headers["Content-Length"] == str(len(served.body))
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert inner.calls == []
    done_by_intake, done_by_view = what_the_event_did(pending_refund, by_intake), what_the_event_did(other_refund, by_view)
    assert done_by_intake == done_by_view
    assert done_by_intake["item_states"] == [ItemState.PAYMENT_REFUND_SUCCEEDED] * 2
    assert len(done_by_intake["transitions"]) == 2 and all(done_by_intake[key] for key in done_by_intake if key.startswith("stored"))


def test_a_second_delivery_through_the_intake_is_a_duplicate_and_changes_nothing(app, pending_refund):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    assert post_event(app, evt).json()["duplicate"] is False
    before = what_the_event_did(pending_refund, evt)

    again = post_event(app, evt)

    assert again.code == 200
    assert again.json() == {"received": evt["id"], "duplicate": True}
    assert what_the_event_did(pending_refund, evt) == before
    assert StripeEvent.objects.filter(stripe_event_id=evt["id"]).count() == 1


def test_a_bad_signature_is_answered_400_and_stores_nothing(app, pending_refund):
    body = body_of(event("refund.updated", refund_object_for(pending_refund, status="succeeded")))

    served = serve(app, wsgi_environ(body, signature=sign(body, secret="whsec_someone_else")))

    assert served.status == "400 Bad Request"
    assert served.json()["error"].startswith("signature: ")
    assert not StripeEvent.objects.exists()
    assert states(pending_refund.items.all()) == [ItemState.PAYMENT_REFUND_PENDING] * 2


def test_a_missing_signature_header_is_answered_400(app, pending_refund):
    body = body_of(event("refund.updated", refund_object_for(pending_refund, status="succeeded")))

    served = serve(app, wsgi_environ(body))

    assert served.code == 400
    assert not StripeEvent.objects.exists()


def test_a_declared_length_over_1_mib_is_answered_413_without_reading_the_body(app, inner, pending_refund):
    stream = FailingStream()

    served = serve(app, wsgi_environ(signature="t=1,v1=00", length=MAX_BODY_BYTES + 1, stream=stream))

    assert served.status == "413 Request Entity Too Large"
    assert served.json() == {"error": f"body of {MAX_BODY_BYTES + 1} bytes exceeds {MAX_BODY_BYTES}"}
    assert stream.reads == 0
    assert inner.calls == []
    assert not StripeEvent.objects.exists()


def test_only_the_declared_length_of_the_body_is_read(app, pending_refund):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = body_of(evt)
    # A server's input stream may hold more than the request (a pipelined next request).
    environ = wsgi_environ(body + b"POST /stripe/webhook/ HTTP/1.1\r\n", signature=sign(body), length=len(body))

    served = serve(app, environ)

    assert served.code == 200 and served.json()["received"] == evt["id"]
    assert environ["wsgi.input"].read() == b"POST /stripe/webhook/ HTTP/1.1\r\n"


def test_a_body_without_content_length_is_not_read_as_django_does(app, pending_refund):
    body = body_of(event("refund.updated", refund_object_for(pending_refund, status="succeeded")))
    environ = wsgi_environ(body, signature=sign(body))
    del environ["CONTENT_LENGTH"]

    served = serve(app, environ)

    assert served.code == 400
    assert environ["wsgi.input"].read() == body
    assert not StripeEvent.objects.exists()


def test_a_missing_webhook_secret_is_answered_500(app, settings, pending_refund):
    settings.STRIPE_WEBHOOK_SECRET = ""

    served = post_event(app, event("refund.updated", refund_object_for(pending_refund, status="succeeded")))

    assert served.status == "500 Internal Server Error"
    assert served.json() == {"error": "webhook secret not configured"}
    assert not StripeEvent.objects.exists()
    assert states(pending_refund.items.all()) == [ItemState.PAYMENT_REFUND_PENDING] * 2


# --- Requests the intake does not take ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", WEBHOOK_URL), ("PUT", WEBHOOK_URL), ("HEAD", WEBHOOK_URL), ("POST", "/health/"),
     ("POST", "/stripe/webhook"), ("POST", "/api/v1/refunds/")],
    ids=["get-webhook", "put-webhook", "head-webhook", "post-health", "post-without-slash", "post-api"],
)
def test_other_requests_reach_the_wrapped_application(app, inner, method, path, received_signals):
    environ = wsgi_environ(b"{}", method=method, path=path, signature="t=1,v1=00")

    served = serve(app, environ)

    assert served.status == "204 No Content" and served.headers == {"X-Answered-By": "stub"}
    assert inner.calls == [environ]
    assert received_signals == {"started": [], "finished": [], "exception": []}  # the stub sends none


def test_a_get_to_the_webhook_reaches_django_which_answers_405():
    app = with_webhook_intake(get_wsgi_application())

    served = serve(app, wsgi_environ(method="GET", length=0))

    assert served.status == "405 Method Not Allowed"
    assert served.headers["Allow"] == "POST"
    assert served.headers["X-Frame-Options"] == "DENY"  # Django's middleware answered it


def test_the_production_wsgi_application_is_wrapped(pending_refund):
    from refunds_project import wsgi

    assert wsgi.application.webhook_path == "/stripe/webhook/"
    assert serve(wsgi.application, wsgi_environ(method="GET", length=0)).code == 405
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    assert post_event(wsgi.application, evt).json() == {"received": evt["id"], "duplicate": False}


def test_the_webhook_path_can_be_given(inner, pending_refund):
    app = with_webhook_intake(inner, path="/hooks/stripe/")
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))

    taken = post_event(app, evt, path="/hooks/stripe/")
    passed = post_event(app, evt)

    assert app.webhook_path == "/hooks/stripe/"
    assert taken.code == 200 and taken.json()["received"] == evt["id"]
    assert passed.code == 204 and len(inner.calls) == 1


# --- Django's request signals ---------------------------------------------------------------------


def test_request_started_is_sent_once_and_request_finished_once_at_close(app, pending_refund, received_signals):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = body_of(evt)

    served = serve(app, wsgi_environ(body, signature=sign(body)), close=False)

    assert served.code == 200
    assert received_signals["started"] == [intake.WebhookIntake]
    assert received_signals["finished"] == []
    served.iterable.close()
    assert received_signals["started"] == [intake.WebhookIntake]
    assert received_signals["finished"] == [intake.WebhookIntake]
    assert received_signals["exception"] == []


def test_a_refused_delivery_sends_the_request_signals_too(app, received_signals):
    served = serve(app, wsgi_environ(b"{}", signature="t=1,v1=00"))

    assert served.code == 400
    assert received_signals["started"] == received_signals["finished"] == [intake.WebhookIntake]


def test_an_error_of_ours_is_answered_500_json_and_reported(app, monkeypatch, caplog, received_signals):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "answer_delivery", broken)

    served = serve(app, wsgi_environ(b"{}", signature="t=1,v1=00"))

    assert served.status == "500 Internal Server Error"
    assert served.headers["Content-Type"] == "application/json"
    assert served.json() == {"error": "internal error"}
    assert received_signals["exception"] == [intake.WebhookIntake]
    assert received_signals["started"] == received_signals["finished"] == [intake.WebhookIntake]
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "ERROR" and record.exc_info[0] is RuntimeError
    assert record.getMessage() == f"Internal Server Error: {WEBHOOK_URL}"


# --- What Django's middleware would refuse is left to Django ----------------------------------


def test_a_host_not_in_allowed_hosts_is_left_to_django(app, inner, pending_refund):
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = body_of(evt)

    served = serve(app, wsgi_environ(body, signature=sign(body)) | {"HTTP_HOST": "attacker.example"})

    assert served.headers.get("X-Answered-By") == "stub" and len(inner.calls) == 1
    assert not StripeEvent.objects.filter(stripe_event_id=evt["id"]).exists()


def test_plain_http_under_secure_ssl_redirect_is_left_to_django_and_https_is_answered(app, inner, pending_refund, settings):
    settings.SECURE_SSL_REDIRECT = True
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = body_of(evt)

    plain = serve(app, wsgi_environ(body, signature=sign(body)))
    secure = serve(app, wsgi_environ(body, signature=sign(body)) | {"wsgi.url_scheme": "https"})

    assert plain.headers.get("X-Answered-By") == "stub" and len(inner.calls) == 1
    assert secure.code == 200 and secure.json()["received"] == evt["id"] and len(inner.calls) == 1


def test_django_itself_refuses_what_the_intake_leaves_to_it(pending_refund, settings):
    settings.SECURE_SSL_REDIRECT = True
    app = with_webhook_intake(get_wsgi_application())
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))
    body = body_of(evt)

    redirected = serve(app, wsgi_environ(body, signature=sign(body)))
    wrong_host = serve(app, wsgi_environ(body, signature=sign(body)) | {"HTTP_HOST": "attacker.example",
                                                                         "wsgi.url_scheme": "https"})

    assert redirected.code == 301 and redirected.headers["Location"] == f"https://testserver{WEBHOOK_URL}"
    assert wrong_host.code == 400
    assert not StripeEvent.objects.filter(stripe_event_id=evt["id"]).exists()
