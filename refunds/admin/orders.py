"""Orders: the list with totals and a summary of item states, the page with items, refunds,
the transition history and a "Refund" button."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Exists, OuterRef, Sum
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy as _

from .. import selectors
from ..models import ItemState, Order, OrderItem, Refund, RefundOrigin
from ..services import preview_refunds
from . import display
from .amount_refund import AmountRefundView
from .base import (
    CurrencyFilter, ReadOnlyAdmin, ReadOnlyInline, forbidden, get_object_or_404, has_refund_permission, object_pk,
)
from .refund_flow import refund_with_confirmation
from .scale import ExactFirstSearch, ScaleAdmin, exact_order_ids


def state_count_field(state: str) -> str:
    return f"items_{state}"


def with_item_summary(orders: list[Order]) -> list[Order]:
    """The page's orders with their items' total, a count per state and whether Stripe
    Dashboard refunds exist: two grouped queries over the page's 100 orders, whatever the table's
    size (a JOIN + GROUP BY in the list query summed all items before LIMIT, and a search's join
    on refunds multiplied them)."""
    ids = [order.pk for order in orders]
    totals, counts = {}, {}
    rows = (
        OrderItem.objects.filter(order_id__in=ids).order_by().values_list("order_id", "state")
        .annotate(count=Count("pk"), total=Sum("amount"))
    )
    for order_id, state, count, total in rows:
        totals[order_id] = totals.get(order_id, 0) + total
        counts[(order_id, state)] = count
    outside = set(
        Refund.objects.filter(order_id__in=ids, origin=RefundOrigin.STRIPE_DASHBOARD).values_list("order_id", flat=True)
    )
    for order in orders:
        order.items_total = totals.get(order.pk, 0)
        order.has_outside_refunds = order.pk in outside
        for state in ItemState.values:
            setattr(order, state_count_field(state), counts.get((order.pk, state), 0))
    return orders


class ItemStateFilter(admin.SimpleListFilter):
    title = _("item state")
    parameter_name = "item_state"

    def lookups(self, request, model_admin):
        return ItemState.choices

    def queryset(self, request, queryset):
        if self.value() in ItemState.values:
            # A subquery, not a join: a join would multiply the rows the totals are summed over.
            return queryset.filter(Exists(OrderItem.objects.filter(order=OuterRef("pk"), state=self.value())))
        return queryset


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = ["sku", "name", "amount_display", "state_display", "state_changed_at"]
    readonly_fields = fields
    verbose_name_plural = _("items")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("order")

    @admin.display(description=_("amount"))
    def amount_display(self, item):
        return display.money(item.amount, item.order.currency)

    @admin.display(description=_("state"))
    def state_display(self, item):
        return display.state_label(item.state)


class RefundInline(ReadOnlyInline):
    model = Refund
    fields = [
        "stripe_id_display", "amount_display", "status_display", "failure_display",
        "origin_display", "created_by", "created_at",
    ]
    readonly_fields = fields
    verbose_name_plural = _("refunds")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")

    @admin.display(description=_("Stripe refund"))
    def stripe_id_display(self, refund):
        return display.stripe_refund_link(refund.stripe_refund_id)

    @admin.display(description=_("amount"))
    def amount_display(self, refund):
        return refund.amount_display

    @admin.display(description=_("status"))
    def status_display(self, refund):
        return display.refund_status_label(refund.status)

    @admin.display(description=_("failure reason"))
    def failure_display(self, refund):
        return display.failure_reason_in_words(refund.failure_reason)

    @admin.display(description=_("made"))
    def origin_display(self, refund):
        return display.origin_label(refund.origin)


class OrderChangeList(ChangeList):
    """Each page's orders get their money (captured, refunded, in flight, remaining), their item
    states and Dashboard-refund flag in four queries over the page's rows, whatever the number
    of rows or the table's size (selectors.money_of_orders, with_item_summary)."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = with_item_summary(list(self.result_list))
        money = selectors.money_of_orders(self.result_list)
        for order in self.result_list:
            order.money_summary = money[order.pk]


