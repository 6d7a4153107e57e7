"""Alerts: one message per case, by e-mail (Django's mail framework; a real SMTP server on
127.0.0.1 here, locmem elsewhere) and a Slack-compatible webhook, sent after commit, retried,
and sent by reconciliation when the task was lost."""

import datetime as dt
import json
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from celery.exceptions import Retry
from django.core import mail

from refunds import services
from refunds.exceptions import AlertNotDelivered
from refunds.models import AttentionCase
from refunds.tasks import send_attention_alert

from .conftest import free_port
from .stripe_payloads import deliver, event, refund_object_for
from .webhook_scenarios import submitted_refund

pytestmark = pytest.mark.django_db

OPENED_AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _stripe(fake_stripe):
    return fake_stripe


@pytest.fixture(autouse=True)
def alert_settings(settings):
    settings.REFUND_ALERT_EMAILS = ["ops@shop.example", "finance@shop.example"]
    settings.REFUND_ALERT_WEBHOOK_URL = ""
    settings.REFUND_BACK_OFFICE_URL = "https://oms.shop.example"
    settings.DEFAULT_FROM_EMAIL = "refunds@shop.example"
    return settings


@pytest.fixture
def pending_refund(paid_order, back_office_user):
    return submitted_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user, stripe_refund_id="re_pending00001")


def decline(client, refund, **fields):
    return deliver(client, event("refund.updated", refund_object_for(refund, status="failed", failure_reason="declined"), **fields))


# --- what is sent --------------------------------------------------------------------------


def test_a_new_case_is_mailed_once_naming_the_case_and_the_order(client, pending_refund, django_capture_on_commit_callbacks):
    evt = event("refund.updated", refund_object_for(pending_refund, status="failed", failure_reason="declined"))
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, evt)
        deliver(client, evt)  # a duplicate Stripe delivery never sends a second alert

    [message] = mail.outbox
    case = AttentionCase.objects.get()
    reference = pending_refund.order.reference
    assert message.subject == f"[refunds] refund failed: order {reference}, refund re_pending00001 (#{pending_refund.pk})"
    assert message.to == ["ops@shop.example", "finance@shop.example"]
    assert message.from_email == "refunds@shop.example"
    assert case.detail in message.body
    assert "Refund failed: Stripe failed or canceled a refund" in message.body
    assert f"https://oms.shop.example/admin/refunds/attention/{case.pk}/change/" in message.body
    assert case.alert_sent_at is not None and case.alert_email_sent_at is not None and case.alert_attempts == 1


