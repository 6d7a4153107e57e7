"""Reads that pages, services and jobs share, each written once (DESIGN.md §3).

Nothing here writes or locks; a service that needs rows locked takes the locks itself and
may pass a locked queryset's ids here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from .conf import app_settings
from .models import (
    LIVE_REFUND_STATUSES,
    AttentionCase,
    AttentionKind,
    ItemState,
    ItemTransition,
    Order,
    OrderItem,
    Refund,
    RefundOrigin,
    RefundStatus,
)

RefundItem = Refund.items.through


# --- An item's latest refund -----------------------------------------------------------------
# Refund ids grow with creation, so an item's latest refund is the highest refund id linked to it.

def latest_refund_of_item(field: str = "refund_id") -> Subquery:
    """A field of each item's newest refund, as a subquery on OrderItem (one query for a list):
    `refund_id`, or `refund__<field>` for the refund's own fields."""
    links = RefundItem.objects.filter(orderitem_id=OuterRef("pk")).order_by("-refund_id")
    return Subquery(links.values(field)[:1])


def latest_refund_ids(item_ids: list[int]) -> dict[int, int]:
    """Each item's newest refund id, in one query."""
    return dict(
        RefundItem.objects.filter(orderitem_id__in=item_ids)
        .values_list("orderitem_id")
        .annotate(latest=Max("refund_id"))
        .order_by()
    )


def latest_refund_of(item_id: int) -> Refund | None:
    return Refund.objects.filter(items=item_id).select_related("order").order_by("-pk").first()


def item_ids_of(refund: Refund) -> list[int]:
    return list(refund.items.order_by("pk").values_list("pk", flat=True))


# --- What an order has refunded or in flight -------------------------------------------------

@dataclass
class LiveRefunds:
    """The refunds of some orders that count against what may still be refunded."""

    # order id → currency → amount refunded or in flight, summed per currency: a refund in
    # another currency than its order's (made in the Stripe Dashboard) is never added to it.
    committed_by_currency: dict[int, dict[str, int]] = field(default_factory=dict)
    shipping_taken: set[int] = field(default_factory=set)  # order ids whose shipping a live refund carries
    refund_of_item: dict[int, int] = field(default_factory=dict)  # item id → the live refund it is part of

    def committed(self, order: Order) -> int:
        """Refunded or in flight for `order`, in the order's own currency."""
        return self.committed_by_currency.get(order.pk, {}).get(order.currency.lower(), 0)

    def other_currencies(self, order: Order) -> dict[str, int]:
        """Refunded or in flight for `order` in any other currency (shown apart, never counted)."""
        own = order.currency.lower()
        return {currency: amount for currency, amount in self.committed_by_currency.get(order.pk, {}).items() if currency != own}


def live_refunds(order_ids: list[int]) -> LiveRefunds:
    """Three queries, whatever the number of orders and items.

    Sums are made here, in Python integers, per order and currency: the database's SUM
    overflows (SQLite raises "integer overflow") where amounts Stripe reported add up beyond
    a bigint, and mixing currencies would be wrong however large the numbers.
    """
    live = Refund.objects.filter(order_id__in=order_ids, status__in=LIVE_REFUND_STATUSES)
    return LiveRefunds(
        committed_by_currency=_per_order_and_currency(live.values_list("order_id", "currency", "amount").order_by()),
        shipping_taken=set(live.filter(shipping_amount__gt=0).values_list("order_id", flat=True)),
        refund_of_item=dict(RefundItem.objects.filter(refund__in=live).values_list("orderitem_id", "refund_id")),
    )


def live_refunds_among(refunds: list[Refund]) -> LiveRefunds:
    """`live_refunds` over refunds already read, with their items prefetched (no query): every
    refund of the orders concerned must be among them."""
    live = [refund for refund in refunds if refund.status in LIVE_REFUND_STATUSES]
    return LiveRefunds(
        committed_by_currency=_per_order_and_currency((r.order_id, r.currency, r.amount) for r in live),
        shipping_taken={refund.order_id for refund in live if refund.shipping_amount > 0},
        refund_of_item={item.pk: refund.pk for refund in live for item in refund.items.all()},
    )


