"""Refunds: read-only list and page (order, items, amount, status, failure reason in words, who
asked, the Stripe Dashboard link, the events received), and "Check status with Stripe"."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy as _

from .. import services
from ..services import Actor
from ..exceptions import StripeGatewayError
from ..models import Refund, StripeEvent
from . import display
from .approvals import ApprovalActions
from .base import (
    ReadOnlyAdmin, ReadOnlyInline, TransitionLogInline, forbidden, get_object_or_404, has_refund_permission,
)
from .export import ExportActions
from .scale import ExactFirstSearch, ScaleAdmin, exact_refund_ids


def refund_name(refund: Refund) -> str:
    """"Refund #12 (re_…)": a message starts with a word, so the admin's capfirst never turns a
    Stripe id (case-sensitive) into "Re_…"."""
    if refund.stripe_refund_id:
        return gettext("Refund #%(id)s (%(stripe_id)s)") % {"id": refund.pk, "stripe_id": refund.stripe_refund_id}
    return gettext("Refund #%(id)s") % {"id": refund.pk}


class StripeEventInline(ReadOnlyInline):
    model = StripeEvent
    fields = ["event_link", "type", "received_at", "processed_at", "error_summary"]
    readonly_fields = fields
    show_change_link = False
    classes = ["oms-log-inline"]
    verbose_name_plural = _("Stripe events received for this refund")

    @admin.display(description=_("Stripe event"))
    def event_link(self, event):
        return display.admin_link(event, event.stripe_event_id)

    @admin.display(description=_("error"))
    def error_summary(self, event):
        return display.first_line(event.error)


class RefundTransitionInline(TransitionLogInline):
    fk_name = "refund"
    fields = ["at_display", "item", "transition_display", "from_display", "to_display", "by_display"]
    readonly_fields = fields
    verbose_name_plural = _("items moved by this refund")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("item__order").order_by("-at", "-pk")


@admin.register(Refund)
class RefundAdmin(ExactFirstSearch, ApprovalActions, ExportActions, ScaleAdmin, ReadOnlyAdmin):
    list_display = [
        "refund_display", "order_link", "amount_display", "status_display", "failure_display", "origin_display",
        "created_by", "created_display",
    ]
    list_display_links = ["refund_display"]
    list_filter = ["status", "origin", "reason", "created_at"]
    search_fields = [
        "stripe_refund_id", "order__reference", "order__customer_email", "order__stripe_payment_intent_id",
        "idempotency_key",
    ]
    exact_ids = staticmethod(exact_refund_ids)  # exact values first (scale.ExactFirstSearch)
    list_select_related = ["order", "created_by"]
    actions = ["check_status_with_stripe", "approve_refunds", "reject_refunds", "export_refunds_csv"]
    inlines = [StripeEventInline, RefundTransitionInline]
    fieldsets = [
        (None, {"fields": [
            "order_link", "items_display", "amount_display", "shipping_display", "status_display",
            "failure_display", "origin_display", "warning_display",
        ]}),
        ("Request", {"fields": ["reason", "note", "created_by", "created_at"]}),
        ("Approval", {"fields": ["approval_display", "decided_at", "decision_note"]}),
        ("Stripe", {"fields": [
            "stripe_link", "idempotency_key", "submit_attempts", "last_submitted_at", "last_error",
            "status_changed_at",
        ]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    @admin.display(description=_("refund"), ordering="stripe_refund_id")
    def refund_display(self, refund):
        return format_html('<span class="oms-stripe-id">{}</span>', refund)

    @admin.display(description=_("requested at"), ordering="created_at")
    def created_display(self, refund):
        return display.when(refund.created_at)

    @admin.display(description=_("order"), ordering="order__reference")
    def order_link(self, refund):
        return display.admin_link(refund.order, refund.order.reference)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, refund):
        return refund.amount_display

    @admin.display(description=_("of which shipping"))
    def shipping_display(self, refund):
        return display.money(refund.shipping_amount, refund.currency)

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, refund):
        return display.refund_status_label(refund.status)

    @admin.display(description=_("failure reason"))
    def failure_display(self, refund):
        return display.failure_reason_in_words(refund.failure_reason)

    @admin.display(description=_("made"), ordering="origin")
    def origin_display(self, refund):
        return display.origin_label(refund.origin)

    @admin.display(description=_("needs attention"))
    def warning_display(self, refund):
        return display.warning(refund.warning)

    @admin.display(description=_("approved or rejected by"))
    def approval_display(self, refund):
        return display.approval(refund)

    @admin.display(description=_("Stripe refund"))
    def stripe_link(self, refund):
        return display.stripe_refund_link(refund.stripe_refund_id)

    @admin.display(description=_("items"))
    def items_display(self, refund):
        items = refund.items.order_by("pk")
        return format_html_join(
            ", ", "{} ({})",
            ((display.admin_link(item, f"{item.sku} · {item.name}"), display.money(item.amount, refund.currency))
             for item in items),
        ) or "—"

    # --- Check status with Stripe ---------------------------------------------------------
    def has_refund_permission(self, request):
        return has_refund_permission(request)

    @admin.action(permissions=["refund"], description=_("Check status with Stripe"))
    def check_status_with_stripe(self, request, queryset):
        for refund in queryset.select_related("order"):
            self._sync(request, refund)

    def _sync(self, request, refund: Refund) -> None:
        """Ask Stripe, record the answer, and say so: in a message, and on the refund's History page."""
        before = refund.status
        try:
            refund = services.sync_refund_from_stripe(refund_id=refund.pk, by=Actor.of_user(request.user))
        except StripeGatewayError as error:
            self.message_user(
                request,
                gettext("%(refund)s: Stripe could not be asked: %(error)s") % {"refund": refund_name(refund), "error": error.message},
                messages.ERROR,
            )
            return
        if refund.stripe_refund_id is None:
            self.log_change(request, refund, "Checked with Stripe: not known to Stripe yet")
            self.message_user(
                request, gettext("%(refund)s: Stripe does not know this refund yet.") % {"refund": refund_name(refund)},
                messages.WARNING,
            )
        elif refund.status == before:
            self.log_change(request, refund, f"Checked with Stripe: {before}, unchanged")
            self.message_user(
                request,
                gettext("%(refund)s: unchanged, %(status)s.") % {"refund": refund_name(refund), "status": refund.get_status_display()},
                messages.INFO,
            )
        else:
            self.log_change(request, refund, f"Checked with Stripe: {before} → {refund.status}")
            self.message_user(
                request,
                gettext("%(refund)s: now %(status)s (was %(before)s).") % {
                    "refund": refund_name(refund), "status": refund.get_status_display(),
                    "before": Refund(status=before).get_status_display(),
                },
                messages.SUCCESS,
            )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/check-status/",
                self.admin_site.admin_view(self.check_status_view),
                name="refunds_refund_check_status",
            ),
            *super().get_urls(),
        ]

    def check_status_view(self, request, object_id):
        """The refund page's "Check status with Stripe" button (a POST: it may move items)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        refund = get_object_or_404(self, request, object_id)
        if not (self.has_view_permission(request, refund) and self.has_refund_permission(request)):
            return forbidden(self, request, gettext("You may not check refunds with Stripe."))
        self._sync(request, refund)
        return HttpResponseRedirect(reverse("admin:refunds_refund_change", args=[refund.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_check_status": self.has_refund_permission(request),
            "can_approve": self.has_approve_permission(request),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return super().change_view(request, object_id, form_url, extra_context)
