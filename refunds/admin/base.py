"""Shared admin behaviour: records the OMS keeps are shown, never edited or deleted here."""

from __future__ import annotations

import re

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import Http404
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..money import CURRENCIES
from ..models import ItemTransition
from . import display

BIGINT_MAX = 2**63 - 1
_ID_TEXT = re.compile(r"[0-9]{1,19}")


def object_pk(object_id) -> int | None:
    """An admin URL's object id as a primary key, or None for anything that is not one
    (`abc`, `²`, `1.5`, a number beyond bigint): such ids are answered 404, never 500."""
    text = unquote(str(object_id))
    if not _ID_TEXT.fullmatch(text) or not 0 < int(text) <= BIGINT_MAX:
        return None
    return int(text)


def get_object_or_404(modeladmin, request, object_id):
    """`modeladmin`'s object (through its queryset, so its permissions apply) or Http404."""
    pk = object_pk(object_id)
    obj = modeladmin.get_queryset(request).filter(pk=pk).first() if pk is not None else None
    if obj is None:
        raise Http404(f"No {modeladmin.model._meta.verbose_name} with id {object_id!r}.")
    return obj


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

    # The admin's navigation sidebar takes 300 px that the Back Office's tables need at 1280 px
    # (breadcrumbs and the index lead everywhere it did).
    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"is_nav_sidebar_enabled": False, **(extra_context or {})})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return super().change_view(request, object_id, form_url, {"is_nav_sidebar_enabled": False, **(extra_context or {})})


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
    template = "admin/refunds/includes/tabular_readonly.html"

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
    verbose_name = _("transition")

    @admin.display(description=_("transition"))
    def transition_display(self, entry):
        return display.transition(entry.transition)

    @admin.display(description=_("when"))
    def at_display(self, entry):
        return display.when(entry.at)

    @admin.display(description=_("by"))
    def by_display(self, entry):
        return display.actor(entry.by)

    @admin.display(description=_("from"))
    def from_display(self, entry):
        return display.state_label(entry.from_state)

    @admin.display(description=_("to"))
    def to_display(self, entry):
        return display.state_label(entry.to_state)


def has_refund_permission(request) -> bool:
    """May refund, and, where REFUND_REQUIRE_2FA is on, logged in with a second factor."""
    return request.user.has_perm("refunds.refund_orderitem") and not second_factor_missing(request)


# The permissions that move money: refunding, and approving someone else's refund (dual control).
MONEY_MOVING_PERMISSIONS = ("refunds.refund_orderitem", "refunds.approve_refund")


def may_move_money(user) -> bool:
    return any(user.has_perm(permission) for permission in MONEY_MOVING_PERMISSIONS)


def second_factor_missing(request) -> bool:
    """With REFUND_REQUIRE_2FA, a user who may refund or approve must have logged in with a
    second factor (django-otp's middleware sets `user.is_verified()`); without the middleware
    nobody counts as verified, and `refunds.E004` says so at startup."""
    if not app_settings.REFUND_REQUIRE_2FA:
        return False
    user = request.user
    if not may_move_money(user):
        return False
    is_verified = getattr(user, "is_verified", None)
    return not (callable(is_verified) and is_verified())


def has_confirm_refund_permission(request) -> bool:
    return request.user.has_perm("refunds.confirm_refund_orderitem")


def forbidden(modeladmin, request, reason: str = ""):
    """403 as a page of the Back Office (its header, its navigation, what is not allowed and
    where to go), instead of the bare page a raised PermissionDenied gets."""
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the content gets the page's width
        "title": _("Not allowed"),
        "subtitle": None,
        "opts": opts,
        "reason": reason,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, "admin/refunds/forbidden.html", context, status=403)


class CurrencyFilter(admin.SimpleListFilter):
    """Currencies as the Back Office writes them everywhere: upper-case ISO codes (EUR)."""

    title = _("currency")
    parameter_name = "currency"
    field = "currency"

    def lookups(self, request, model_admin):
        # The currencies this OMS accepts, not a SELECT DISTINCT over a million orders (issue 13).
        return [(value, display.currency_code(value)) for value in sorted(CURRENCIES)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class OrderCurrencyFilter(CurrencyFilter):
    parameter_name = "order__currency"

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(order__currency=self.value())
        return queryset
