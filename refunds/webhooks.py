"""Stripe webhook events: stored first, then applied once, the newest Stripe view of a refund winning.

Stripe delivers every event at least once, in no particular order, and retries for three days
until it gets a 2xx (https://docs.stripe.com/webhooks#event-delivery-behaviors). So:

- an event is stored under its unique id before it is applied; a second delivery of an applied
  event hits that unique id and changes nothing;
- each Refund keeps the `created` time of the newest event applied to it
  (`Refund.stripe_event_created_at`); an older event changes nothing, and a tie (Stripe's
  `created` has one-second resolution) is settled by asking Stripe for the refund as it is now;
- an error while applying rolls the changes back, keeps the error on the stored event for the
  Back Office, and is re-raised so the view answers 500 and Stripe delivers again.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import gateway, services
from .gateway import StripeRefund
from .models import Order, Refund, RefundOrigin, RefundReason, StripeEvent
from .transitions import Actor

logger = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 10_000
BIGINT_MAX = 2**63 - 1


class InvalidEvent(ValueError):
    """A signed Stripe event whose `data.object` is not what its type promises."""


# --- What each event type says about refunds -----------------------------------------------


def _refund_object(obj: dict) -> list[dict]:
    """`refund.*` and `charge.refund.updated` carry one Refund: https://docs.stripe.com/api/refunds/object"""
    _check_refund(obj)
    return [obj]


def _refunds_listed_by_charge(obj: dict) -> list[dict]:
    """`charge.refunded` carries a Charge. Since API version 2022-11-15 its `refunds` list is
    not included unless expanded; when it is missing there is nothing to apply, and the
    `refund.*` events of the same refunds carry the news."""
    if obj.get("object") != "charge":
        raise InvalidEvent(f"data.object is a {obj.get('object')!r}, not a charge")
    listed = obj.get("refunds")
    if listed is None:
        return []
    if not isinstance(listed, dict) or not isinstance(listed.get("data"), list):
        raise InvalidEvent("charge.refunds is not a list object")
    for refund in listed["data"]:
        _check_refund(refund)
    return listed["data"]


def _check_refund(obj) -> None:
    if not isinstance(obj, dict) or obj.get("object") != "refund":
        kind = obj.get("object") if isinstance(obj, dict) else type(obj).__name__
        raise InvalidEvent(f"expected a refund, got a {kind!r}")
    if not isinstance(obj.get("id"), str) or not obj["id"] or len(obj["id"]) > 255:
        raise InvalidEvent("refund without an id")
    if not isinstance(obj.get("status"), str) or not obj["status"]:
        raise InvalidEvent(f"refund {obj['id']} without a status")
    if not isinstance(obj.get("amount"), int) or isinstance(obj.get("amount"), bool):
        raise InvalidEvent(f"refund {obj['id']} without an integer amount")
    if obj.get("metadata") is not None and not isinstance(obj["metadata"], dict):
        raise InvalidEvent(f"refund {obj['id']} has metadata that is not an object")


# Event type → the Stripe Refund objects it carries. Other types are stored and answered 200.
HANDLERS: dict[str, Callable[[dict], list[dict]]] = {
    "refund.created": _refund_object,
    "refund.updated": _refund_object,
    "refund.failed": _refund_object,
    "charge.refund.updated": _refund_object,
    "charge.refunded": _refunds_listed_by_charge,
}


def stripe_refunds_of(event: dict) -> list[dict]:
    """The Refund objects an event carries; raises `InvalidEvent` if its object has the wrong shape."""
    handler = HANDLERS.get(event["type"])
    return handler(event["data"]["object"]) if handler else []


# --- Receiving, storing and (re-)processing ------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    event: StripeEvent
    duplicate: bool