def test_nothing_is_sent_before_the_transaction_commits(client, pending_refund, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        decline(client, pending_refund)

    assert mail.outbox == []
    assert len(callbacks) == 1  # the alert task, waiting for the commit


def test_without_recipients_nothing_is_sent_and_nothing_stays_pending(
    client, pending_refund, alert_settings, django_capture_on_commit_callbacks
):
    alert_settings.REFUND_ALERT_EMAILS = []
    with django_capture_on_commit_callbacks(execute=True):
        decline(client, pending_refund)

    assert mail.outbox == []
    assert AttentionCase.objects.get().alert_sent_at is not None  # not sent later when settings change


class WebhookReceiver:
    """A Slack-compatible incoming webhook on 127.0.0.1: records each JSON body, answers `status`."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/XXX"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver(alert_settings):
    receiver = WebhookReceiver()
    alert_settings.REFUND_ALERT_WEBHOOK_URL = receiver.url
    yield receiver
    receiver.close()


def test_the_webhook_gets_slack_compatible_json(client, pending_refund, webhook_receiver, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        decline(client, pending_refund)

    [body] = webhook_receiver.bodies
    assert list(body) == ["text"]
    assert body["text"].startswith(f"[refunds] refund failed: order {pending_refund.order.reference}")
    assert len(mail.outbox) == 1


def test_a_failing_webhook_is_retried_without_mailing_again(client, pending_refund, webhook_receiver, time_machine):
    time_machine.move_to(OPENED_AT, tick=False)
    webhook_receiver.status = 500
    decline(client, pending_refund)  # on_commit does not run here: the task is "lost"
    case = AttentionCase.objects.get()

    with pytest.raises(AlertNotDelivered, match="webhook: HTTPError: HTTP Error 500"):
        services.deliver_alert(case_id=case.pk)
    case.refresh_from_db()
    assert (len(mail.outbox), case.alert_email_sent_at is not None, case.alert_sent_at) == (1, True, None)

    webhook_receiver.status = 200
    time_machine.move_to(OPENED_AT + dt.timedelta(minutes=6), tick=False)
    assert services.reconcile_refunds().alerts_sent == 1

    case.refresh_from_db()
    assert case.alert_sent_at is not None and case.alert_error == "" and case.alert_attempts == 2
    assert len(mail.outbox) == 1 and len(webhook_receiver.bodies) == 2


def test_an_alert_whose_task_was_lost_is_sent_by_the_next_reconciliation(client, pending_refund, time_machine):
    time_machine.move_to(OPENED_AT, tick=False)
    decline(client, pending_refund)  # committed, but its task never ran
    assert mail.outbox == []

    time_machine.move_to(OPENED_AT + dt.timedelta(minutes=4), tick=False)
    assert services.reconcile_refunds().alerts_sent == 0  # the task may still be on its way
    time_machine.move_to(OPENED_AT + dt.timedelta(minutes=6), tick=False)
    assert services.reconcile_refunds().alerts_sent == 1
    assert services.reconcile_refunds().alerts_sent == 0

    assert len(mail.outbox) == 1


def test_the_task_retries_an_alert_that_could_not_be_sent(pending_refund, monkeypatch):
    from refunds.services import alerts

    case = services.open_case(kind="refund_failed", refund=pending_refund, detail="declined")

    def smtp_down(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(alerts, "send_mail", smtp_down)
    assert AlertNotDelivered in send_attention_alert.autoretry_for
    with pytest.raises(Retry):  # eager: Celery hands the retry back to the caller
        send_attention_alert.delay(case.pk)

    case.refresh_from_db()
    assert case.alert_sent_at is None
    assert case.alert_error == "e-mail: ConnectionRefusedError: [Errno 111] Connection refused"


# --- a real SMTP server on 127.0.0.1 -----------------------------------------------------------


class SMTPServer:
    """aiosmtpd on 127.0.0.1: keeps what it accepted; answers 451 to the next `refuse` messages."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.received = []
        self.refuse = 0
        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                if server.refuse:
                    server.refuse -= 1
                    return "451 4.3.0 Mail server temporarily unavailable"
                # policy.default unfolds long headers, as a mail client shows them
                server.received.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp_server(alert_settings):
    server = SMTPServer()
    alert_settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    alert_settings.EMAIL_HOST = "127.0.0.1"
    alert_settings.EMAIL_PORT = server.port
    alert_settings.EMAIL_USE_TLS = alert_settings.EMAIL_USE_SSL = False
    alert_settings.EMAIL_HOST_USER = alert_settings.EMAIL_HOST_PASSWORD = ""
    alert_settings.EMAIL_TIMEOUT = 10
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_one_email_per_case_through_a_real_smtp_server(client, paid_order, back_office_user, smtp_server, time_machine):
    """The whole path: a signed decline → the case → commit → the task → SMTP on 127.0.0.1. A
    failing server is retried (here by reconciliation) and the case's alert is not lost."""
    time_machine.move_to(OPENED_AT, tick=True)
    pending_refund = submitted_refund(
        list(paid_order.items.order_by("pk")[:2]), back_office_user, stripe_refund_id="re_pending00001"
    )
    smtp_server.refuse = 1
    evt = event(
        "refund.updated", refund_object_for(pending_refund, status="failed", failure_reason="declined"),
        created=int(OPENED_AT.timestamp()) + 60,
    )

    assert deliver(client, evt).status_code == 200  # the task ran after commit; the server said 451
    case = AttentionCase.objects.get()
    assert smtp_server.received == []
    assert case.alert_sent_at is None and "SMTPDataError" in case.alert_error

    time_machine.move_to(OPENED_AT + dt.timedelta(minutes=6), tick=True)
    assert services.reconcile_refunds().alerts_sent == 1
    assert deliver(client, evt).status_code == 200  # Stripe delivers the same event again
    decline(client, pending_refund, created=evt["created"] + 5)  # and another saying the same

    [(recipients, message)] = smtp_server.received
    assert recipients == ["ops@shop.example", "finance@shop.example"]
    assert message["Subject"] == f"[refunds] refund failed: order {pending_refund.order.reference}, refund re_pending00001 (#{pending_refund.pk})"
    assert message["From"] == "refunds@shop.example"
    assert "failed by Stripe (declined)" in message.get_content()
    case.refresh_from_db()
    assert case.alert_sent_at is not None and case.alert_attempts == 2


def test_reconciliation_stops_sending_at_the_first_failure_and_starts_with_the_others_next_time(
    paid_order, back_office_user, monkeypatch, time_machine
):
    from refunds.services import alerts

    time_machine.move_to(OPENED_AT, tick=False)
    refunds = [submitted_refund([item], back_office_user, stripe_refund_id=f"re_{item.pk}") for item in paid_order.items.all()]
    cases = [services.open_case(kind="refund_failed", refund=refund) for refund in refunds]
    real_send_mail, calls = alerts.send_mail, []

    def down_for_the_first(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 1:
            raise TimeoutError("timed out")
        return real_send_mail(*args, **kwargs)

    monkeypatch.setattr(alerts, "send_mail", down_for_the_first)
    time_machine.move_to(OPENED_AT + dt.timedelta(minutes=6), tick=False)
    first = services.reconcile_refunds()
    time_machine.move_to(OPENED_AT + dt.timedelta(minutes=12), tick=False)
    second = services.reconcile_refunds()

    assert (first.alerts_sent, first.alerts_failed) == (0, 1)  # one timeout, not three
    assert (second.alerts_sent, second.alerts_failed) == (3, 0)
    assert len(calls) == 4 and len(mail.outbox) == 3
    assert all(AttentionCase.objects.get(pk=case.pk).alert_sent_at for case in cases)
