"""Shared admin behaviour: records the OMS keeps are shown, never edited or deleted here."""

from __future__ import annotations

from django.contrib import admin

from ..models import ItemTransition
from . import display


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only pages: the state and the money change only through services, and a form that
    included the protected `state` field would crash in `is_valid()` (DESIGN.md §1)."""

    class Media:
        css = {"all": ["refunds/back_office.css"]}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TransitionLogInline(ReadOnlyInline):
    """The audit log (`ItemTransition`) under an item or a refund, states by their OMS labels."""

    model = ItemTransition
    show_change_link = False
    classes = ["oms-log-inline"]
    verbose_name = "transition"

    @admin.display(description="from")
    def from_display(self, entry):
        return display.state_label(entry.from_state)

    @admin.display(description="to")
    def to_display(self, entry):
        return display.state_label(entry.to_state)


def has_refund_permission(request) -> bool:
    return request.user.has_perm("refunds.refund_orderitem")


def has_confirm_refund_permission(request) -> bool:
    return request.user.has_perm("refunds.confirm_refund_orderitem")
