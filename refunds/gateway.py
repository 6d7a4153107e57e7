"""The one door to Stripe: the only module that imports `stripe`.

It returns plain values (`StripeRefund`) and raises the project's own exceptions, so the rest
of the code, and the tests, never touch the SDK. Tests replace these functions at this boundary.
Production calls only: the demo's and the tests' helpers (paying a PaymentIntent, signing a
webhook payload) live in `refunds_dev.stripe_tools`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import time
from dataclasses import dataclass, field

import stripe

from .conf import app_settings
from .exceptions import StripeFinalError, StripeRetryableError

# Stripe metadata values hold at most 500 characters: long item id lists are split over keys.
# https://docs.stripe.com/metadata#data
METADATA_VALUE_LIMIT = 500
METADATA_MAX_ITEM_KEYS = 40
BIGINT_MAX = 2**63 - 1
# Our refund ids as we write them into metadata: ASCII digits only ("²".isdigit() is true).
_REFUND_ID_TEXT = re.compile(r"[1-9][0-9]{0,18}")  # as str(refund.pk) writes it: no sign, no leading zero


@dataclass(frozen=True)
class StripeRefund:
    id: str
    status: str
    amount: int
    currency: str
    payment_intent: str | None
    created: dt.datetime
    failure_reason: str = ""
    metadata: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def oms_refund_id(self) -> int | None:
        """Our refund's id from the metadata, if it is one we could have written: metadata is
        typed by people in the Stripe Dashboard and proves nothing alone."""
        value = self.metadata.get("oms_refund_id")
        if isinstance(value, str) and _REFUND_ID_TEXT.fullmatch(value) and 0 < int(value) <= BIGINT_MAX:
            return int(value)
        return None

    @property
    def oms_idempotency_key(self) -> str:
        value = self.metadata.get("oms_idempotency_key")
        return value if isinstance(value, str) else ""

    @classmethod
    def from_stripe(cls, obj) -> StripeRefund:
        data = obj if isinstance(obj, dict) else obj.to_dict()
        return cls(
            id=data["id"],
            status=data.get("status") or "pending",
            amount=int(data.get("amount") or 0),
            currency=data.get("currency") or "",
            payment_intent=_id_of(data.get("payment_intent")),
            created=dt.datetime.fromtimestamp(int(data.get("created") or 0), tz=dt.timezone.utc),
            failure_reason=data.get("failure_reason") or "",
            metadata=dict(data.get("metadata") or {}),
            reason=data.get("reason") or "",
        )


def _id_of(value) -> str | None:
    if isinstance(value, dict):
        return value.get("id")
    return value


def refund_metadata(*, order_reference: str, refund_id: int, idempotency_key: str, item_ids: list[int]) -> dict:
    """Metadata that lets a webhook or a later lookup find our refund without its Stripe id."""
    metadata = {
        "order_reference": order_reference,
        "oms_refund_id": str(refund_id),
        "oms_idempotency_key": idempotency_key,
    }
    chunks, current = [], ""
    for item_id in item_ids:
        piece = str(item_id) if not current else f",{item_id}"
        if len(current) + len(piece) > METADATA_VALUE_LIMIT:
            chunks.append(current)
            current = str(item_id)
        else:
            current += piece
    if current:
        chunks.append(current)
    for index, chunk in enumerate(chunks[:METADATA_MAX_ITEM_KEYS]):
        metadata["oms_item_ids" if index == 0 else f"oms_item_ids_{index}"] = chunk
    return metadata


@functools.cache
def _client_for(api_key: str, api_base: str, api_version: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        stripe_version=api_version,
        base_addresses={"api": api_base} if api_base else None,
        # Retries belong to Celery (with backoff and the same idempotency key), not the SDK.
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def client() -> stripe.StripeClient:
    return _client_for(
        app_settings.STRIPE_SECRET_KEY,
        app_settings.STRIPE_API_BASE,
        app_settings.STRIPE_API_VERSION,
        app_settings.STRIPE_TIMEOUT_SECONDS,
    )


RETRYABLE_ERRORS = (stripe.APIConnectionError, stripe.RateLimitError, stripe.IdempotencyError, stripe.APIError)


def translate_error(error: stripe.StripeError) -> Exception:
    """Map Stripe's errors onto ours: https://docs.stripe.com/error-handling"""
    message = getattr(error, "user_message", None) or str(error) or error.__class__.__name__
    code = getattr(error, "code", None) or ""
    status = getattr(error, "http_status", None)
    # A timeout reaches us as APIConnectionError; 409 is "idempotency key in use" by a request
    # still in flight, which answers the same once that one finishes.
    retryable = isinstance(error, RETRYABLE_ERRORS) or (status or 0) >= 500 or status in (409, 429)
    kind = StripeRetryableError if retryable else StripeFinalError
    return kind(message, code=code, http_status=status)


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as error:
        raise translate_error(error) from error


def create_refund(
    *,
    payment_intent: str,
    amount: int,
    idempotency_key: str,
    metadata: dict,
    reason: str = "",
) -> StripeRefund:
    params = {"payment_intent": payment_intent, "amount": amount, "metadata": metadata}
    if reason and app_settings.STRIPE_SEND_REFUND_REASON:
        # Sent only when chosen: localstripe answers 400 to any parameter it does not know.
        params["reason"] = reason
    refund = _call(client().v1.refunds.create, params, {"idempotency_key": idempotency_key})
    return StripeRefund.from_stripe(refund)


def retrieve_refund(stripe_refund_id: str) -> StripeRefund:
    return StripeRefund.from_stripe(_call(client().v1.refunds.retrieve, stripe_refund_id))


