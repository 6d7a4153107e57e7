"""Needs attention (DESIGN.md §9): cases a person must look at, opened where they happen.

- `stripe_view` opens `refund_failed`, `late_decline`, `possible_double_refund` and
  `mismatched_refund` as it records Stripe's word; the webhook intake opens `event_error`;
  reconciliation opens `stuck_pending` and `awaiting_approval` (`open_stale_cases`).
- Each case happens once: its `key` (the kind and what it is about: our refund, a Stripe
  refund, a Stripe event) is unique in the table, so a duplicate Stripe delivery, a second
  reconciliation run or two workers at once hit the constraint instead of opening a second
  case — no check-then-insert.
- `open_case` runs inside the caller's transaction: a case found while applying an event that
  then rolls back is rolled back with it (and found again at the next delivery). Its alert is
  enqueued after commit (`tasks.send_attention_alert`, `services.alerts`); a lost task is sent
  by the next reconciliation run.
"""

from __future__ import annotations

import hashlib
import logging

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .. import selectors
from ..exceptions import CaseAlreadyResolved, RefundError
from ..models import (
    LIVE_REFUND_STATUSES,
    AttentionCase,
    AttentionKind,
    ItemState,
    Order,
    OrderItem,
    Refund,
    RefundStatus,
    StripeEvent,
)

logger = logging.getLogger(__name__)

# What each kind means, in the words the Back Office page and the alerts use.
KIND_HELP = {
    AttentionKind.REFUND_FAILED: _("Stripe failed or canceled a refund: the customer did not get the money."),
    AttentionKind.LATE_DECLINE: _(
        "A refund failed after its items were payment refunded: the books say refunded, the customer has nothing."
    ),
    AttentionKind.POSSIBLE_DOUBLE_REFUND: _(
        "Stripe reports success for a refund whose items a newer refund already covers: the customer may be "
        "refunded twice."
    ),
    AttentionKind.STUCK_PENDING: _("A refund has been pending at Stripe for longer than it should take."),
    AttentionKind.EVENT_ERROR: _("A Stripe event was stored but could not be applied."),
    AttentionKind.MISMATCHED_REFUND: _(
        "A Stripe refund names one of our refunds or orders but does not match it; it was not applied."
    ),
    AttentionKind.AWAITING_APPROVAL: _("A refund has been waiting for a second user's approval for more than a day."),
}

FAILED_STATUSES = (RefundStatus.FAILED, RefundStatus.CANCELED)
KEY_LIMIT = 255


def open_case(
    *,
    kind: str,
    refund: Refund | None = None,
    order: Order | None = None,
    detail: str = "",
    event: StripeEvent | None = None,
    key: str = "",
) -> AttentionCase | None:
    """Open a case, once: returns it, or None when the same case exists already.

    What makes two calls the same case: the kind and `key` if given (say, a Stripe refund's id),
    else the kind and our refund, else the Stripe event, else the order. Runs inside the
    caller's transaction; the alert is sent after it commits.
    """
    if kind not in AttentionKind.values:
        raise ValueError(f"unknown attention kind {kind!r}")
    if order is None and refund is not None:
        order_id = refund.order_id
    else:
        order_id = order.pk if order is not None else None
    case_key = _case_key(kind, key=key, refund=refund, event=event, order_id=order_id)
    try:
        # A savepoint: a duplicate must not abort the caller's transaction (PostgreSQL would).
        with transaction.atomic():
            case = AttentionCase.objects.create(
                kind=kind, key=case_key, refund=refund, order_id=order_id, event=event, detail=detail,
            )
    except IntegrityError:
        logger.info("attention case %s: already recorded (%s)", kind, case_key)
        return None
    # Money that may have left twice is an error in the log too; every other case a warning.
    level = logging.ERROR if kind == AttentionKind.POSSIBLE_DOUBLE_REFUND else logging.WARNING
    logger.log(level, "attention case %s: #%s opened: %s", kind, case.pk, detail)
    from ..tasks import send_attention_alert  # tasks import services

    def send_alert():
        send_attention_alert.delay(case.pk)

    # robust: a broker that is down must not turn the caller's committed work into an error;
    # the alert stays unsent and reconcile_refunds sends it. (A named function: Django's robust
    # on_commit logs a failure by the callback's __qualname__, which a partial lacks.)
    transaction.on_commit(send_alert, robust=True)
    return case


