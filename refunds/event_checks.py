"""Input limits for what we read from a signed Stripe event (DESIGN.md §10).

A valid signature proves the event came from Stripe (or from whoever holds the signing secret),
not that its content fits our database or our rules: a status outside Stripe's enum, an amount
beyond bigint, a `created` years ahead, a metadata id that only looks like digits. Every field
the intake reads is checked here before anything is applied; what fails is an `InvalidEvent`,
stored with the reason and answered 200 (refunds.webhooks), never a 500 that makes Stripe
retry a hopeless event for three days.

Stripe's objects: https://docs.stripe.com/api/events/object, https://docs.stripe.com/api/refunds/object
"""

from __future__ import annotations

import datetime as dt
import re

from django.utils import timezone

from .conf import app_settings
from .gateway import BIGINT_MAX

# Stripe's refund statuses (https://docs.stripe.com/api/refunds/object#refund_object-status).
REFUND_STATUSES = frozenset({"pending", "requires_action", "succeeded", "failed", "canceled"})
# Stripe ids: a prefix and letters, digits, underscores (re_…, pi_…, evt_…).
STRIPE_ID = re.compile(r"[A-Za-z0-9_\-]{1,255}")
CURRENCY = re.compile(r"[a-z]{3}")
# Work per event is bounded: a charge.refunded listing more refunds than this is refused.
MAX_REFUNDS_PER_EVENT = 100
# Stripe's metadata limits: 50 keys, key names of 40 characters, values of 500.
# https://docs.stripe.com/metadata#data
METADATA_MAX_KEYS, METADATA_KEY_LENGTH, METADATA_VALUE_LENGTH = 50, 40, 500
TEXT_LIMIT = 255
# Stripe delivers an event for up to three days and lets an operator resend one for longer;
# anything older, or ahead of our clock by more than the signature's tolerance, is not trusted
# as a time: a far-future `created` would make every later event about its refund look older.
EVENT_MAX_AGE = dt.timedelta(days=30)


class InvalidEvent(ValueError):
    """A signed Stripe event whose content is not what its type promises; the message says why."""


def check_event_time(event: dict, *, now: dt.datetime | None = None) -> None:
    """On receipt only: the event's `created` lies within a sane window of now. (A stored
    event reprocessed later keeps the time it was received with.)"""
    now = now or timezone.now()
    created = event["created"]
    earliest = int((now - EVENT_MAX_AGE).timestamp())
    latest = int(now.timestamp()) + int(app_settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS)
    if not earliest <= created <= latest:
        raise InvalidEvent(
            f"event created at {created} is outside {earliest}…{latest} (now − {EVENT_MAX_AGE.days} days … "
            f"now + {app_settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS} s)"
        )


def check_refund_list(listed) -> list:
    if not isinstance(listed, dict) or not isinstance(listed.get("data"), list):
        raise InvalidEvent("charge.refunds is not a list object")
    if len(listed["data"]) > MAX_REFUNDS_PER_EVENT:
        raise InvalidEvent(
            f"the charge lists {len(listed['data'])} refunds; at most {MAX_REFUNDS_PER_EVENT} are applied per event"
        )
    return listed["data"]


def check_refund(obj, *, now: dt.datetime | None = None) -> None:
    """Every field of a Stripe Refund object that we read, or InvalidEvent naming the first that is off."""
    if not isinstance(obj, dict) or obj.get("object") != "refund":
        kind = obj.get("object") if isinstance(obj, dict) else type(obj).__name__
        raise InvalidEvent(f"expected a refund, got a {shown(kind)}")
    refund_id = obj.get("id")
    if not _is_id(refund_id):
        raise InvalidEvent(f"refund without an id (id {shown(refund_id)})")
    where = f"refund {refund_id}"
    status = obj.get("status")
    if not isinstance(status, str) or not status:
        raise InvalidEvent(f"{where} without a status")
    if status not in REFUND_STATUSES:
        raise InvalidEvent(f"{where} has status {shown(status)}, not one of Stripe's {sorted(REFUND_STATUSES)}")
    amount = obj.get("amount")
    if not _is_int(amount):
        raise InvalidEvent(f"{where} without an integer amount")
    if not 0 <= amount <= BIGINT_MAX:
        raise InvalidEvent(f"{where} has amount {shown(amount)}, outside 0…{BIGINT_MAX}")
    currency = obj.get("currency")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise InvalidEvent(f"{where} has currency {shown(currency)}, not a lower-case ISO code")
    payment_intent = obj.get("payment_intent")
    if isinstance(payment_intent, dict):  # expanded
        payment_intent = payment_intent.get("id")
    if payment_intent is not None and not _is_id(payment_intent):
        raise InvalidEvent(f"{where} has PaymentIntent {shown(payment_intent)}, not a Stripe id")
    created = obj.get("created")
    latest = int((now or timezone.now()).timestamp()) + int(app_settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS)
    if not _is_int(created) or not 0 < created <= latest:
        raise InvalidEvent(f"{where} has created {shown(created)}, not a Unix time up to now")
    for field in ("failure_reason", "reason"):
        value = obj.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > TEXT_LIMIT):
            raise InvalidEvent(f"{where} has a {field} that is not a text of up to {TEXT_LIMIT} characters")
    _check_metadata(obj.get("metadata"), where)


def _check_metadata(metadata, where: str) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidEvent(f"{where} has metadata that is not an object")
    if len(metadata) > METADATA_MAX_KEYS:
        raise InvalidEvent(f"{where} has {len(metadata)} metadata keys; Stripe allows {METADATA_MAX_KEYS}")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_LENGTH or not isinstance(value, str) or len(value) > METADATA_VALUE_LENGTH:
            raise InvalidEvent(
                f"{where} has metadata {shown(key)} that is not a text of up to {METADATA_VALUE_LENGTH} "
                f"characters under a key of up to {METADATA_KEY_LENGTH}"
            )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value) -> bool:
    return isinstance(value, str) and STRIPE_ID.fullmatch(value) is not None


def shown(value) -> str:
    """A value for an error message: its repr, cut short (it is stored and logged)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"
