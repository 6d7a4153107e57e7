"""Stripe's word about a refund lands here, and only here (DESIGN.md §3 and §10).

Four paths learn what Stripe thinks of a refund: the API's answer to our create call
(`submission`), a webhook event (`refunds.webhooks`), "Check status with Stripe" and the
reconciliation job (both `sync_refund_from_stripe`). Each builds a `StripeView` — the Stripe
refund as Stripe described it, and as of when — and hands it to `record_stripe_view`, which
finds our refund, applies the ordering rule and maps the status onto the items
(`apply_refund_status`).

The ordering rule: the newest Stripe view of a refund wins. `Refund.stripe_event_created_at`
keeps the moment of the newest view applied (Stripe's `created` has one-second resolution, so
every view is kept in whole seconds):

- an event created before it changes nothing; an event of the same second cannot be ordered
  by its `created`, so the refund is fetched from Stripe and the fetch is applied instead;
- the API's answer and a fetch are views as of the moment they were made. Whatever was
  applied before was received, hence created, before that moment, so they always apply, and
  an event created before them changes nothing.

Matching (DESIGN.md §10): a Stripe refund is ours only when everything agrees — found by our
`stripe_refund_id`, or by metadata `oms_refund_id` *and* `oms_idempotency_key` together, and its
PaymentIntent, currency and amount are our refund's. Metadata is typed by people in the Stripe
Dashboard and proves nothing alone. A Stripe refund that is not ours but names an order's
PaymentIntent is recorded as made outside this system, in its own currency; one that names our
refund or order and disagrees is a `mismatched_refund` case and moves nothing.

Locks (one order for every path, see refunds/services/__init__.py): the refund row, then the
order, then the order's items, each `FOR NO KEY UPDATE`.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_fsm import can_proceed

from .. import gateway, selectors
from ..event_checks import shown
from ..gateway import BIGINT_MAX, StripeRefund
from ..models import LIVE_REFUND_STATUSES, Order, OrderItem, Refund, RefundOrigin, RefundReason, RefundStatus
from . import attention, locked_rows
from .audit import Actor, transition_items

logger = logging.getLogger(__name__)

__all__ = ["BIGINT_MAX", "StripeView", "apply_refund_status", "record_stripe_view", "sync_refund_from_stripe"]


class ViewSource(enum.Enum):
    ANSWER = "the API's answer"
    EVENT = "an event"
    FETCH = "a fetch"
    LISTING = "a listing"  # a page of the refunds list (services.catch_up)


@dataclass(frozen=True)
class StripeView:
    """What Stripe said about one of its refunds, and as of when (whole seconds)."""

    refund: StripeRefund
    at: dt.datetime
    source: ViewSource

    @classmethod
    def of_event(cls, stripe_refund: StripeRefund, *, event_created: dt.datetime) -> StripeView:
        return cls(stripe_refund, event_created, ViewSource.EVENT)

    @classmethod
    def answered(cls, stripe_refund: StripeRefund) -> StripeView:
        return cls(stripe_refund, _this_second(), ViewSource.ANSWER)

    @classmethod
    def fetched(cls, stripe_refund: StripeRefund) -> StripeView:
        return cls(stripe_refund, _this_second(), ViewSource.FETCH)

    @classmethod
    def listed(cls, stripe_refund: StripeRefund, *, requested_at: dt.datetime) -> StripeView:
        """A refund from a page of Stripe's list, as of the second the page was asked for. It
        is applied a while after that (a page holds 100), so it is ordered like an event: an
        event applied meanwhile and created after the request wins."""
        return cls(stripe_refund, requested_at.replace(microsecond=0), ViewSource.LISTING)

    @property
    def is_event(self) -> bool:
        return self.source is ViewSource.EVENT

    @property
    def ordered_by_time(self) -> bool:
        """Applied only if newer than the newest view applied (an answer or a fetch always is)."""
        return self.source in (ViewSource.EVENT, ViewSource.LISTING)


def _this_second() -> dt.datetime:
    return timezone.now().replace(microsecond=0)


def record_stripe_view(
    *, view: StripeView, by: Actor, refund: Refund | None = None, items: list[OrderItem] | None = None
) -> Refund | None:
    """Record what Stripe says about a refund, if it is newer than what we know.

    `refund` is our refund, row-locked by the caller; without it the Stripe refund is matched
    to ours here. `items` are its items, locked by the caller with `latest_refund_id`
    (`locked_rows.refund_with_items`), or None to have them locked here. A Stripe refund is applied to our refund only when everything agrees
    (module doc); one that is not ours but names an order's PaymentIntent is recorded as made
    outside this system. Returns our refund (the outside record included), or None when the
    Stripe refund belongs to no order of ours. Runs inside the caller's transaction.
    """
    given = refund is not None
    if given:
        problem = _disagreement(refund, view.refund)
    else:
        refund, problem = _locked_refund_for(view.refund)
    if problem:
        _report_mismatch(refund, view.refund, problem, by=by)
        if refund is not None and (given or refund.stripe_refund_id == view.refund.id):
            # Our refund, as our own call or our Stripe id found it, yet described otherwise
            # than we asked: it is left as it is, for a person to look at.
            return refund
        # Not ours; money may still have left on an order's PaymentIntent (recorded below).
        refund = None
    if refund is None:
        refund = _record_dashboard_refund(view.refund, by=by)
        if refund is None:
            return None
    last = refund.stripe_event_created_at
    if view.ordered_by_time and last is not None:
        if view.at < last:
            logger.info(
                "%s: refund %s at Stripe is %s as of %s, but a view of %s was applied already; ignored",
                by.label, view.refund.id, view.refund.status, view.at.isoformat(), last.isoformat(),
            )
            return refund
        if view.at == last:
            # Same second as the view applied last: which is newer cannot be told from
            # `created`, so apply what Stripe says now.
            view = StripeView.fetched(gateway.retrieve_refund(view.refund.id))
            if problem := _disagreement(refund, view.refund):
                _report_mismatch(refund, view.refund, problem, by=by)
                return refund
    # A fetch or an answer is newer than anything applied before it (see the module's doc);
    # max() also keeps a clock that lags Stripe's from moving the mark backwards.
    refund.stripe_event_created_at = view.at if last is None else max(view.at, last)
    refund.stripe_refund_id = view.refund.id
    apply_refund_status(
        refund=refund, status=view.refund.status, failure_reason=view.refund.failure_reason, by=by, items=items
    )
    logger.info(
        "%s: refund %s (ours #%s) is %s, from %s", by.label, view.refund.id, refund.pk, view.refund.status,
        view.source.value,
    )
    return refund


def sync_refund_from_stripe(*, refund_id: int, by: Actor) -> Refund:
    """Ask Stripe what became of a refund and record it ("Check status with Stripe", reconciliation).

    A refund Stripe has no id for yet is looked up by its metadata; one Stripe does not know
    is left as it is.
    """
    with transaction.atomic():
        refund = Refund.objects.select_for_update(no_key=True, of=("self",)).select_related("order").get(pk=refund_id)
        if refund.status in (RefundStatus.AWAITING_APPROVAL, RefundStatus.REJECTED):
            return refund  # never sent (dual control): whatever Stripe has is not this refund
        if refund.stripe_refund_id:
            answer = gateway.retrieve_refund(refund.stripe_refund_id)
        else:
            answer = gateway.find_refund(
                payment_intent=refund.order.stripe_payment_intent_id, idempotency_key=refund.idempotency_key
            )
        if answer is not None:
            record_stripe_view(view=StripeView.fetched(answer), refund=refund, by=by)
    return refund


# --- Status → items --------------------------------------------------------------------------

# The fields of a refund that Stripe's word (and the callers before us) may change.
STRIPE_VIEW_FIELDS = [
    "status", "status_changed_at", "failure_reason", "stripe_refund_id", "stripe_event_created_at", "last_error",
    "warning",
]

@functools.cache
def _stripe_view_fields() -> list:
    return [Refund._meta.get_field(name) for name in STRIPE_VIEW_FIELDS]


@functools.cache
def _save_view_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(f"{quote(field.column)} = %s" for field in _stripe_view_fields())
    return f"UPDATE {quote(Refund._meta.db_table)} SET {columns} WHERE {quote(Refund._meta.pk.column)} = %s"


def _save_view(refund: Refund) -> None:
    """`refund.save(update_fields=STRIPE_VIEW_FIELDS)` with the SQL built once: every event
    runs it (no signal listens to Refund saves)."""
    db = locked_rows.default_connection()
    values = [field.get_db_prep_save(getattr(refund, field.attname), db) for field in _stripe_view_fields()]
    locked_rows.write(_save_view_sql(), [*values, refund.pk])


# Which transition a Stripe refund status fires on the items it covers (DESIGN.md §1).
STATUS_TRANSITIONS = {
    RefundStatus.SUCCEEDED: "refund_succeeded",
    RefundStatus.FAILED: "refund_failed",
    RefundStatus.CANCELED: "refund_failed",
    RefundStatus.PENDING: None,
    RefundStatus.REQUIRES_ACTION: None,
}


def apply_refund_status(
    *, refund: Refund, status: str, by: Actor, failure_reason: str = "", items: list[OrderItem] | None = None
) -> list[OrderItem]:
    """Save Stripe's status for `refund` and move its items accordingly; the one place that
    maps a Stripe refund status onto items. Returns the items that moved. `items`: the
    refund's items, already locked with `latest_refund_id` by the caller, or None.

    An item moves only if this refund is its latest one: a late word about an old, failed
    refund must not move an item that a newer refund is handling.
    """
    if status not in STATUS_TRANSITIONS:
        raise ValueError(f"unknown Stripe refund status {status!r}")
    # No savepoint: callers run this inside their own transaction, and an error aborts it whole.
    with transaction.atomic(savepoint=False):
        if refund.origin != RefundOrigin.BACK_OFFICE:
            # A Dashboard refund has no items to lock; its status changes what request_refund may
            # still refund, which it reads under the order's lock.
            Order.objects.select_for_update(no_key=True).filter(pk=refund.order_id).get()
        previous = refund.status
        newly_succeeded = status == RefundStatus.SUCCEEDED and previous != RefundStatus.SUCCEEDED
        if refund.status != status:
            refund.status = status
            refund.status_changed_at = timezone.now()
        failed = status in (RefundStatus.FAILED, RefundStatus.CANCELED)
        refund.failure_reason = (failure_reason or status) if failed else ""

        transition = STATUS_TRANSITIONS[status]
        if refund.origin != RefundOrigin.BACK_OFFICE:
            _save_view(refund)
            attention.refund_status_recorded(refund=refund, previous=previous, items=[])
            return []
        # The items' row locks serialize this with request_refund, which locks every item of
        # the order before it reads the order's refunds.
        if items is None:
            items = list(
                OrderItem.objects.select_for_update(no_key=True, of=("self",))
                .filter(refunds=refund)
                .annotate(latest_refund_id=selectors.latest_refund_of_item())
                .order_by("pk")
            )
        if previous in (RefundStatus.FAILED, RefundStatus.CANCELED) and items:
            # A failed refund's items may have been refunded again by a newer refund that held
            # their locks while we waited for them. The lock query gives each item's latest
            # refund as of its start: PostgreSQL re-reads a row it waited to lock, not the
            # subquery beside it. Read it again, now that the items are ours.
            latest = selectors.latest_refund_ids([item.pk for item in items])
            for item in items:
                item.latest_refund_id = latest.get(item.pk)
        if newly_succeeded:
            _check_superseded_success(refund, items)
        _save_view(refund)
        # Before the items move: a late decline is told by the state they were in; a success of
        # a superseded refund opens its possible_double_refund case there too.
        attention.refund_status_recorded(refund=refund, previous=previous, items=items)
        if transition is None:
            return []
        movable = [
            item for item in items
            if item.latest_refund_id == refund.pk and can_proceed(getattr(item, transition))
        ]
        return transition_items(movable, transition, by=by, refund=refund)


def _check_superseded_success(refund: Refund, items: list[OrderItem]) -> None:
    """Stripe says `refund` succeeded, but a newer refund already covers some of its items
    (the refund failed, its items were refunded again, then Stripe changed its mind): the
    customer may have been refunded twice. Nothing moves; the refund says so, and
    `attention.refund_status_recorded` opens the possible_double_refund case."""
    newer_ids = {item.latest_refund_id for item in items if item.latest_refund_id not in (None, refund.pk)}
    if not newer_ids:
        return
    newer = list(
        Refund.objects.filter(pk__in=newer_ids, status__in=LIVE_REFUND_STATUSES).order_by("pk").values_list("pk", flat=True)
    )
    if not newer:
        return
    covering = ", ".join(f"#{pk}" for pk in newer)
    detail = (
        f"Stripe reports refund #{refund.pk} ({refund.stripe_refund_id or 'no Stripe id'}, "
        f"{refund.amount_display}) succeeded, but its items were refunded again by refund {covering}: "
        "the customer may have been refunded twice. Check both refunds in the Stripe Dashboard."
    )
    _warn(refund, detail)


def _warn(refund: Refund, text: str) -> None:
    """Add a dated line to the refund's warning (saved by the caller, with Stripe's view)."""
    line = f"{timezone.now():%Y-%m-%d %H:%M} UTC: {text}"
    refund.warning = f"{refund.warning}\n{line}" if refund.warning else line


# --- Whose refund is it? ---------------------------------------------------------------------

def _locked_refund_for(stripe_refund: StripeRefund) -> tuple[Refund | None, str]:
    """Our refund for a Stripe refund, row-locked, and what disagrees ("" if nothing).

    By our Stripe id, else by the metadata we sent: `oms_refund_id` and `oms_idempotency_key`
    together. The webhook can arrive before `submit_refund` has saved the Stripe id;
    `submit_refund` holds this same row lock while it talks to Stripe, so we wait for it and
    then see its id.
    """
    locked = Refund.objects.select_for_update(no_key=True, of=("self",)).select_related("order")
    refund = locked.filter(stripe_refund_id=stripe_refund.id).first()
    if refund is not None:
        return refund, _disagreement(refund, stripe_refund)
    oms_refund_id = stripe_refund.oms_refund_id
    if oms_refund_id is None:
        return None, _names_another_order(stripe_refund)
    refund = locked.filter(pk=oms_refund_id).first()
    if refund is None:
        logger.warning("Stripe refund %s names our refund #%s, which does not exist", stripe_refund.id, oms_refund_id)
        return None, ""
    key = stripe_refund.oms_idempotency_key
    if not key:
        # Anyone who can refund in the Stripe Dashboard can type an id into the metadata.
        return refund, "its metadata names this refund without the refund's idempotency key"
    if key != refund.idempotency_key:
        # Another installation (a test database reset, a staging copy) sharing the Stripe account:
        # not ours, so it moves nothing of this refund's; it is recorded by its PaymentIntent
        # like a Dashboard refund, and someone should look (one case per Stripe refund).
        detail = (
            f"Stripe refund {stripe_refund.id} names our refund #{oms_refund_id} but carries another "
            f"idempotency key ({shown(key)}): not ours, perhaps another installation sharing the Stripe account"
        )
        logger.warning("%s", detail)
        attention.open_case(kind="mismatched_refund", refund=refund, detail=detail, key=stripe_refund.id)
        return None, ""
    if refund.stripe_refund_id and refund.stripe_refund_id != stripe_refund.id:
        return refund, (
            f"it carries this refund's metadata and idempotency key, but this refund is Stripe refund "
            f"{refund.stripe_refund_id}: a second Stripe refund"
        )
    if refund.status in (RefundStatus.AWAITING_APPROVAL, RefundStatus.REJECTED):
        # Dual control: such a refund was never sent, so no Stripe refund can be it.
        return refund, f"this refund is {refund.get_status_display()} and was never sent to Stripe"
    return refund, _disagreement(refund, stripe_refund)


def _disagreement(refund: Refund, stripe_refund: StripeRefund) -> str:
    """What in Stripe's description of `refund` is not ours: PaymentIntent, currency, amount."""
    problems = []
    if stripe_refund.payment_intent != refund.order.stripe_payment_intent_id:
        problems.append(
            f"its PaymentIntent {stripe_refund.payment_intent or '(none)'} is not the order's "
            f"{refund.order.stripe_payment_intent_id or '(none)'}"
        )
    if stripe_refund.currency.lower() != refund.currency.lower():
        problems.append(f"its currency {stripe_refund.currency.upper() or '(none)'} is not {refund.currency.upper()}")
    if stripe_refund.amount != refund.amount:
        problems.append(f"its amount {stripe_refund.amount} is not {refund.amount}")
    return "; ".join(problems)


