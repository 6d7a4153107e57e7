"""The Stripe webhook endpoint: translate an HTTP delivery into `webhooks.receive_event`.

Answers, as Stripe reads them (https://docs.stripe.com/webhooks#acknowledge-events-immediately):
2xx = delivered, never sent again; anything else = delivered again later, for up to three days.
A bad request is answered 400/413 and stored nowhere; an error of ours is answered 500 so the
event comes back.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import gateway, webhooks
from .conf import app_settings

logger = logging.getLogger(__name__)

# Stripe events are a few kilobytes; anything this big is not from Stripe.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """What the endpoint answers a delivery: an HTTP status and a JSON body."""

    status: int
    body: dict


def _rejected(status: int, why: str, remote: str) -> Answer:
    logger.warning("stripe webhook rejected (%d): %s [from %s]", status, why, remote)
    return Answer(status, {"error": why})


def answer_delivery(*, read: Callable[[int], bytes], declared_length, signature: str, remote: str) -> Answer:
    """One POSTed delivery, from its raw parts, to the answer Stripe gets: the Django view
    below and the WSGI intake (refunds/intake.py) share it. `read(n)` returns up to n bytes of
    the body; `declared_length` is the request's Content-Length as sent (text, or None)."""
    try:
        declared = int(declared_length or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        # Refused on the declared length, before a byte of the body is read.
        return _rejected(413, f"body of {declared} bytes exceeds {MAX_BODY_BYTES}", remote)
    payload = read(MAX_BODY_BYTES + 1)
    if len(payload) > MAX_BODY_BYTES:
        return _rejected(413, f"body exceeds {MAX_BODY_BYTES} bytes", remote)

    secret = app_settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # Our misconfiguration, not Stripe's: 500 keeps Stripe delivering until it is fixed.
        logger.error("stripe webhook cannot verify events: STRIPE_WEBHOOK_SECRET is not set")
        return Answer(500, {"error": "webhook secret not configured"})
    try:
        event = gateway.construct_event(payload, signature, secret, app_settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS)
    except gateway.InvalidSignature as error:
        return _rejected(400, f"signature: {error}", remote)
    except ValueError as error:
        return _rejected(400, str(error), remote)

    try:
        receipt = webhooks.receive_event(event, body=payload)
    except Exception as error:  # noqa: BLE001 — kept on the stored event; Stripe delivers again
        logger.error("stripe webhook: event %s (%s) failed, answered 500: %r", event["id"], event["type"], error)
        return Answer(500, {"error": "event could not be applied; it is kept and will be retried"})
    answer = {"received": event["id"], "duplicate": receipt.duplicate}
    if receipt.unprocessable:
        # Stored with the reason for the Back Office; 200, since delivering it again cannot help.
        answer["unprocessable"] = receipt.unprocessable
    return Answer(200, answer)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    answer = answer_delivery(
        read=request.read, declared_length=request.META.get("CONTENT_LENGTH"),
        signature=request.headers.get("Stripe-Signature", ""), remote=request.META.get("REMOTE_ADDR", "?"),
    )
    return JsonResponse(answer.body, status=answer.status)
