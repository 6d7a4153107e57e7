"""Alerts (DESIGN.md §9): a new attention case is sent once, by e-mail to `REFUND_ALERT_EMAILS`
(Django's mail framework: any SMTP server through the host's EMAIL_* settings) and, if set, as a
Slack-compatible JSON POST (`{"text": …}`) to `REFUND_ALERT_WEBHOOK_URL`.

An outbox, as refunds are: the case row is committed first, `tasks.send_attention_alert` sends
it after commit and retries; `alert_sent_at` stays empty until every configured channel took
it, so the next reconciliation run sends what a lost or exhausted task did not. The case's row
lock is held while sending, so two senders at once send one message; each channel is marked
as it succeeds, so a retry after a webhook failure does not mail again.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request

from django.core.mail import send_mail
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .. import selectors
from ..conf import app_settings
from ..exceptions import AlertNotDelivered
from ..models import AttentionCase
from .attention import KIND_HELP

logger = logging.getLogger(__name__)


def deliver_alert(*, case_id: int) -> AttentionCase:
    """Send a case's alert on every configured channel that has not taken it yet.

    Raises `AlertNotDelivered` (after recording the attempt and its error) when a channel
    failed; the task retries on it.
    """
    with transaction.atomic():
        case = AttentionCase.objects.select_for_update().get(pk=case_id)
        if case.alert_sent_at is not None:
            return case
        case = AttentionCase.objects.select_related("refund", "order").get(pk=case_id)
        now = timezone.now()
        case.alert_attempts += 1
        case.alert_last_attempt_at = now
        errors = []
        recipients = list(app_settings.REFUND_ALERT_EMAILS or [])
        if recipients and case.alert_email_sent_at is None:
            try:
                send_mail(subject_of(case), body_of(case), None, recipients, fail_silently=False)
            except (smtplib.SMTPException, OSError) as error:
                errors.append(f"e-mail: {error.__class__.__name__}: {error}")
            else:
                case.alert_email_sent_at = now
        url = app_settings.REFUND_ALERT_WEBHOOK_URL
        if url and case.alert_webhook_sent_at is None:
            try:
                post_json(url, {"text": f"{subject_of(case)}\n{body_of(case)}"})
            except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
                errors.append(f"webhook: {error.__class__.__name__}: {error}")
            else:
                case.alert_webhook_sent_at = now
        case.alert_error = "; ".join(errors)
        if not errors:
            case.alert_sent_at = now
        case.save(update_fields=[
            "alert_attempts", "alert_last_attempt_at", "alert_email_sent_at", "alert_webhook_sent_at",
            "alert_error", "alert_sent_at",
        ])
    if errors:
        logger.warning("alert for %s not delivered (attempt %d): %s", case, case.alert_attempts, case.alert_error)
        raise AlertNotDelivered(case.alert_error)
    if recipients or url:
        logger.info("alert for %s sent (%s)", case, ", ".join(filter(None, ["e-mail" if recipients else "", "webhook" if url else ""])))
    return case


def send_unsent_alerts(*, limit: int) -> tuple[int, int]:
    """Reconciliation's part: send alerts no task delivered, oldest attempt first. Returns
    (sent, failed).

    The first failure ends the run: a mail server that is down would otherwise hold the job for
    a timeout per alert. The failed case was tried last now, so the next run starts with the others.
    """
    sent = 0
    for case_id in selectors.unsent_alerts().values_list("pk", flat=True)[:limit]:
        try:
            deliver_alert(case_id=case_id)
        except AlertNotDelivered:
            return sent, 1
        sent += 1
    return sent, 0


def subject_of(case: AttentionCase) -> str:
    """`[refunds] late decline: order DE--1001, refund re_123 (#12)` — one line, as mail headers need."""
    parts = [f"[refunds] {case.get_kind_display()}"]
    about = []
    if case.order_id:
        about.append(f"order {case.order.reference}")
    if case.refund_id:
        refund = case.refund
        about.append(f"refund {refund.stripe_refund_id} (#{refund.pk})" if refund.stripe_refund_id else f"refund #{refund.pk}")
    if case.event_id and not about:
        about.append(f"Stripe event {case.event.stripe_event_id}")
    subject = parts[0] + (": " + ", ".join(about) if about else "")
    return " ".join(subject.split())[:250]


def body_of(case: AttentionCase) -> str:
    lines = [
        f"{case.get_kind_display().capitalize()}: {KIND_HELP.get(case.kind, '')}",
        "",
        case.detail,
        "",
        f"Opened {case.opened_at:%Y-%m-%d %H:%M} UTC.",
    ]
    link = case_url(case)
    if link:
        lines.append(f"Needs attention: {link}")
    return "\n".join(lines)


def case_url(case: AttentionCase) -> str:
    """The case on the Back Office's "Needs attention" page; absolute with REFUND_BACK_OFFICE_URL."""
    try:
        path = reverse("admin:refunds_attention_change", args=[case.pk])
    except NoReverseMatch:  # a host project without the admin
        return ""
    base = app_settings.REFUND_BACK_OFFICE_URL.rstrip("/")
    return f"{base}{path}" if base else path


def post_json(url: str, payload: dict) -> None:
    """POST JSON; any answer but 2xx raises (urllib raises HTTPError for 4xx/5xx)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"REFUND_ALERT_WEBHOOK_URL must be an http(s) URL, not {url[:40]!r}")
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=app_settings.REFUND_ALERT_TIMEOUT_SECONDS) as response:
        response.read()