def _per_order_and_currency(rows) -> dict[int, dict[str, int]]:
    committed: dict[int, dict[str, int]] = {}
    for order_id, currency, amount in rows:
        per_currency = committed.setdefault(order_id, {})
        per_currency[currency.lower()] = per_currency.get(currency.lower(), 0) + amount
    return committed


def orders_with_items_of(item_ids) -> tuple[list[Order], list[OrderItem]]:
    """The orders of the given items and *all* their items, unlocked (a confirmation page)."""
    orders = list(Order.objects.filter(items__pk__in=item_ids).distinct().order_by("reference"))
    items = list(OrderItem.objects.filter(order__in=orders).select_related("order").order_by("pk"))
    return orders, items


def outside_refunds(order_id) -> QuerySet[Refund]:
    """Refunds made in the Stripe Dashboard against an order."""
    return Refund.objects.filter(order_id=order_id, origin=RefundOrigin.STRIPE_DASHBOARD).order_by("created_at", "pk")


def order_history(order_id) -> QuerySet[ItemTransition]:
    """The audit log of an order's items, newest first."""
    return (
        ItemTransition.objects.filter(item__order_id=order_id)
        .select_related("item", "refund")
        .order_by("-at", "-pk")
    )


# --- What the scheduled jobs work on ---------------------------------------------------------

def settlement_cutoff(now: datetime | None = None) -> datetime:
    """Items that entered `payment refund succeeded` before this moment are due."""
    return (now or timezone.now()) - app_settings.REFUND_SETTLEMENT_PERIOD


def items_due_for_settlement(*, cutoff: datetime | None = None) -> QuerySet[OrderItem]:
    # state_changed_at is rewritten on every transition, so succeeded → failed → succeeded
    # restarts the clock, as an OMS timeout does.
    return OrderItem.objects.filter(
        state=ItemState.PAYMENT_REFUND_SUCCEEDED, state_changed_at__lt=cutoff or settlement_cutoff()
    )


def stale_queued_refunds(*, now: datetime | None = None) -> QuerySet[Refund]:
    """Refunds still waiting for `submit_refund` long after they were created or last sent."""
    cutoff = (now or timezone.now()) - app_settings.REFUND_RECONCILE_QUEUED_AFTER
    return (
        Refund.objects.filter(status=RefundStatus.QUEUED, origin=RefundOrigin.BACK_OFFICE)
        # An approved refund counts from its approval, not from its (maybe days old) request.
        .annotate(last_try=Coalesce("last_submitted_at", "decided_at", "created_at"))
        .filter(last_try__lt=cutoff)
        .order_by("last_try", "pk")
    )


def stale_pending_refunds(*, now: datetime | None = None) -> QuerySet[Refund]:
    """Refunds Stripe called pending (or requires_action) long ago, not asked about since."""
    cutoff = (now or timezone.now()) - app_settings.REFUND_RECONCILE_PENDING_AFTER
    return (
        Refund.objects.filter(
            status__in=(RefundStatus.PENDING, RefundStatus.REQUIRES_ACTION), status_changed_at__lt=cutoff
        )
        .filter(Q(last_reconciled_at__isnull=True) | Q(last_reconciled_at__lt=cutoff))
        .annotate(last_look=Coalesce("last_reconciled_at", "status_changed_at"))
        .order_by("last_look", "pk")
    )


# --- Needs attention (DESIGN.md §9) ------------------------------------------------------------

def _without_case(refunds: QuerySet[Refund], kind: str) -> QuerySet[Refund]:
    return refunds.exclude(Exists(AttentionCase.objects.filter(kind=kind, refund=OuterRef("pk"))))


def stuck_pending_refunds(*, now: datetime | None = None) -> QuerySet[Refund]:
    """Refunds pending (or requiring action) at Stripe for longer than REFUND_ATTENTION_PENDING_DAYS,
    with no stuck_pending case yet."""
    cutoff = (now or timezone.now()) - timedelta(days=app_settings.REFUND_ATTENTION_PENDING_DAYS)
    stuck = Refund.objects.filter(
        status__in=(RefundStatus.PENDING, RefundStatus.REQUIRES_ACTION), status_changed_at__lt=cutoff
    )
    return _without_case(stuck, AttentionKind.STUCK_PENDING).select_related("order").order_by("status_changed_at", "pk")


