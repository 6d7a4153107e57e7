"""Dual control (DESIGN.md §9): a refund at or above its currency's approval threshold waits for
a second user before anything is sent to Stripe.

- `REFUND_APPROVAL_THRESHOLDS` maps a currency to the amount (minor units) from which a refund
  needs approval; a currency not listed never does.
- Such a refund is created `awaiting_approval`, its items go to `payment refund awaiting
  approval` (`request_approval`), and no task is enqueued: `submit_refund` and
  `reconcile_refunds` only ever send `queued` refunds.
- A user holding `refunds.approve_refund` who did not request it approves it (refund `queued`,
  items `payment refund pending`, then submitted as any refund) or rejects it (refund
  `rejected`, each item back to the state it had before the request). The rule lives here, so
  the admin, the API and any other caller get the same refusal.

Locks: the refund row first, then the order, then the order's items.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from django.db import transaction
from django.utils.translation import gettext
from django.utils import timezone

from .. import selectors
from ..conf import app_settings
from ..exceptions import ApprovalRefused, OverRefund, RefundError
from ..models import ItemState, ItemTransition, Order, OrderItem, Refund, RefundStatus
from ..money import format_money
from .audit import Actor, transition_items
from .outbox import submit_after_commit

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "refunds.approve_refund"


def approval_threshold(currency: str) -> int | None:
    """The amount (minor units) from which a refund in `currency` needs approval; None: never."""
    for code, amount in (app_settings.REFUND_APPROVAL_THRESHOLDS or {}).items():
        if str(code).lower() == currency:
            return int(amount)
    return None


def needs_approval(amount: int, currency: str) -> bool:
    threshold = approval_threshold(currency)
    return threshold is not None and amount >= threshold


def hold_or_queue(*, refund: Refund, items: Iterable[OrderItem], by: Actor) -> bool:
    """Start a refund just created: held for approval, or queued for Stripe. Returns whether it
    is queued: the caller then enqueues it after commit (`outbox.submit_after_commit`).

    The caller created `refund` with status `awaiting_approval` or `queued` and holds the
    items' row locks.
    """
    if refund.status == RefundStatus.AWAITING_APPROVAL:
        transition_items(items, "request_approval", by=by, refund=refund)
        logger.info("refund %s awaits approval: %s", refund.pk, refund.amount_display)
        return False
    transition_items(items, "start_refund", by=by, refund=refund)
    return True


def approve_refund(*, refund: Refund | int, user, note: str = "") -> Refund:
    """A second user approves a refund awaiting approval: it is queued and sent to Stripe."""
    actor = _decider(user)
    with transaction.atomic():
        refund, order, items = _lock_for_decision(refund, user, verb="approve")
        _check_still_refundable(refund, order)
        refund.status = RefundStatus.QUEUED
        refund.status_changed_at = refund.decided_at = timezone.now()
        refund.approved_by = actor.user
        refund.decision_note = note
        refund.save(update_fields=["status", "status_changed_at", "decided_at", "approved_by", "decision_note"])
        transition_items(items, "approve_refund", by=actor, refund=refund)
        # The outbox: the refund row commits first; a broker that is down leaves it to reconciliation.
        submit_after_commit([refund])
    logger.info("refund %s approved by %s: %s", refund.pk, actor.label, refund.amount_display)
    return refund


def reject_refund(*, refund: Refund | int, user, note: str) -> Refund:
    """A second user rejects a refund awaiting approval: nothing goes to Stripe, and each item
    returns to the state it had before the request (payment captured or payment refund failed)."""
    note = (note or "").strip()
    if not note:
        raise RefundError(gettext("Say why the refund is rejected: a note is required."))
    actor = _decider(user)
    with transaction.atomic():
        refund, _order, items = _lock_for_decision(refund, user, verb="reject")
        refund.status = RefundStatus.REJECTED
        refund.status_changed_at = refund.decided_at = timezone.now()
        refund.rejected_by = actor.user
        refund.decision_note = note
        refund.save(update_fields=["status", "status_changed_at", "decided_at", "rejected_by", "decision_note"])
        # Where each item was before: the audit row its request_approval left.
        before = dict(
            ItemTransition.objects.filter(refund=refund, transition="request_approval")
            .values_list("item_id", "from_state")
        )
        groups: dict[str, list[OrderItem]] = defaultdict(list)
        for item in items:
            groups[before.get(item.pk, ItemState.PAYMENT_CAPTURED)].append(item)
        for back_to, group in groups.items():
            transition_items(group, "reject_refund", by=actor, refund=refund, arguments={"back_to": back_to})
    logger.info("refund %s rejected by %s: %s", refund.pk, actor.label, note)
    return refund


def _decider(user) -> Actor:
    actor = Actor.of_user(user)
    if not user.has_perm(APPROVE_PERMISSION):
        raise ApprovalRefused(gettext("You may not approve or reject refunds (permission refunds.approve_refund)."))
    return actor


def _lock_for_decision(refund: Refund | int, user, *, verb: str) -> tuple[Refund, Order, list[OrderItem]]:
    refund_id = refund if isinstance(refund, int) else refund.pk
    try:
        locked = Refund.objects.select_for_update().get(pk=refund_id)
    except Refund.DoesNotExist:
        raise RefundError(f"Refund #{refund_id} does not exist.") from None
    if locked.status != RefundStatus.AWAITING_APPROVAL:
        decided = ""
        if locked.approved_by_id or locked.rejected_by_id:
            who = locked.approved_by if locked.approved_by_id else locked.rejected_by
            decided = " (%s)" % (
                gettext("approved by %(user)s") if locked.approved_by_id else gettext("rejected by %(user)s")
            ) % {"user": who.get_username()}
        raise RefundError(
            gettext("Refund #%(id)s is not awaiting approval: its status is “%(status)s”%(decided)s.")
            % {"id": locked.pk, "status": locked.get_status_display(), "decided": decided}
        )
    if locked.created_by_id is not None and locked.created_by_id == user.pk:
        raise ApprovalRefused(
            f"You requested refund #{locked.pk} yourself; another user must {verb} it (dual control)."
        )
    order = Order.objects.select_for_update().get(pk=locked.order_id)
    locked.order = order
    items = list(OrderItem.objects.select_for_update().filter(refunds=locked).order_by("pk"))
    return locked, order, items


def _check_still_refundable(refund: Refund, order: Order) -> None:
    """A refund awaiting approval already counts against the order, but a refund made in the
    Stripe Dashboard meanwhile may have taken what it was counting on."""
    all_items = list(OrderItem.objects.filter(order=order))
    from .planning import captured_amount  # planning imports this module's thresholds

    captured = captured_amount(order, all_items)
    committed = selectors.live_refunds([order.pk]).committed(order)
    if committed > captured:
        others = committed - refund.amount
        raise OverRefund(
            f"Refund #{refund.pk} of {format_money(refund.amount, order.currency)} can no longer be approved: "
            f"{format_money(max(captured - others, 0), order.currency)} of {format_money(captured, order.currency)} "
            f"captured remains (other refunds, Stripe Dashboard ones included, took the rest). Reject it instead."
        )