def _names_another_order(stripe_refund: StripeRefund) -> str:
    """A Stripe refund whose metadata names an order of ours that is not the one whose
    PaymentIntent it refunds."""
    reference = stripe_refund.metadata.get("order_reference")
    if not isinstance(reference, str) or not reference or len(reference) > 64:
        return ""
    order = Order.objects.filter(reference=reference).only("pk", "stripe_payment_intent_id").first()
    if order is None or order.stripe_payment_intent_id == stripe_refund.payment_intent:
        return ""
    return (
        f"its metadata names order {reference}, whose PaymentIntent is "
        f"{order.stripe_payment_intent_id or '(none)'}, not {stripe_refund.payment_intent or '(none)'}"
    )


def _report_mismatch(refund: Refund | None, stripe_refund: StripeRefund, problem: str, *, by: Actor) -> None:
    """A Stripe refund that names our refund or order but does not agree: nothing of ours moves."""
    detail = (
        f"{by.label}: Stripe refund {stripe_refund.id} ({stripe_refund.status}, {stripe_refund.amount} "
        f"{stripe_refund.currency.upper() or '?'}) is not applied: {problem}."
    )
    logger.warning("%s", detail)
    if refund is not None:
        _warn(refund, detail)
        refund.save(update_fields=["warning"])
    # One case per Stripe refund, however often Stripe tells us about it.
    attention.open_case(kind="mismatched_refund", refund=refund, detail=detail, key=stripe_refund.id)