def long_awaiting_approval(*, now: datetime | None = None) -> QuerySet[Refund]:
    """Refunds awaiting approval for longer than REFUND_ATTENTION_APPROVAL_AFTER, with no case yet."""
    cutoff = (now or timezone.now()) - app_settings.REFUND_ATTENTION_APPROVAL_AFTER
    waiting = Refund.objects.filter(status=RefundStatus.AWAITING_APPROVAL, created_at__lt=cutoff)
    return (
        _without_case(waiting, AttentionKind.AWAITING_APPROVAL)
        .select_related("order", "created_by").order_by("created_at", "pk")
    )


def unsent_alerts(*, now: datetime | None = None) -> QuerySet[AttentionCase]:
    """Cases whose alert no task delivered: never tried, or last tried a while ago."""
    cutoff = (now or timezone.now()) - app_settings.REFUND_RECONCILE_QUEUED_AFTER
    return (
        AttentionCase.objects.filter(alert_sent_at__isnull=True)
        .annotate(last_try=Coalesce("alert_last_attempt_at", "opened_at"))
        .filter(last_try__lt=cutoff)
        .order_by("last_try", "pk")
    )


def open_case_counts() -> dict[str, int]:
    """Open cases per kind, in one query."""
    rows = (
        AttentionCase.objects.filter(resolved_at__isnull=True)
        .values_list("kind").annotate(count=Count("pk")).order_by()
    )
    return dict(rows)


def live_refunds_of_items(item_ids) -> dict[int, Refund]:
    """Each item's live refund (an item is in one at most), with its order and requester, in two
    queries: what a second click on "Yes, refund" finds when the first one refunded already."""
    links = dict(
        RefundItem.objects.filter(orderitem_id__in=list(item_ids), refund__status__in=LIVE_REFUND_STATUSES)
        .values_list("orderitem_id", "refund_id")
    )
    refunds = Refund.objects.select_related("order", "created_by").prefetch_related("items").in_bulk(set(links.values()))
    return {item_id: refunds[refund_id] for item_id, refund_id in links.items()}


# --- What the Back Office shows of an order's money --------------------------------------------

IN_FLIGHT_STATUSES = tuple(status for status in LIVE_REFUND_STATUSES if status != RefundStatus.SUCCEEDED)


@dataclass
class OrderMoney:
    """Captured, refunded (Stripe says succeeded), in flight (awaiting approval, queued, pending at
    Stripe) and what remains, in the order's currency; refunds in other currencies apart."""

    currency: str
    captured: int
    refunded: int = 0
    in_flight: int = 0
    # currency → (refunded, in flight): Stripe Dashboard refunds that disagree with their order.
    other_currencies: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return max(self.captured - self.refunded - self.in_flight, 0)


def money_of_orders(orders: list[Order]) -> dict[int, OrderMoney]:
    """Each order's money, in two queries whatever the number of orders; sums in Python integers."""
    ids = [order.pk for order in orders]
    items_total: dict[int, int] = {}
    for order_id, amount in OrderItem.objects.filter(order_id__in=ids).values_list("order_id", "amount").order_by():
        items_total[order_id] = items_total.get(order_id, 0) + amount
    money = {
        order.pk: OrderMoney(
            currency=order.currency.lower(),
            captured=order.amount_captured
            if order.amount_captured is not None
            else items_total.get(order.pk, 0) + order.shipping_amount,
        )
        for order in orders
    }
    live = Refund.objects.filter(order_id__in=ids, status__in=LIVE_REFUND_STATUSES)
    for order_id, currency, amount, status in live.values_list("order_id", "currency", "amount", "status").order_by():
        summary, currency = money[order_id], currency.lower()
        refunded, in_flight = (amount, 0) if status == RefundStatus.SUCCEEDED else (0, amount)
        if currency == summary.currency:
            summary.refunded += refunded
            summary.in_flight += in_flight
        else:
            before = summary.other_currencies.get(currency, (0, 0))
            summary.other_currencies[currency] = (before[0] + refunded, before[1] + in_flight)
    return money
