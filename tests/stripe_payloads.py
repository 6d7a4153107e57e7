"""Stripe webhook payloads of Stripe's real shape, signed the way Stripe signs them.

The base objects (`fixtures/stripe_objects.json`) are the `refund`, `charge` and `event` examples
of Stripe's official OpenAPI fixtures (stripe/openapi `openapi/fixtures3.json`, commit f6c2a48,
MIT licence), copied from /work/shared/stripe-fixtures. Builders copy them and change only ids,
status, amounts, metadata and times. `stripe` is imported here for signing only.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

import stripe
from django.conf import settings

from refunds import gateway
from refunds.models import Refund

from .conftest import TEST_WEBHOOK_SECRET

STRIPE_OBJECTS = json.loads((Path(__file__).parent / "fixtures" / "stripe_objects.json").read_text())
_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):010d}"


def refund_object(
    *,
    id: str | None = None,
    status: str = "succeeded",
    amount: int = 1000,
    currency: str = "eur",
    payment_intent: str | None = None,
    metadata: dict | None = None,
    created: int | None = None,
    failure_reason: str | None = None,
    reason: str | None = None,
) -> dict:
    """A Stripe Refund object: https://docs.stripe.com/api/refunds/object"""
    obj = copy.deepcopy(STRIPE_OBJECTS["refund"])
    obj.update(
        id=id or _next_id("re"),
        status=status,
        amount=amount,
        currency=currency,
        payment_intent=payment_intent,
        metadata=dict(metadata or {}),
        created=created or int(time.time()),
        reason=reason,
    )
    if status == "failed":
        # Present on failed refunds only: https://docs.stripe.com/api/refunds/object#refund_object-failure_reason
        obj["failure_reason"] = failure_reason or "expired_or_canceled_card"
        obj["failure_balance_transaction"] = _next_id("txn")
    return obj


def refund_object_for(refund: Refund, *, status: str, id: str | None = None, **fields) -> dict:
    """The Stripe Refund that our `refund` became, carrying the metadata submit_refund sends."""
    metadata = gateway.refund_metadata(
        order_reference=refund.order.reference,
        refund_id=refund.pk,
        idempotency_key=refund.idempotency_key,
        item_ids=list(refund.items.order_by("pk").values_list("pk", flat=True)),
    )
    return refund_object(
        id=id or refund.stripe_refund_id,
        status=status,
        amount=refund.amount,
        currency=refund.currency,
        payment_intent=refund.order.stripe_payment_intent_id,
        metadata=metadata,
        **fields,
    )


def charge_object(*, refunds: list[dict] | None, payment_intent: str | None = None, amount: int = 5000) -> dict:
    """A Stripe Charge; `refunds=None` leaves the list out, as API versions since 2022-11-15 do."""
    obj = copy.deepcopy(STRIPE_OBJECTS["charge"])
    obj.update(id=_next_id("ch"), payment_intent=payment_intent, amount=amount, amount_captured=amount, captured=True)
    if refunds is None:
        obj.pop("refunds", None)
    else:
        obj["refunds"] = {
            "object": "list", "data": refunds, "has_more": False, "url": f"/v1/charges/{obj['id']}/refunds",
        }
        obj["amount_refunded"] = sum(refund["amount"] for refund in refunds if refund["status"] != "failed")
        obj["refunded"] = obj["amount_refunded"] >= amount
    return obj


def event(type: str, obj: dict, *, created: int | None = None, id: str | None = None, previous: dict | None = None) -> dict:
    """A Stripe Event envelope around `obj`: https://docs.stripe.com/api/events/object"""
    evt = copy.deepcopy(STRIPE_OBJECTS["event"])
    evt.update(
        id=id or _next_id("evt"),
        type=type,
        created=created or int(time.time()),
        api_version=settings.STRIPE_API_VERSION,
        data={"object": copy.deepcopy(obj)},
        pending_webhooks=1,
        request={"id": _next_id("req"), "idempotency_key": None},
    )
    if previous is not None:
        evt["data"]["previous_attributes"] = previous
    return evt


def body_of(evt: dict) -> bytes:
    return json.dumps(evt, indent=2).encode()  # Stripe sends pretty-printed JSON


def sign(body: bytes | str, *, secret: str = TEST_WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe would send for `body`."""
    text = body.decode() if isinstance(body, bytes) else body
    return stripe.WebhookSignature.generate_signature_header(text, secret, timestamp=timestamp)


def signed_by_many(body: bytes, *secrets: str, timestamp: int | None = None) -> str:
    """One `t=` and a `v1=` per secret, as Stripe signs while an endpoint secret is rolled."""
    timestamp = timestamp or int(time.time())
    headers = [sign(body, secret=secret, timestamp=timestamp) for secret in secrets]
    return ",".join([headers[0]] + [header.split(",", 1)[1] for header in headers[1:]])


WEBHOOK_URL = "/stripe/webhook/"  # a stable interface (DESIGN.md §4): tests use the path itself


def deliver(client, evt: dict | None = None, *, body: bytes | None = None, signature: str | None = None, **extra):
    """POST one event to the endpoint as Stripe does: raw JSON body, `Stripe-Signature` header."""
    body = body_of(evt) if body is None else body
    signature = sign(body) if signature is None else signature
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature else {}
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers, **extra)