def receive_event(payload: dict) -> Receipt:
    """Store a verified event and apply it, once however often Stripe delivers it.

    Raises `InvalidEvent` (nothing stored) for an object of the wrong shape, and re-raises any
    error met while applying, after the event is stored with that error.
    """
    stripe_refunds_of(payload)  # refuse a malformed object before anything is stored
    event_id = payload["id"]
    # Why one transaction, insert first: the unique event id is the lock. A second delivery
    # of the same event, even one arriving at the same moment on another connection, blocks
    # on this row until we commit and then fails with IntegrityError: "already seen". The
    # event is inserted as processed; if applying fails, the whole transaction rolls back and
    # the event is stored again, on its own, with the error (for the Back Office, and for the
    # next delivery, which applies it). No savepoints on the common path: each is a round trip.
    try:
        with transaction.atomic():
            event = StripeEvent.objects.create(
                stripe_event_id=event_id, type=payload["type"], payload=payload, processed_at=timezone.now()
            )
            refund = _apply(event)
            if refund is not None:
                event.refund = refund
                event.save(update_fields=["refund"])
    except IntegrityError as error:
        event = StripeEvent.objects.filter(stripe_event_id=event_id).first()
        if event is None:
            _store_failed(payload, error)
            raise
        if event.processed_at is not None:
            logger.info("stripe event %s (%s) delivered again: already applied", event_id, event.type)
            return Receipt(event=event, duplicate=True)
        # Stored by an earlier delivery whose applying failed: this delivery applies it.
        _process(event, again=False)
        return Receipt(event=event, duplicate=False)
    except Exception as error:
        _store_failed(payload, error)
        raise
    return Receipt(event=event, duplicate=False)


def _store_failed(payload: dict, error: Exception) -> None:
    logger.error("stripe event %s (%s) could not be applied", payload["id"], payload["type"], exc_info=error)
    StripeEvent.objects.get_or_create(
        stripe_event_id=payload["id"],
        defaults={"type": payload["type"], "payload": payload, "error": _describe(error)},
    )


def process_event(event: StripeEvent) -> None:
    """(Re-)apply one stored event inside one transaction: the Back Office "Reprocess" action
    and `manage.py replay_stripe_events`.

    On success `processed_at` is set and `error` cleared; on an error the changes are rolled
    back, the error is kept on the event, and it is raised again.
    """
    _process(event, again=True)


def _process(event: StripeEvent, *, again: bool) -> None:
    with transaction.atomic():
        # The event's row lock makes a concurrent delivery or replay of it wait for this one.
        locked = StripeEvent.objects.select_for_update().get(pk=event.pk)
        failure = None
        if again or locked.processed_at is None:
            failure = _apply_keeping_outcome(locked)
    event.processed_at, event.error, event.refund_id = locked.processed_at, locked.error, locked.refund_id
    if failure is not None:
        raise failure


def _apply_keeping_outcome(event: StripeEvent) -> Exception | None:
    """Apply `event` in a savepoint and record the outcome on its row; returns the error, if any."""
    try:
        with transaction.atomic():
            refund = _apply(event)
    except Exception as error:  # noqa: BLE001 — any error is kept for the Back Office, then raised
        logger.exception("stripe event %s (%s) could not be applied", event.stripe_event_id, event.type)
        event.error = _describe(error)
        event.save(update_fields=["error"])
        return error
    event.refund = refund
    event.processed_at = timezone.now()
    event.error = ""
    event.save(update_fields=["refund", "processed_at", "error"])
    return None


def _describe(error: Exception) -> str:
    text = f"{error.__class__.__name__}: {error}\n\n" + "".join(traceback.format_exception(error))
    return text[:ERROR_TEXT_LIMIT]


def _apply(event: StripeEvent) -> Refund | None:
    """Apply every refund the event carries; returns the refund to list the event under."""
    payload = event.payload
    if event.type not in HANDLERS:
        logger.info("stripe event %s: type %s is not handled, stored only", event.stripe_event_id, event.type)
        return None
    stripe_refunds = stripe_refunds_of(payload)
    if not stripe_refunds:
        logger.info("stripe event %s (%s) lists no refund", event.stripe_event_id, event.type)
        return None
    created = dt.datetime.fromtimestamp(payload["created"], tz=dt.timezone.utc)
    by = Actor.stripe_event(event.stripe_event_id)
    matched = None
    # The newest Stripe refund last: a charge.refunded event is listed under the refund that caused it.
    for obj in sorted(stripe_refunds, key=lambda obj: (obj.get("created") or 0, obj["id"])):
        refund = apply_stripe_refund(stripe_refund=StripeRefund.from_stripe(obj), event_created=created, by=by)
        matched = refund or matched
    return matched