def _case_key(kind: str, *, key: str, refund: Refund | None, event: StripeEvent | None, order_id: int | None) -> str:
    if key:
        about = f"key:{key}"
    elif refund is not None:
        about = f"refund:{refund.pk}"
    elif event is not None:
        about = f"event:{event.stripe_event_id}"
    elif order_id is not None:
        about = f"order:{order_id}"
    else:
        raise ValueError("a case is about a refund, an order, a Stripe event or a key")
    full = f"{kind}:{about}"
    if len(full) > KEY_LIMIT:
        full = f"{kind}:sha256:{hashlib.sha256(about.encode()).hexdigest()}"
    return full


def resolve_case(*, case: AttentionCase | int, user, note: str) -> AttentionCase:
    """A Back Office user closes a case, saying what was done; who and why are kept on the case."""
    note = (note or "").strip()
    if not note:
        raise RefundError("Say what was done about it: a note is required to resolve a case.")
    case_id = case if isinstance(case, int) else case.pk
    with transaction.atomic():
        locked = AttentionCase.objects.select_for_update().get(pk=case_id)
        if locked.resolved_at is not None:
            who = locked.resolved_by.get_username() if locked.resolved_by_id else "the system"
            raise CaseAlreadyResolved(
                f"{locked} was resolved already, by {who} on {locked.resolved_at:%Y-%m-%d %H:%M} UTC."
            )
        locked.resolved_at = timezone.now()
        locked.resolved_by = user
        locked.resolution_note = note
        locked.save(update_fields=["resolved_at", "resolved_by", "resolution_note"])
    logger.info("needs attention: %s resolved by %s: %s", locked, user.get_username(), note)
    return locked


# --- Where cases are found ---------------------------------------------------------------------

def refund_status_recorded(*, refund: Refund, previous: str, items: list[OrderItem]) -> None:
    """Called by `stripe_view.apply_refund_status` with Stripe's new status saved and the refund's
    items locked, before they move (`items` carry `latest_refund_id`)."""
    status = refund.status
    if status in FAILED_STATUSES and previous not in FAILED_STATUSES:
        settled = [item for item in items if item.latest_refund_id == refund.pk and item.state == ItemState.PAYMENT_REFUNDED]
        reason = refund.failure_reason or status
        if settled:
            open_case(
                kind=AttentionKind.LATE_DECLINE, refund=refund,
                detail=(
                    f"Refund {_name(refund)} of {refund.amount_display} for order {_reference(refund)} was "
                    f"{status} by Stripe ({reason}) after {_count(settled)} had become payment refunded: "
                    f"{_skus(settled)}. The customer has not been refunded; refund again or contact the customer."
                ),
            )
        else:
            open_case(
                kind=AttentionKind.REFUND_FAILED, refund=refund,
                detail=(
                    f"Refund {_name(refund)} of {refund.amount_display} for order {_reference(refund)} was "
                    f"{status} by Stripe ({reason}). Its items are payment refund failed and can be refunded again."
                ),
            )
    elif status == RefundStatus.SUCCEEDED and previous != RefundStatus.SUCCEEDED:
        covered = [item for item in items if item.latest_refund_id not in (None, refund.pk)]
        if not covered:
            return  # the common case; not even a query to build (the webhook's hot path)
        newer = Refund.objects.filter(
            pk__in={item.latest_refund_id for item in covered}, status__in=LIVE_REFUND_STATUSES
        ).order_by("pk")
        newer = list(newer)
        if newer:
            by_newer = {r.pk for r in newer}
            doubled = [item for item in covered if item.latest_refund_id in by_newer]
            open_case(
                kind=AttentionKind.POSSIBLE_DOUBLE_REFUND, refund=refund,
                detail=(
                    f"Stripe reports refund {_name(refund)} of {refund.amount_display} for order "
                    f"{_reference(refund)} succeeded, but {_count(doubled)} ({_skus(doubled)}) are covered by "
                    f"newer refund(s) {', '.join(_name(r) for r in newer)} "
                    f"({', '.join(r.get_status_display() for r in newer)}). Check both in the Stripe Dashboard."
                ),
            )