def list_refunds(*, payment_intent: str) -> list[StripeRefund]:
    """Every refund Stripe holds for a PaymentIntent, across pages."""
    refunds, params = [], {"payment_intent": payment_intent, "limit": 100}
    while True:
        page = _call(client().v1.refunds.list, params)
        batch = [StripeRefund.from_stripe(obj) for obj in page.data]
        refunds.extend(batch)
        if not page.has_more or not batch:
            return refunds
        params = {**params, "starting_after": batch[-1].id}


def list_refunds_created(
    *, since: dt.datetime, until: dt.datetime, starting_after: str | None = None, limit: int = 100
) -> tuple[list[StripeRefund], bool]:
    """One page of the account's refunds created in [since, until], newest first, and whether
    more follow: https://docs.stripe.com/api/refunds/list (`created[gte]`, `created[lte]`,
    `starting_after`). One request."""
    params = {"created": {"gte": int(since.timestamp()), "lte": int(until.timestamp())}, "limit": limit}
    if starting_after:
        params["starting_after"] = starting_after
    page = _call(client().v1.refunds.list, params)
    return [StripeRefund.from_stripe(obj) for obj in page.data], bool(page.has_more)


def find_refund(*, payment_intent: str, idempotency_key: str) -> StripeRefund | None:
    """Our refund at Stripe, found by the metadata we sent with it (Stripe has no refund search)."""
    for refund in list_refunds(payment_intent=payment_intent):
        if refund.metadata.get("oms_idempotency_key") == idempotency_key:
            return refund
    return None


def construct_event(payload: bytes, signature_header: str, secret: str, tolerance: int) -> dict:
    """Verify `Stripe-Signature` over the raw body and return the event as a plain dict.

    Raises ValueError for a body that is not a JSON Stripe event, and `InvalidSignature`
    for a bad signature or a timestamp outside the tolerance. Any one of several `v1`
    signatures may match: Stripe signs with the old and the new secret while one is rolled.
    https://docs.stripe.com/webhooks#verify-manually
    """
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance)
    except stripe.SignatureVerificationError as error:
        raise InvalidSignature(str(error)) from error
    except UnicodeDecodeError as error:
        raise ValueError("body is not UTF-8") from error
    # The SDK only refuses timestamps too old; one too far ahead is as much a replay risk.
    timestamp = _signature_timestamp(signature_header)
    if tolerance and timestamp > time.time() + tolerance:
        raise InvalidSignature(f"Timestamp in the future, outside the tolerance zone ({timestamp})")
    try:
        # UTF-8 text only (RFC 8259 §8.1), with no NaN or Infinity (not JSON, and no jsonb holds
        # them): json.loads would also read UTF-16, UTF-32, a byte order mark and those constants.
        event = json.loads(payload.decode("utf-8"), parse_constant=_not_json)
    except UnicodeDecodeError as error:
        raise ValueError("body is not UTF-8") from error
    except ValueError as error:
        raise ValueError(f"body is not JSON: {error}") from error
    except RecursionError as error:
        raise ValueError(f"body is not a Stripe event: nested more than {MAX_NESTING} levels") from error
    problem = _json_problem(event, raw=payload)
    if problem:
        raise ValueError(f"body is not a Stripe event: {problem}")
    problem = _event_shape_problem(event)
    if problem:
        raise ValueError(f"body is not a Stripe event: {problem}")
    return event


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


# Stripe's events nest about eight levels (event → data → object → refunds → data → refund →
# metadata); anything much deeper is no Stripe event, and would strain the JSON column.
MAX_NESTING = 32


# How a text PostgreSQL's jsonb cannot hold gets into a parsed body: the escapes of U+0000 and
# of a UTF-16 surrogate (a NUL byte is no valid JSON outside a text, and inside one json.loads
# refuses it; looked for all the same). A body with none of these has only texts jsonb can hold.
_SUSPECT_TEXT = re.compile(rb"\x00|\\u0000|\\u[dD][89a-fA-F]")


def _json_problem(value, raw: bytes | None = None) -> str:
    """What keeps a parsed JSON value from being stored as it came, or "": nesting deeper than
    MAX_NESTING, or text PostgreSQL's jsonb cannot hold (U+0000, a lone surrogate). Walked
    without recursion. With the `raw` body it was parsed from, the texts are looked at only if
    the body holds a suspect sequence (Stripe's events never do): then only the nesting is
    walked."""
    texts = raw is None or _SUSPECT_TEXT.search(raw) is not None
    todo = [(value, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict):
            children = list(value.values()) + list(value.keys()) if texts else value.values()
        elif isinstance(value, list):
            children = value
        elif isinstance(value, str):
            if "\x00" in value:
                return "a text holds the NUL character U+0000"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "a text holds a lone UTF-16 surrogate"
            continue
        else:
            continue
        if depth > MAX_NESTING:
            return f"nested more than {MAX_NESTING} levels"
        if texts:
            todo.extend((child, depth + 1) for child in children)
        else:
            todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return ""


def _signature_timestamp(signature_header: str) -> int:
    for part in signature_header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            return int(value)
    raise InvalidSignature("Unable to extract timestamp from header")


def _event_shape_problem(event) -> str:
    """What keeps `event` from being a Stripe Event object, or "" (https://docs.stripe.com/api/events/object)."""
    if not isinstance(event, dict) or event.get("object") != "event":
        return 'no "object": "event"'
    for key in ("id", "type"):
        value = event.get(key)
        if not isinstance(value, str) or not value or len(value) > 255:
            return f"{key!r} is not a short non-empty string"
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", event["id"]) or not re.fullmatch(r"[a-z0-9_.\-]+", event["type"]):
        return "'id' or 'type' has characters no Stripe event id or type has"
    created = event.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        return "'created' is not a Unix timestamp"
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return "'data.object' is not an object"
    return ""


class InvalidSignature(Exception):
    pass
