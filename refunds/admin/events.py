"""Stripe events as received (read-only) with "Reprocess", and the audit log of transitions."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import ngettext

from ..models import ItemTransition, StripeEvent
from . import display
from .base import ReadOnlyAdmin
from .scale import ChoicesFilter, ExactFirstSearch, ScaleAdmin, TransitionFilter, exact_event_ids


class ProcessedFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("processed", "processed"), ("error", "failed (has an error)"), ("unprocessed", "not processed")]

    def queryset(self, request, queryset):
        if self.value() == "processed":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "error":
            return queryset.exclude(error="")
        if self.value() == "unprocessed":
            return queryset.filter(processed_at__isnull=True)
        return queryset


class EventTypeFilter(ChoicesFilter):
    """The event types this OMS handles (webhooks.HANDLERS): no DISTINCT over every event."""

    title = "type"
    parameter_name = "type"
    field = "type"

    def lookups(self, request, model_admin):
        from ..webhooks import HANDLERS

        return [(name, name) for name in HANDLERS]


@admin.register(StripeEvent)
class StripeEventAdmin(ExactFirstSearch, ScaleAdmin, ReadOnlyAdmin):
    list_display = ["stripe_event_id", "type", "received_at", "processed_at", "error_display", "refund_link"]
    list_filter = [ProcessedFilter, EventTypeFilter, "received_at"]
    search_fields = ["stripe_event_id", "type", "=refund__stripe_refund_id", "refund__order__reference"]
    exact_ids = staticmethod(exact_event_ids)  # exact values first (scale.ExactFirstSearch)
    list_select_related = ["refund"]
    actions = ["reprocess"]
    fields = ["stripe_event_id", "type", "received_at", "processed_at", "error", "refund_link", "payload_display"]
    readonly_fields = fields

    @admin.display(description="error")
    def error_display(self, event):
        return display.first_line(event.error)

    @admin.display(description="refund")
    def refund_link(self, event):
        return display.admin_link(event.refund)

    @admin.display(description="payload")
    def payload_display(self, event):
        return format_html('<pre class="oms-payload">{}</pre>', json.dumps(event.payload, indent=2, sort_keys=True))

    def has_reprocess_permission(self, request):
        # The events stay read-only here; "change" on StripeEvent is the right to re-run one.
        return request.user.has_perm("refunds.change_stripeevent")

    @admin.action(permissions=["reprocess"], description="Reprocess selected events")
    def reprocess(self, request, queryset):
        """Apply stored events again, oldest first; each in its own transaction (webhooks.process_event)."""
        from ..webhooks import process_event  # the webhook module imports services; keep admin import light

        reprocessed = 0
        for event in queryset.order_by("received_at", "pk"):
            try:
                process_event(event)
            except Exception as error:  # noqa: BLE001 — kept on the event (with its traceback) by process_event
                self.log_change(
                    request, event, f"Stripe event reprocessed: could not be applied ({error.__class__.__name__})"
                )
                self.message_user(
                    request,
                    f"{event.stripe_event_id} ({event.type}) could not be applied: {error.__class__.__name__}: {error}",
                    messages.ERROR,
                )
            else:
                self.log_change(request, event, "Stripe event reprocessed")
                reprocessed += 1
        if reprocessed:
            self.message_user(
                request,
                ngettext("%(count)d event reprocessed.", "%(count)d events reprocessed.", reprocessed)
                % {"count": reprocessed},
                messages.SUCCESS,
            )


@admin.register(ItemTransition)
class ItemTransitionAdmin(ScaleAdmin, ReadOnlyAdmin):
    """The audit log: who moved which item where, and for which refund."""

    list_display = ["at", "item", "transition", "from_display", "to_display", "by", "refund"]
    # No date hierarchy (MIN/MAX and a DISTINCT year scan over every row); the `at` filter's
    # fixed ranges remain.
    list_filter = [TransitionFilter, "to_state", "at"]
    search_fields = ["=item__order__reference", "=item__sku", "by", "=refund__stripe_refund_id"]
    list_select_related = ["item__order", "refund"]

    @admin.display(description="from", ordering="from_state")
    def from_display(self, entry):
        return display.state_label(entry.from_state)

    @admin.display(description="to", ordering="to_state")
    def to_display(self, entry):
        return display.state_label(entry.to_state)
