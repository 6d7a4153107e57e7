"""A refund of one order, as an API client asks for it (DESIGN.md §8): given item ids, every
refundable item, or an amount. Previewed by the planning rules of the Back Office's confirmation
page and requested through the same services (`request_refund`, `request_amount_refund`), so
the API, the admin and the preview always agree.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .. import selectors
from ..exceptions import NothingToRefund, RefundError, UnknownItem
from ..models import Order, OrderItem, Refund
from .amount_refunds import request_amount_refund
from .approvals import needs_approval
from .orders import MAX_AMOUNT
from .planning import BlockedItem, amount_refund_problems, captured_amount, plan_refunds, still_refundable
from .refund_requests import request_refund


@dataclass
class RefundPreview:
    """What a refund request would do, written nowhere."""

    order: Order
    amount: int
    available: int  # what may still be refunded before this refund
    items: list[OrderItem] = field(default_factory=list)
    blocked: list[BlockedItem] = field(default_factory=list)
    shipping_amount: int = 0
    problems: list[str] = field(default_factory=list)
    needs_approval: bool = False

    @property
    def can_refund(self) -> bool:
        return self.amount > 0 and not self.problems and not self.blocked


def preview_order_refund(*, order: Order, items: list[int] | None = None, amount: int | None = None) -> RefundPreview:
    """What `refund_order` with the same arguments would do now. Raises `RefundError` for a
    request that makes no sense (items and an amount, unknown or foreign items); a request that
    makes sense but cannot be honoured comes back with its `blocked` items and `problems`."""
    _one_of(items, amount)
    order_items = list(OrderItem.objects.filter(order=order).order_by("pk"))
    for item in order_items:
        item.order = order
    live = selectors.live_refunds([order.pk])
    captured = captured_amount(order, order_items)
    available = still_refundable(captured=captured, committed=live.committed(order))
    if amount is not None:
        _check_amount(amount)
        return RefundPreview(
            order=order, amount=amount, available=available, needs_approval=needs_approval(amount, order.currency),
            problems=amount_refund_problems(order, amount=amount, captured=captured, committed=live.committed(order)),
        )
    selected = _item_ids(order, order_items, items)
    [plan] = plan_refunds(orders=[order], items=order_items, selected_ids=selected, live=live) or [None]
    if plan is None:  # an order without items and none asked for
        return RefundPreview(order=order, amount=0, available=available, problems=["The order has no items."])
    if items is None:  # every refundable item: the others are not part of the request
        plan.blocked = []
        if not plan.items and not plan.problems:
            plan.problems = [f"Order {order.reference} has no item that can be refunded now."]
    return RefundPreview(
        order=order, amount=plan.amount if plan.items else 0, available=available, items=plan.items,
        blocked=plan.blocked, shipping_amount=plan.shipping_amount, problems=plan.problems,
        needs_approval=bool(plan.items) and plan.needs_approval,
    )


def refund_order(
    *, order: Order, user, items: list[int] | None = None, amount: int | None = None, reason: str = "", note: str = ""
) -> Refund:
    """Refund `items` of `order` (ids; None: every refundable item) or an `amount` tied to no item.

    Everything is checked again under the order's lock by `request_refund` or
    `request_amount_refund`; a `RefundError` means nothing was written.
    """
    _one_of(items, amount)
    if amount is not None:
        _check_amount(amount)
        return request_amount_refund(order=order, amount=amount, user=user, reason=reason, note=note)
    if items is None:
        preview = preview_order_refund(order=order)
        if not preview.items:
            raise NothingToRefund(" ".join(preview.problems))
        items = [item.pk for item in preview.items]
    else:
        _item_ids(order, list(OrderItem.objects.filter(order=order)), items)
    [refund] = request_refund(items=items, user=user, reason=reason, note=note)
    return refund


def _one_of(items, amount) -> None:
    if items is not None and amount is not None:
        raise RefundError("Send either `items` or `amount`, not both: an amount refund is tied to no item.")


def _check_amount(amount) -> None:
    # request_amount_refund says the same; said here too so a preview refuses what a request would.
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise RefundError("The amount must be a whole number of minor units (cents), above zero.")
    if amount > MAX_AMOUNT:  # no order holds that much, and money formatting has its limits
        raise RefundError(f"The amount must be at most {MAX_AMOUNT} minor units.")


def _item_ids(order: Order, order_items: list[OrderItem], requested: list[int] | None) -> set[int]:
    """The requested ids, each checked to be an item of `order`; None: all of its items."""
    own = {item.pk for item in order_items}
    if requested is None:
        return own
    if not requested:
        raise NothingToRefund("`items` is empty: list the ids of the items to refund, or leave it out for all.")
    repeated = sorted(pk for pk, count in Counter(requested).items() if count > 1)
    if repeated:
        raise RefundError(f"Item(s) {', '.join(map(str, repeated))} listed more than once.")
    foreign = sorted(set(requested) - own)
    if foreign:
        raise UnknownItem(
            f"Item(s) {', '.join(map(str, foreign))} are not items of order {order.reference}."
        )
    return set(requested)
