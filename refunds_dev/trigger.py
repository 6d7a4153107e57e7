"""Stripe events for one of our refunds, signed as Stripe signs them, for local development.

`manage.py stripe_trigger` uses this the way Stripe CLI's `stripe trigger` is used: the local
emulator never fails a refund and sends no webhooks, so a decline after success, a late
success or a cancellation is played by sending the event Stripe would send.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

from django.conf import settings

from refunds import gateway
from refunds.models import Refund, RefundStatus

from . import stripe_tools

# https://docs.stripe.com/api/refunds/object#refund_object-failure_reason
FAILURE_REASONS = (
    "charge_for_pending_refund_disputed",
    "declined",
    "expired_or_canceled_card",
    "insufficient_funds",
    "lost_or_stolen_card",
    "merchant_request",
    "unknown",
)
TRIGGER_STATUSES = (RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED)
# Event types whose `data.object` is a Refund; refund.failed only ever carries a failed one.
EVENT_TYPES = ("refund.updated", "charge.refund.updated", "refund.failed")


class TriggerError(Exception):
    """The event cannot be built or was not accepted; the message says why."""


def refund_event(
    *, refund: Refund, status: str, failure_reason: str = "", event_type: str = "refund.updated",
    created: int | None = None,
) -> dict:
    """The Event Stripe sends when `refund` reaches `status`, in Stripe's shape
    (https://docs.stripe.com/api/events/object, data.object a Refund)."""
    if status not in TRIGGER_STATUSES:
        raise TriggerError(f"status must be one of {', '.join(TRIGGER_STATUSES)}")
    if event_type not in EVENT_TYPES:
        raise TriggerError(f"event type must be one of {', '.join(EVENT_TYPES)}")
    if event_type == "refund.failed" and status != RefundStatus.FAILED:
        raise TriggerError("refund.failed only carries a failed refund")
    if not refund.stripe_refund_id:
        raise TriggerError(f"{refund} has not reached Stripe yet (status {refund.status}): it has no Stripe id")
    if status == RefundStatus.FAILED:
        failure_reason = failure_reason or "declined"
        if failure_reason not in FAILURE_REASONS:
            raise TriggerError(f"failure reason must be one of {', '.join(FAILURE_REASONS)}")
    item_ids = list(refund.items.order_by("pk").values_list("pk", flat=True))
    refund_object = {
        "id": refund.stripe_refund_id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": None,
        "charge": None,
        "created": int(refund.created_at.timestamp()),
        "currency": refund.currency,
        "customer": None,
        "customer_account": None,
        "destination_details": {"card": {"type": "reversal"}, "type": "card"},
        "metadata": gateway.refund_metadata(
            order_reference=refund.order.reference,
            refund_id=refund.pk,
            idempotency_key=refund.idempotency_key,
            item_ids=item_ids,
        ),
        "payment_intent": refund.order.stripe_payment_intent_id or None,
        "payment_method": None,
        "reason": refund.reason or None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
    }
    if status in (RefundStatus.FAILED, RefundStatus.CANCELED):
        refund_object["failure_reason"] = failure_reason or None
        refund_object["failure_balance_transaction"] = None
    data = {"object": refund_object}
    if refund.status != status:
        data["previous_attributes"] = {"status": refund.status}
    return {
        "id": f"evt_oms_trigger_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "api_version": settings.STRIPE_API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def send_event(*, url: str, event: dict, secret: str, timeout: float = 30) -> tuple[int, str]:
    """POST the event to a webhook endpoint with a valid `Stripe-Signature`; (status, body)."""
    payload = json.dumps(event, separators=(",", ":"))
    request = urllib.request.Request(
        url,
        data=payload.encode("utf-8"),
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": stripe_tools.sign_payload(payload, secret),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks) oms-stripe-trigger",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")
    except urllib.error.URLError as error:
        raise TriggerError(f"could not reach {url}: {error.reason}") from error


def choose_refund(*, refund: str = "", item: int | None = None) -> Refund:
    """`refund` is our id or Stripe's `re_…`; `item` picks that item's latest refund; neither
    picks the latest refund that reached Stripe."""
    refunds = Refund.objects.select_related("order")
    if refund:
        lookup = {"stripe_refund_id": refund} if refund.startswith("re_") else {"pk": refund if refund.isdigit() else 0}
        found = refunds.filter(**lookup).first()
        if found is None:
            raise TriggerError(f"no refund {refund!r}")
        return found
    if item is not None:
        found = refunds.filter(items=item).order_by("-pk").first()
        if found is None:
            raise TriggerError(f"item {item} has no refund")
        return found
    found = refunds.exclude(stripe_refund_id=None).order_by("-pk").first()
    if found is None:
        raise TriggerError("no refund has reached Stripe yet: refund an item in the Back Office first")
    return found
