"""Refund requests from the Back Office: previewed, requested, and confirmed by hand.

Locks are always taken in the same order: refund, then order, then the order's items, each
`FOR NO KEY UPDATE` (see refunds/services/__init__.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.utils.translation import gettext

from .. import selectors
from ..exceptions import NothingToRefund, OrderNotRefundable, RefundError
from ..models import ItemState, Order, OrderItem, Refund, RefundReason, RefundStatus
from .approvals import hold_or_queue
from .audit import Actor, transition_items
from .outbox import submit_after_commit
from .planning import RefundPlan, plan_refunds

logger = logging.getLogger(__name__)


def request_refund(
    *, items: Iterable[OrderItem | int], user, reason: str = "", note: str = ""
) -> list[Refund]:
    """Refund the given items: one `Refund` per order, queued for Stripe once committed, or held
    for a second user's approval at or above its currency's threshold (`services.approvals`).

    Everything is checked with the orders and their items locked; a request that cannot be
    honoured in full raises a `RefundError` and writes nothing.
    """
    item_ids = {item if isinstance(item, int) else item.pk for item in items}
    if not item_ids:
        raise NothingToRefund(gettext("Select at least one item to refund."))
    if reason and reason not in RefundReason.values:
        raise RefundError(f"Unknown refund reason {reason!r}; choose one of {', '.join(RefundReason.values)}.")
    actor = Actor.of_user(user)

    with transaction.atomic():
        order_ids = OrderItem.objects.filter(pk__in=item_ids).values("order_id")
        # Every refund request for an order queues on the order's row lock, so two Back Office
        # users refunding the same item cannot both see it refundable.
        orders = list(Order.objects.select_for_update(no_key=True).filter(pk__in=order_ids).order_by("pk"))
        all_items = list(OrderItem.objects.select_for_update(no_key=True).filter(order__in=orders).order_by("pk"))
        missing = item_ids - {item.pk for item in all_items}
        if missing:
            raise RefundError(f"Item(s) {', '.join(map(str, sorted(missing)))} do not exist.")
        orders_by_id = {order.pk: order for order in orders}
        for item in all_items:
            item.order = orders_by_id[item.order_id]

        live = selectors.live_refunds([order.pk for order in orders])
        plans = plan_refunds(orders=orders, items=all_items, selected_ids=item_ids, live=live)
        problems = [problem for plan in plans for problem in plan.problems]
        problems += [
            gettext("%(item)s cannot be refunded: %(reason)s.") % {"item": blocked.item, "reason": blocked.reason}
            for plan in plans for blocked in plan.blocked
        ]
        if problems:
            raise OrderNotRefundable(" ".join(problems))

        refunds, queued = [], []
        for plan in plans:
            refund = Refund.objects.create(
                order=plan.order,
                amount=plan.amount,
                shipping_amount=plan.shipping_amount,
                currency=plan.order.currency,
                status=RefundStatus.AWAITING_APPROVAL if plan.needs_approval else RefundStatus.QUEUED,
                reason=reason,
                note=note,
                created_by=actor.user,
            )
            Refund.items.through.objects.bulk_create(
                [Refund.items.through(refund=refund, orderitem=item) for item in plan.items], batch_size=500
            )
            if hold_or_queue(refund=refund, items=plan.items, by=actor):
                queued.append(refund)
            refunds.append(refund)
            logger.info(
                "refund %s %s: %d item(s) of order %s, %s",
                refund.pk, refund.status, len(plan.items), plan.order.reference, plan.money(plan.amount),
            )
        # The outbox: the refund rows commit first, then their tasks are enqueued; if the
        # broker is down, reconcile_refunds sends the still-queued refunds later.
        submit_after_commit(queued)
    return refunds


def preview_refunds(items) -> list[RefundPlan]:
    """The plans for a selection, without locks: what a confirmation page shows."""
    selected_ids = {item.pk for item in items}
    orders, all_items = selectors.orders_with_items_of(selected_ids)
    live = selectors.live_refunds([order.pk for order in orders])
    return plan_refunds(orders=orders, items=all_items, selected_ids=selected_ids, live=live)


def confirm_refund_now(*, items: Iterable[OrderItem | int], user) -> list[OrderItem]:
    """A Back Office user confirms succeeded refunds before the settlement period ends."""
    item_ids = {item if isinstance(item, int) else item.pk for item in items}
    if not item_ids:
        raise NothingToRefund(gettext("Select at least one item to confirm."))
    actor = Actor.of_user(user)
    with transaction.atomic():
        # The items only (`of`): locking their orders too, after the items, would turn the lock
        # order around. The audit rows' foreign keys need FOR KEY SHARE on the refunds at
        # commit, which a webhook's FOR NO KEY UPDATE on the same refund does not block.
        locked = list(
            OrderItem.objects.select_for_update(no_key=True, of=("self",)).filter(pk__in=item_ids)
            .select_related("order").order_by("pk")
        )
        wrong = [item for item in locked if item.state != ItemState.PAYMENT_REFUND_SUCCEEDED]
        if wrong:
            raise OrderNotRefundable(" ".join(
                gettext("%(item)s cannot be confirmed: its state is “%(state)s”, not “%(expected)s”.")
                % {"item": item, "state": item.state_label, "expected": ItemState.PAYMENT_REFUND_SUCCEEDED.label}
                for item in wrong
            ))
        latest = selectors.latest_refund_ids([item.pk for item in locked])
        by_refund: dict[int | None, list[OrderItem]] = {}
        for item in locked:
            by_refund.setdefault(latest.get(item.pk), []).append(item)
        refunds = Refund.objects.in_bulk([pk for pk in by_refund if pk is not None])
        for refund_id, group in by_refund.items():
            transition_items(group, "confirm_refund", by=actor, refund=refunds.get(refund_id))
    return locked
