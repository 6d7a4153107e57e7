"""Stripe events as received (read-only) with "Reprocess", and the audit log of transitions."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext, gettext_lazy as _, ngettext

from ..models import TRANSITION_LABELS, ItemTransition, StripeEvent, transition_label
from . import display
from .base import ReadOnlyAdmin
from .scale import ChoicesFilter, ExactFirstSearch, ScaleAdmin, exact_event_ids


class ProcessedFilter(admin.SimpleListFilter):
    title = _("outcome")
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [("processed", _("processed")), ("error", _("failed (has an error)")), ("unprocessed", _("not processed"))]

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
    list_display = ["event_id_display", "type", "received_display", "processed_display", "error_display", "refund_link"]
    list_display_links = ["event_id_display"]
    list_filter = [ProcessedFilter, EventTypeFilter, "received_at"]
    search_fields = ["stripe_event_id", "type", "=refund__stripe_refund_id", "refund__order__reference"]
    exact_ids = staticmethod(exact_event_ids)  # exact values first (scale.ExactFirstSearch)
    list_select_related = ["refund"]
    actions = ["reprocess"]
    fields = ["stripe_event_id", "type", "received_at", "processed_at", "error", "refund_link", "payload_display"]
    readonly_fields = fields

    @admin.display(description=_("Stripe event"), ordering="stripe_event_id")
    def event_id_display(self, event):
        return format_html('<span class="oms-stripe-id">{}</span>', event.stripe_event_id)

    @admin.display(description=_("received"), ordering="received_at")
    def received_display(self, event):
        return display.when(event.received_at)

    @admin.display(description=_("processed"), ordering="processed_at")
    def processed_display(self, event):
        return display.when(event.processed_at)

    @admin.display(description=_("error"))
    def error_display(self, event):
        return display.first_line(event.error)

    @admin.display(description=_("refund"))
    def refund_link(self, event):
        return display.admin_link(event.refund)

    @admin.display(description=_("payload"))
    def payload_display(self, event):
        return format_html('<pre class="oms-payload">{}</pre>', json.dumps(event.payload, indent=2, sort_keys=True))

    def has_reprocess_permission(self, request):
        # The events stay read-only here; applying one again is a permission of its own.
        return request.user.has_perm("refunds.reprocess_stripeevent")

    @admin.action(permissions=["reprocess"], description=_("Reprocess selected events"))
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
                    gettext("Stripe event %(id)s (%(type)s) could not be applied: %(error)s")
                    % {"id": event.stripe_event_id, "type": event.type, "error": f"{error.__class__.__name__}: {error}"},
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


class TransitionFilter(admin.SimpleListFilter):
    title = _("transition")
    parameter_name = "transition"

    def lookups(self, request, model_admin):
        return [(name, transition_label(name)) for name in TRANSITION_LABELS]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(transition=self.value())
        return queryset


@admin.register(ItemTransition)
class ItemTransitionAdmin(ScaleAdmin, ReadOnlyAdmin):
    """The audit log: who moved which item where, and for which refund; newest first."""

    list_display = ["at_display", "item", "transition_display", "from_display", "to_display", "by_display", "refund"]
    list_display_links = ["at_display"]
    # No date hierarchy (MIN/MAX and a DISTINCT year scan over every row); the `at` filter's
    # fixed ranges remain.
    list_filter = [TransitionFilter, "to_state", "at"]
    search_fields = ["=item__order__reference", "=item__sku", "by", "=refund__stripe_refund_id"]
    list_select_related = ["item__order", "refund"]
    ordering = ["-at", "-pk"]

    @admin.display(description=_("when"), ordering="at")
    def at_display(self, entry):
        return display.when(entry.at)

    @admin.display(description=_("transition"), ordering="transition")
    def transition_display(self, entry):
        return display.transition(entry.transition)

    @admin.display(description=_("by"), ordering="by")
    def by_display(self, entry):
        return display.actor(entry.by)

    @admin.display(description=_("from"), ordering="from_state")
    def from_display(self, entry):
        return display.state_label(entry.from_state)

    @admin.display(description=_("to"), ordering="to_state")
    def to_display(self, entry):
        return display.state_label(entry.to_state)
