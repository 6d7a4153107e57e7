"""Order items: the list the `refund_items` and "Confirm refund now" actions run on, and the
item page with the refund process drawn and the item's audit log."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext, gettext_lazy as _, ngettext

from .. import selectors, services
from ..exceptions import RefundError
from ..models import ItemState, OrderItem, Refund
from . import display
from .base import (
    OrderCurrencyFilter, ReadOnlyAdmin, TransitionLogInline, has_confirm_refund_permission, has_refund_permission,
)
from .process_diagram import diagram
from .refund_flow import refund_with_confirmation
from .scale import ExactFirstSearch, ScaleAdmin, exact_item_ids


class ItemTransitionInline(TransitionLogInline):
    fk_name = "item"
    fields = ["at_display", "transition_display", "from_display", "to_display", "by_display", "refund"]
    readonly_fields = fields
    verbose_name_plural = _("transition history")
    ordering = ["-at", "-pk"]  # newest first, as everywhere in the Back Office

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("refund").order_by("-at", "-pk")


@admin.register(OrderItem)
class OrderItemAdmin(ExactFirstSearch, ScaleAdmin, ReadOnlyAdmin):
    list_display = [
        "sku", "name", "order_link", "amount_display", "state_display", "state_changed_display", "latest_refund_display",
    ]
    list_display_links = ["sku"]
    list_filter = ["state", OrderCurrencyFilter, "state_changed_at"]
    # The search box (scale.ExactFirstSearch): item id, SKU, the order's reference, e-mail or
    # PaymentIntent, or a Stripe refund id exactly; else part of the SKU or name.
    search_fields = [
        "sku", "name", "order__reference", "order__customer_email", "order__stripe_payment_intent_id",
        "=refunds__stripe_refund_id",
    ]
    exact_ids = staticmethod(exact_item_ids)
    partial_search_fields = ["sku", "name"]
    list_select_related = ["order"]
    actions = ["refund_items", "confirm_refund_now"]
    inlines = [ItemTransitionInline]
    fields = [
        "order_link", "sku", "name", "amount_display", "state_display", "state_changed_display", "refunds_display",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            latest_refund_id=selectors.latest_refund_of_item("refund_id"),
            latest_refund_stripe_id=selectors.latest_refund_of_item("refund__stripe_refund_id"),
            latest_refund_status=selectors.latest_refund_of_item("refund__status"),
        )

    # --- columns and fields ---------------------------------------------------------------
    @admin.display(description=_("order"), ordering="order__reference")
    def order_link(self, item):
        return display.admin_link(item.order, item.order.reference)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, item):
        return display.money(item.amount, item.order.currency)

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, item):
        return display.state_label(item.state)

    @admin.display(description=_("state since"), ordering="state_changed_at")
    def state_changed_display(self, item):
        return display.when(item.state_changed_at)

    @admin.display(description=_("latest refund"))
    def latest_refund_display(self, item):
        if item.latest_refund_id is None:
            return "—"
        url = reverse("admin:refunds_refund_change", args=[item.latest_refund_id])
        return format_html(
            '<a href="{}" class="oms-stripe-id">{}</a> {}', url,
            item.latest_refund_stripe_id or gettext("refund #%(id)s") % {"id": item.latest_refund_id},
            display.refund_status_label(item.latest_refund_status),
        )

    @admin.display(description=_("refunds"))
    def refunds_display(self, item):
        refunds = item.refunds.order_by("-created_at", "-pk")
        if not refunds:
            return "—"
        # Our refund's page by its number, Stripe's by its id: two links, two names.
        return format_html_join(
            mark_safe("<br>"),
            "{} {} {} · {} {}",
            (
                (display.admin_link(refund, gettext("refund #%(id)s") % {"id": refund.pk}), refund.amount_display,
                 display.refund_status_label(refund.status), gettext("at Stripe:"),
                 display.stripe_refund_link(refund.stripe_refund_id))
                for refund in refunds
            ),
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        item = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "diagram": diagram(item.state) if item else None}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- actions ----------------------------------------------------------------------------
    def has_refund_permission(self, request):
        return has_refund_permission(request)

    def has_confirm_refund_permission(self, request):
        return has_confirm_refund_permission(request)

    @admin.action(permissions=["refund"], description=_("Refund selected items"))
    def refund_items(self, request, queryset):
        """The selected items, grouped per order, after a confirmation page."""
        return refund_with_confirmation(
            self,
            request,
            items=queryset,
            action="refund_items",
            selected_ids=queryset.values_list("pk", flat=True),
            title=_("Refund items"),
            cancel_url=reverse("admin:refunds_orderitem_changelist"),
        )

    @admin.action(
        permissions=["confirm_refund"],
        description=_("Confirm refund now (do not wait for the settlement period)"),
    )
    def confirm_refund_now(self, request, queryset):
        try:
            items = services.confirm_refund_now(items=list(queryset.values_list("pk", flat=True)), user=request.user)
        except RefundError as error:
            self.message_user(request, gettext("Nothing was confirmed: %(error)s") % {"error": error}, messages.ERROR)
            return
        # Each item's History page (django.contrib.admin's LogEntry), in one insert.
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=items,
            action_flag=CHANGE,
            change_message=f"Confirmed by hand: {ItemState.PAYMENT_REFUNDED.label}",
        )
        self.message_user(
            request,
            ngettext("%(count)d item is now payment refunded.", "%(count)d items are now payment refunded.", len(items))
            % {"count": len(items)},
            messages.SUCCESS,
        )
