"""Webhook intake: shape checks, the dispatch table, store then process.

Stripe delivers every event at least once, in no particular order, and retries for three days
until it gets a 2xx (https://docs.stripe.com/webhooks#event-delivery-behaviors). So:

- an event is stored under its unique id before it is applied; a second delivery of an applied
  event hits that unique id and changes nothing;
- each Stripe refund the event carries becomes a `StripeView` as of the event's `created`, and
  is recorded by `services.record_stripe_view`, which matches it to our refund and applies the
  ordering rule (the newest Stripe view wins);
- an error while applying rolls the changes back, keeps the error on the stored event for the
  Back Office, and is re-raised so the view answers 500 and Stripe delivers again;
- content that breaks the input limits (`refunds.event_checks`) is no error of ours and no
  retry would mend it: the event is stored, unprocessed, with the reason, an `event_error`
  case is opened, and the view answers 200.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import event_checks, services
from .event_checks import InvalidEvent
from .gateway import StripeRefund
from .models import Refund, StripeEvent
from .services import Actor, StripeView, attention, locked_rows

logger = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 10_000


# --- What each event type says about refunds -----------------------------------------------


def _refund_object(obj: dict) -> list[dict]:
    """`refund.*` and `charge.refund.updated` carry one Refund: https://docs.stripe.com/api/refunds/object"""
    event_checks.check_refund(obj)
    return [obj]


def _refunds_listed_by_charge(obj: dict) -> list[dict]:
    """`charge.refunded` carries a Charge. Since API version 2022-11-15 its `refunds` list is
    not included unless expanded; when it is missing there is nothing to apply, and the
    `refund.*` events of the same refunds carry the news."""
    if obj.get("object") != "charge":
        raise InvalidEvent(f"data.object is a {event_checks.shown(obj.get('object'))}, not a charge")
    listed = obj.get("refunds")
    if listed is None:
        return []
    refunds = event_checks.check_refund_list(listed)
    for refund in refunds:
        event_checks.check_refund(refund)
    return refunds


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
    unprocessable: str = ""  # why the event's content cannot be applied, if it cannot


def receive_event(payload: dict, body: bytes | None = None) -> Receipt:
    """Store a verified event and apply it, once however often Stripe delivers it.

    `body` is the verified raw body `payload` was parsed from; stored as it came when given (no
    second serialization). An event whose content breaks the input limits is stored unprocessed
    with the reason (`Receipt.unprocessable`); any other error met while applying is re-raised,
    after the event is stored with that error.
    """
    try:
        event_checks.check_event_time(payload)
        stripe_refunds = stripe_refunds_of(payload)  # judged before anything is stored or applied
    except InvalidEvent as error:
        return _store_unprocessable(payload, error)
    event_id = payload["id"]
    # Why one transaction, insert first: the unique event id is the lock. A second delivery
    # of the same event, even one arriving at the same moment on another connection, blocks
    # on this row until we commit and then fails with IntegrityError: "already seen". The
    # event is inserted as processed; if applying fails, the whole transaction rolls back and
    # the event is stored again, on its own, with the error (for the Back Office, and for the
    # next delivery, which applies it). No savepoints on the common path: each is a round trip.
    #
    # The common case, an event about one refund of ours with items, then reads and locks that
    # refund and its items in one query (services.locked_rows); the event row is linked to the
    # refund known by the Stripe id in the same INSERT. On PostgreSQL the writes that follow
    # (refund, items, audit rows) go out as one statement before the COMMIT
    # (locked_rows.batched_transaction): four round trips where the bare writes take seven.
    single = stripe_refunds[0]["id"] if len(stripe_refunds) == 1 else None
    try:
        with locked_rows.batched_transaction():
            event, locked = _insert_event_and_lock(payload, body, stripe_refund_id=single)
            if locked is not None:
                event.refund = locked.refund
                _apply_to_locked(event, stripe_refunds[0], locked)
            else:
                refund = _apply(event)
                if refund is not None and refund.pk != event.refund_id:
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