def stripe_refund_mismatched(*, stripe_refund_id: str, refund: Refund, why: str) -> None:
    """A Stripe refund that names our refund (by its metadata) but is not it."""
    open_case(
        kind=AttentionKind.MISMATCHED_REFUND, refund=refund, key=stripe_refund_id,
        detail=f"Stripe refund {stripe_refund_id} names our refund #{refund.pk} of order {_reference(refund)}, "
               f"but {why}. It was not applied to our refund or its items.",
    )


def event_failed(*, event: StripeEvent, error: str) -> AttentionCase | None:
    """A stored Stripe event that could not be applied (webhook intake, reprocessing)."""
    refund = event.refund
    if refund is None:
        # The refund the event carries, if we know it (its applying was rolled back).
        obj = (event.payload.get("data") or {}).get("object") if isinstance(event.payload, dict) else None
        stripe_id = obj.get("id") if isinstance(obj, dict) and obj.get("object") == "refund" else None
        if isinstance(stripe_id, str):
            refund = Refund.objects.filter(stripe_refund_id=stripe_id).first()
    return open_case(
        kind=AttentionKind.EVENT_ERROR, event=event, refund=refund, key=event.stripe_event_id,
        detail=f"Stripe event {event.stripe_event_id} ({event.type}) could not be applied: {error}. "
               f"Stripe delivers it again for up to three days; \"Reprocess\" on the Stripe events page "
               f"applies it once the cause is fixed.",
    )


def event_applied(*, event: StripeEvent) -> None:
    """An event that failed before was applied (a later delivery, "Reprocess"): its open
    event_error case resolves itself, saying so."""
    AttentionCase.objects.filter(kind=AttentionKind.EVENT_ERROR, event=event, resolved_at__isnull=True).update(
        resolved_at=timezone.now(),
        resolution_note="Resolved by itself: the event was applied at a later delivery or by Reprocess.",
    )


def open_stale_cases(*, limit: int) -> int:
    """Reconciliation's part: refunds stuck pending at Stripe, and refunds left awaiting approval.
    Returns how many cases were opened; a second run at the same time opens none twice."""
    opened = 0
    for refund in selectors.stuck_pending_refunds()[:limit]:
        days = (timezone.now() - refund.status_changed_at).days
        case = open_case(
            kind=AttentionKind.STUCK_PENDING, refund=refund,
            detail=(
                f"Refund {_name(refund)} of {refund.amount_display} for order {refund.order.reference} has been "
                f"{refund.get_status_display()} since {refund.status_changed_at:%Y-%m-%d %H:%M} UTC ({days} days). "
                f"Refunds usually settle within 5–10 business days; check it in the Stripe Dashboard."
            ),
        )
        opened += case is not None
    for refund in selectors.long_awaiting_approval()[:limit]:
        requester = refund.created_by.get_username() if refund.created_by_id else "someone"
        case = open_case(
            kind=AttentionKind.AWAITING_APPROVAL, refund=refund,
            detail=(
                f"Refund #{refund.pk} of {refund.amount_display} for order {refund.order.reference}, requested by "
                f"{requester} on {refund.created_at:%Y-%m-%d %H:%M} UTC, is still awaiting approval. "
                f"A user with the approve permission other than {requester} approves or rejects it."
            ),
        )
        opened += case is not None
    return opened


def _name(refund: Refund) -> str:
    return f"{refund.stripe_refund_id} (#{refund.pk})" if refund.stripe_refund_id else f"#{refund.pk}"


def _reference(refund: Refund) -> str:
    return refund.order.reference


def _count(items: list[OrderItem]) -> str:
    return f"{len(items)} item{'' if len(items) == 1 else 's'}"


def _skus(items: list[OrderItem], shown: int = 10) -> str:
    skus = ", ".join(item.sku for item in items[:shown])
    return skus + (f" and {len(items) - shown} more" if len(items) > shown else "")