@admin.register(Order)
class OrderAdmin(ExactFirstSearch, AmountRefundView, ScaleAdmin, ReadOnlyAdmin):
    list_display = [
        "reference", "customer_email", "captured_list", "refunded_list", "in_flight_list", "remaining_list",
        "item_states", "created_display",
    ]
    # Values from a fixed list (no SELECT DISTINCT over a million orders); no date hierarchy (its
    # MIN/MAX and DISTINCT year scans cost seconds): the created_at filter's fixed ranges remain.
    list_filter = [ItemStateFilter, CurrencyFilter, "created_at"]
    # Shown as the search box's fields; the search itself is ExactFirstSearch: reference,
    # e-mail, PaymentIntent, Stripe refund id or order id exactly, else part of reference or e-mail.
    search_fields = ["reference", "customer_email", "stripe_payment_intent_id", "=refunds__stripe_refund_id"]
    exact_ids = staticmethod(exact_order_ids)
    partial_search_fields = ["reference", "customer_email"]
    actions = ["refund_orders"]
    inlines = [OrderItemInline, RefundInline]
    fieldsets = [
        (None, {"fields": ["reference", "customer_email", "currency_display", "stripe_payment_intent_id", "created_at"]}),
        (_("Money"), {"fields": [
            "items_total_display", "shipping_display", "captured_display", "refunded_display", "in_flight_display",
            "remaining_display",
        ]}),
    ]
    readonly_fields = [field for _name, options in fieldsets for field in options["fields"]]

    def get_changelist(self, request, **kwargs):
        return OrderChangeList

    # --- list columns: the money of each order, in its currency ------------------------------
    @admin.display(description=_("captured"))
    def captured_list(self, order):
        return display.money(order.money_summary.captured, order.currency)

    @admin.display(description=_("refunded"))
    def refunded_list(self, order):
        return display.money_with_others(order.money_summary, "refunded")

    @admin.display(description=_("in flight"))
    def in_flight_list(self, order):
        return display.money_with_others(order.money_summary, "in_flight")

    @admin.display(description=_("remaining"))
    def remaining_list(self, order):
        return display.money(order.money_summary.remaining, order.currency)

    @admin.display(description=_("created at"), ordering="created_at")
    def created_display(self, order):
        return display.when(order.created_at)

    @admin.display(description=_("item states"))
    def item_states(self, order):
        parts = [
            (getattr(order, state_count_field(state)), display.state_label(state))
            for state in ItemState.values
            if getattr(order, state_count_field(state), 0)
        ]
        summary = format_html_join(" ", '<span class="oms-count">{}&nbsp;×&nbsp;{}</span>', parts)
        if order.has_outside_refunds:
            summary = format_html('{} <span class="oms-outside">{}</span>', summary, _("refunded outside this system"))
        return summary

    # --- page fields ----------------------------------------------------------------------
    def _money(self, order) -> selectors.OrderMoney:
        if not hasattr(order, "money_summary"):
            order.money_summary = selectors.money_of_orders([order])[order.pk]
        return order.money_summary

    @admin.display(description=_("currency"))
    def currency_display(self, order):
        return display.currency_code(order.currency)

    @admin.display(description=_("items"))
    def items_total_display(self, order):
        return display.money(sum(item.amount for item in order.items.all()), order.currency)

    @admin.display(description=_("shipping expense"))
    def shipping_display(self, order):
        return display.money(order.shipping_amount, order.currency)

    @admin.display(description=_("captured"))
    def captured_display(self, order):
        return display.money(self._money(order).captured, order.currency)

    @admin.display(description=_("refunded"))
    def refunded_display(self, order):
        return display.money_with_others(self._money(order), "refunded")

    @admin.display(description=_("in flight"))
    def in_flight_display(self, order):
        return display.money_with_others(self._money(order), "in_flight")

    @admin.display(description=_("remaining"))
    def remaining_display(self, order):
        return display.money(self._money(order).remaining, order.currency)

    # --- refund action and button ---------------------------------------------------------
    def has_refund_permission(self, request):
        return has_refund_permission(request)

    @admin.action(permissions=["refund"], description=_("Refund selected orders"))
    def refund_orders(self, request, queryset):
        """Every refundable item of each selected order, after a confirmation page."""
        return refund_with_confirmation(
            self,
            request,
            items=OrderItem.objects.filter(order__in=queryset.values("pk")),
            action="refund_orders",
            selected_ids=queryset.values_list("pk", flat=True),
            title=_("Refund orders"),
            cancel_url=reverse("admin:refunds_order_changelist"),
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="refunds_order_refund",
            ),
            *super().get_urls(),
        ]

    def refund_view(self, request, object_id):
        """The order page's "Refund" button: the same flow as `refund_orders`, for one order."""
        order = get_object_or_404(self, request, object_id)
        if not (self.has_view_permission(request, order) and self.has_refund_permission(request)):
            return forbidden(self, request, _("You may not refund orders."))
        order_url = reverse("admin:refunds_order_change", args=[order.pk])
        response = refund_with_confirmation(
            self,
            request,
            items=order.items.all(),
            action=None,
            title=gettext("Refund order %(order)s") % {"order": order.reference},
            cancel_url=order_url,
        )
        return response or HttpResponseRedirect(order_url)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        pk = object_pk(object_id)
        order = Order.objects.filter(pk=pk).first() if pk is not None else None
        outside = list(selectors.outside_refunds(pk)) if order is not None else []
        own_currency = order.currency.lower() if order is not None else ""
        may_refund = order is not None and self.has_refund_permission(request)
        money = selectors.money_of_orders([order])[order.pk] if order is not None else None
        extra_context = {
            **(extra_context or {}),
            # The buttons only where they can do something: an item left to refund, money left.
            "can_refund": may_refund and any(plan.can_refund for plan in preview_refunds(order.items.all())),
            "can_refund_amount": may_refund and money.remaining > 0,
            "history": selectors.order_history(pk) if order is not None else [],
            # A refund in another currency than the order's is shown apart: it is in no sum.
            "outside_refunds": [refund for refund in outside if refund.currency.lower() == own_currency],
            "foreign_refunds": [refund for refund in outside if refund.currency.lower() != own_currency],
        }
        return super().change_view(request, object_id, form_url, extra_context)