def _insert_event_and_lock(
    payload: dict, body: bytes | None, *, stripe_refund_id: str | None
) -> tuple[StripeEvent, locked_rows.LockedRefund | None]:
    """Insert the event's row, as processed and linked to our refund known by `stripe_refund_id`
    if there is one, then lock that refund with its items (`locked_rows.insert_and_lock`). The
    raw body is stored as it came when given."""
    now = timezone.now()
    event = StripeEvent(
        stripe_event_id=payload["id"], type=payload["type"], payload=payload, received_at=now, processed_at=now,
    )
    text = body.decode() if body is not None else json.dumps(payload)
    (event.pk, event.refund_id), locked = locked_rows.insert_and_lock(
        _insert_event_sql(), [event.stripe_event_id, event.type, text, now, now, stripe_refund_id], stripe_refund_id,
        find_sql=_find_event_sql(), find_params=[event.stripe_event_id],
    )
    event._state.adding = False
    event._state.db = connection.alias
    return event, locked


@functools.cache
def _find_event_sql() -> str:
    return f"SELECT id, refund_id FROM {connection.ops.quote_name(StripeEvent._meta.db_table)} WHERE stripe_event_id = %s"


@functools.cache
def _insert_event_sql() -> str:
    quote = connection.ops.quote_name
    cast = "::jsonb" if connection.vendor == "postgresql" else ""
    return (
        f"INSERT INTO {quote(StripeEvent._meta.db_table)} "
        "(stripe_event_id, type, payload, received_at, processed_at, error, refund_id) "
        f"VALUES (%s, %s, %s{cast}, %s, %s, '', "
        f"(SELECT id FROM {quote(Refund._meta.db_table)} WHERE stripe_refund_id = %s)) RETURNING id, refund_id"
    )


def _apply_to_locked(event: StripeEvent, stripe_refund: dict, locked: locked_rows.LockedRefund) -> None:
    """`_apply` for one Stripe refund whose refund and items the caller has locked."""
    created = dt.datetime.fromtimestamp(event.payload["created"], tz=dt.timezone.utc)
    view = StripeView.of_event(StripeRefund.from_stripe(stripe_refund), event_created=created)
    services.record_stripe_view(
        view=view, by=Actor.stripe_event(event.stripe_event_id), refund=locked.refund, items=locked.items
    )


def _store_unprocessable(payload: dict, error: InvalidEvent) -> Receipt:
    """Keep the event with the reason it cannot be applied; answered 200, as no redelivery can
    mend it. A person is told once, not at every delivery."""
    reason = f"Unprocessable: {error}"
    event, created = StripeEvent.objects.get_or_create(
        stripe_event_id=payload["id"],
        defaults={"type": payload["type"], "payload": payload, "error": reason[:ERROR_TEXT_LIMIT]},
    )
    if not created:
        logger.info("stripe event %s (%s) delivered again: already stored", payload["id"], payload["type"])
        return Receipt(event=event, duplicate=True, unprocessable=event.error)
    logger.warning("stripe event %s (%s) stored unprocessed: %s", payload["id"], payload["type"], error)
    attention.open_case(
        kind="event_error", event=event, key=event.stripe_event_id,
        detail=f"Stripe event {payload['id']} ({payload['type']}): {reason}",
    )
    return Receipt(event=event, duplicate=False, unprocessable=reason)


def _store_failed(payload: dict, error: Exception) -> None:
    logger.error("stripe event %s (%s) could not be applied", payload["id"], payload["type"], exc_info=error)
    event, _ = StripeEvent.objects.get_or_create(
        stripe_event_id=payload["id"],
        defaults={"type": payload["type"], "payload": payload, "error": _describe(error)},
    )
    _needs_attention(event, error)


def _needs_attention(event: StripeEvent, error: Exception) -> None:
    """An `event_error` case, once per event however often it fails. Never raises: the error
    being reported (the database down, say) may keep the case from being written too."""
    try:
        services.attention.event_failed(event=event, error=f"{error.__class__.__name__}: {error}")
    except Exception:  # noqa: BLE001
        logger.exception("stripe event %s: the event_error case could not be opened", event.stripe_event_id)


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
        _needs_attention(event, error)
        return error
    event.refund = refund
    event.processed_at = timezone.now()
    event.error = ""
    event.save(update_fields=["refund", "processed_at", "error"])
    services.attention.event_applied(event=event)
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
        view = StripeView.of_event(StripeRefund.from_stripe(obj), event_created=created)
        refund = services.record_stripe_view(view=view, by=by)
        matched = refund or matched
    return matched
