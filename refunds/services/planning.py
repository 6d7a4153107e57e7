"""What a refund request would do, order by order: pure rules over rows already read.

No query here: the caller reads the orders, all their items and their live refunds
(`selectors.live_refunds`) and passes them in. `request_refund` applies these rules to rows it
holds locked; the Back Office confirmation page (`preview_refunds`) shows the same plan before
anything is written, so both always agree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.utils.translation import gettext

from ..models import REFUNDABLE_STATES, UNREFUNDABLE_AGAIN_STATES, Order, OrderItem
from ..money import format_money, is_known_currency
from ..selectors import LiveRefunds
from .approvals import approval_threshold


@dataclass
class BlockedItem:
    item: OrderItem
    reason: str


@dataclass
class RefundPlan:
    """The refund one order would get from a selection of its items."""

    order: Order
    items: list[OrderItem] = field(default_factory=list)
    blocked: list[BlockedItem] = field(default_factory=list)
    shipping_amount: int = 0
    captured: int = 0
    committed: int = 0  # refunded or in flight already in the order's currency, Stripe Dashboard refunds included
    # Refunded or in flight in other currencies (a Stripe Dashboard refund that disagrees with
    # its order): shown apart, never added to `committed`, so it neither blocks nor allows a refund.
    other_currencies: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # order-level reasons nothing can be refunded
    approval_threshold: int | None = None  # dual control: from this amount a second user approves
    shipping_due: bool = False  # it leaves no item unrefunded, and no live refund carries shipping

    @property
    def items_amount(self) -> int:
        return sum(item.amount for item in self.items)

    @property
    def amount(self) -> int:
        return self.items_amount + self.shipping_amount

    @property
    def available(self) -> int:
        return still_refundable(captured=self.captured, committed=self.committed)

    @property
    def can_refund(self) -> bool:
        return bool(self.items) and not self.problems

    @property
    def needs_approval(self) -> bool:
        return self.approval_threshold is not None and self.amount >= self.approval_threshold

    @property
    def shipping_reduced(self) -> bool:
        """Shipping goes with this refund, but less than the order's: other refunds (an amount
        refund, a Stripe Dashboard one) left less than items plus shipping of the captured amount."""
        return self.shipping_due and self.shipping_amount < self.order.shipping_amount

    def money(self, amount: int) -> str:
        return format_money(amount, self.order.currency)

    @property
    def other_currencies_display(self) -> list[str]:
        return [format_money(amount, currency) for currency, amount in sorted(self.other_currencies.items())]


def still_refundable(*, captured: int, committed: int) -> int:
    """What may still be refunded: captured minus every live refund (`selectors.live_refunds`:
    queued, at Stripe, succeeded and awaiting approval, Stripe Dashboard refunds included)."""
    return max(captured - committed, 0)


def captured_amount(order: Order, items: list[OrderItem]) -> int:
    if order.amount_captured is not None:
        return order.amount_captured
    return sum(item.amount for item in items) + order.shipping_amount


def plan_refunds(
    *, orders: list[Order], items: list[OrderItem], selected_ids: set[int], live: LiveRefunds
) -> list[RefundPlan]:
    """One plan per order that has a selected item. `items` are *all* items of `orders`, and
    `live` their live refunds."""
    items_by_order: dict[int, list[OrderItem]] = defaultdict(list)
    for item in items:
        items_by_order[item.order_id].append(item)

    plans = []
    for order in orders:
        order_items = items_by_order[order.pk]
        selected = [item for item in order_items if item.pk in selected_ids]
        if not selected:
            continue
        plan = RefundPlan(
            order=order,
            captured=captured_amount(order, order_items),
            committed=live.committed(order),
            other_currencies=live.other_currencies(order),
            approval_threshold=approval_threshold(order.currency),
        )
        for item in selected:
            reason = _why_not_refundable(item, live.refund_of_item.get(item.pk))
            if reason:
                plan.blocked.append(BlockedItem(item, reason))
            else:
                plan.items.append(item)

        # The shipping expense goes with the refund that leaves no item unrefunded, once;
        # a failed refund gives it back, so its retry carries it again (DESIGN.md §2).
        refunding = {item.pk for item in plan.items}
        others_done = all(
            item.state in UNREFUNDABLE_AGAIN_STATES for item in order_items if item.pk not in refunding
        )
        if plan.items and others_done and order.pk not in live.shipping_taken:
            # Never beyond what was captured: an amount refund (say, a shipping-only goodwill
            # refund) or a Stripe Dashboard refund may already have paid part of it back.
            plan.shipping_due = True
            plan.shipping_amount = min(order.shipping_amount, max(plan.available - plan.items_amount, 0))

        plan.problems = _order_problems(plan)
        plans.append(plan)
    return plans


def _why_not_refundable(item: OrderItem, live_refund_id: int | None) -> str:
    if item.state not in REFUNDABLE_STATES:
        return gettext("its state is “%(state)s”") % {"state": item.state_label}
    if live_refund_id is not None:
        return gettext("it is part of refund #%(id)s, which is still in progress") % {"id": live_refund_id}
    return ""


def _unrefundable_order(order: Order) -> list[str]:
    if not order.is_paid:
        return [not_paid_problem(order)]
    if not is_known_currency(order.currency):
        return [unknown_currency_problem(order)]
    return []


def amount_refund_problems(order: Order, *, amount: int, captured: int, committed: int) -> list[str]:
    """Why an amount refund (no items, `request_amount_refund`) of `amount` could not be made."""
    problems = _unrefundable_order(order)
    if not problems and amount > still_refundable(captured=captured, committed=committed):
        problems.append(over_refund_problem(order, amount=amount, captured=captured, committed=committed))
    return problems


def _order_problems(plan: RefundPlan) -> list[str]:
    order = plan.order
    if problems := _unrefundable_order(order):
        return problems
    if not plan.items:
        return []
    if plan.amount <= 0:
        return [
            gettext("The selected items of order %(order)s add up to %(amount)s; there is nothing to refund.")
            % {"order": order.reference, "amount": plan.money(0)}
        ]
    if plan.amount > plan.available:
        return [over_refund_problem(order, amount=plan.amount, captured=plan.captured, committed=plan.committed)]
    return []


def over_refund_problem(order: Order, *, amount: int, captured: int, committed: int) -> str:
    def money(value: int) -> str:
        return format_money(value, order.currency)

    return gettext(
        "A refund of %(amount)s for order %(order)s would exceed what may still be refunded: %(available)s of "
        "%(captured)s captured (%(committed)s refunded or in flight)."
    ) % {
        "amount": money(amount), "order": order.reference, "available": money(max(captured - committed, 0)),
        "captured": money(captured), "committed": money(committed),
    }


def not_paid_problem(order: Order) -> str:
    return gettext("Order %(order)s is not paid (it has no Stripe PaymentIntent), so nothing can be refunded.") % {
        "order": order.reference
    }


def unknown_currency_problem(order: Order) -> str:
    return gettext("Order %(order)s has an unknown currency %(currency)r; fix the order before refunding.") % {
        "order": order.reference, "currency": order.currency
    }