def apply_stripe_refund(*, stripe_refund: StripeRefund, event_created: dt.datetime, by: Actor) -> Refund | None:
    """Apply what an event created at `event_created` says about one Stripe refund.

    Returns our refund (a Stripe Dashboard refund is recorded as one), or None when the
    refund belongs to no order of ours.
    """
    refund = _locked_refund_for(stripe_refund)
    if refund is None:
        refund = _record_dashboard_refund(stripe_refund, by=by)
        if refund is None:
            return None
    last = refund.stripe_event_created_at
    if last is not None and event_created < last:
        logger.info(
            "%s: refund %s at Stripe is %s as of %s, but an event of %s was applied already; ignored",
            by.label, stripe_refund.id, stripe_refund.status, event_created.isoformat(), last.isoformat(),
        )
        return refund
    if last is not None and event_created == last:
        # Same second as the event applied last: which of the two is newer cannot be told
        # from `created`, so apply what Stripe says now.
        stripe_refund = gateway.retrieve_refund(stripe_refund.id)
    refund.stripe_event_created_at = event_created
    services.record_stripe_refund(refund=refund, stripe_refund=stripe_refund, by=by)
    logger.info("%s: refund %s (ours #%s) is %s", by.label, stripe_refund.id, refund.pk, stripe_refund.status)
    return refund


def _locked_refund_for(stripe_refund: StripeRefund) -> Refund | None:
    """Our refund for a Stripe refund, row-locked: by Stripe id, else by the metadata we sent.

    The refund row is locked first; the services then lock the order and its items (the lock
    order of refunds.services). The webhook can arrive before `submit_refund` has saved the
    Stripe id; `submit_refund` holds this same row lock while it talks to Stripe, so we wait
    for it and then see its id.
    """
    refund = Refund.objects.select_for_update().filter(stripe_refund_id=stripe_refund.id).first()
    if refund is not None:
        return refund
    oms_refund_id = stripe_refund.oms_refund_id
    if oms_refund_id is None or oms_refund_id > BIGINT_MAX:  # metadata anyone can type in the Dashboard
        return None
    refund = Refund.objects.select_for_update().filter(pk=oms_refund_id).first()
    if refund is None:
        logger.warning("Stripe refund %s names our refund #%s, which does not exist", stripe_refund.id, oms_refund_id)
        return None
    key = stripe_refund.metadata.get("oms_idempotency_key")
    if key and key != refund.idempotency_key:
        # Another installation (a test database reset, a staging copy) sharing the Stripe account.
        logger.warning(
            "Stripe refund %s names our refund #%s but another idempotency key; not ours",
            stripe_refund.id, oms_refund_id,
        )
        return None
    if refund.stripe_refund_id and refund.stripe_refund_id != stripe_refund.id:
        logger.error(
            "Stripe refund %s names our refund #%s, which is Stripe refund %s: a second Stripe refund",
            stripe_refund.id, oms_refund_id, refund.stripe_refund_id,
        )
        return None
    return refund


def _record_dashboard_refund(stripe_refund: StripeRefund, *, by: Actor) -> Refund | None:
    """Record a refund made outside this system against the order whose PaymentIntent it names.

    It moves no item, but counts against what may still be refunded (planning.py counts every
    live refund of the order).
    """
    orders = list(Order.objects.filter(stripe_payment_intent_id=stripe_refund.payment_intent)[:2]) if stripe_refund.payment_intent else []
    if len(orders) != 1:
        logger.warning(
            "%s: Stripe refund %s (%s) of PaymentIntent %s matches %s order; not recorded",
            by.label, stripe_refund.id, stripe_refund.status, stripe_refund.payment_intent or "(none)",
            "more than one" if orders else "no",
        )
        return None
    if stripe_refund.amount <= 0:
        logger.warning("%s: Stripe refund %s has no amount; not recorded", by.label, stripe_refund.id)
        return None
    order = orders[0]
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                order=order,
                origin=RefundOrigin.STRIPE_DASHBOARD,
                stripe_refund_id=stripe_refund.id,
                amount=stripe_refund.amount,
                currency=stripe_refund.currency or order.currency,
                status=stripe_refund.status,
                reason=stripe_refund.reason if stripe_refund.reason in RefundReason.values else "",
                note=f"Made outside this system (Stripe Dashboard); recorded from {by.label}.",
                created_by=None,
            )
    except IntegrityError:
        # Another event about the same refund recorded it a moment ago, on another connection.
        return Refund.objects.select_for_update().get(stripe_refund_id=stripe_refund.id)
    logger.info(
        "%s: Stripe refund %s of %s made outside this system recorded for order %s",
        by.label, stripe_refund.id, order.money(stripe_refund.amount), order.reference,
    )
    return refund