def _record_dashboard_refund(stripe_refund: StripeRefund, *, by: Actor) -> Refund | None:
    """Record a refund made outside this system against the order whose PaymentIntent it names.

    It moves no item, but counts against what may still be refunded (planning counts every
    live refund of the order).
    """
    orders = (
        list(Order.objects.filter(stripe_payment_intent_id=stripe_refund.payment_intent)[:2])
        if stripe_refund.payment_intent else []
    )
    if len(orders) != 1:
        logger.warning(
            "%s: Stripe refund %s (%s) of PaymentIntent %s matches %s order; not recorded",
            by.label, stripe_refund.id, stripe_refund.status, stripe_refund.payment_intent or "(none)",
            "more than one" if orders else "no",
        )
        return None
    if not 0 < stripe_refund.amount <= BIGINT_MAX:
        logger.warning("%s: Stripe refund %s has no amount we can record; not recorded", by.label, stripe_refund.id)
        return None
    order = orders[0]
    currency = (stripe_refund.currency or order.currency).lower()
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                order=order,
                origin=RefundOrigin.STRIPE_DASHBOARD,
                stripe_refund_id=stripe_refund.id,
                amount=stripe_refund.amount,
                # Its own currency: never summed into the order's (selectors.live_refunds).
                currency=currency,
                status=stripe_refund.status,
                reason=stripe_refund.reason if stripe_refund.reason in RefundReason.values else "",
                note=f"Made outside this system (Stripe Dashboard); recorded from {by.label}.",
                created_by=None,
            )
    except IntegrityError:
        # Another event about the same refund recorded it a moment ago, on another connection.
        return Refund.objects.select_for_update(no_key=True).get(stripe_refund_id=stripe_refund.id)
    if currency != order.currency.lower():
        attention.open_case(
            kind="mismatched_refund", refund=refund, order=order, key=stripe_refund.id,
            detail=f"Stripe refund {stripe_refund.id} on order {order.reference}'s PaymentIntent is in "
                   f"{currency.upper()}, not the order's {order.currency.upper()}; recorded apart, never summed.",
        )
    logger.info(
        "%s: Stripe refund %s of %s made outside this system recorded for order %s",
        by.label, stripe_refund.id, order.money(stripe_refund.amount), order.reference,
    )
    return refund
