"""The "Needs attention" page, /admin/refunds/attention/: open cases newest first, counts per
kind, links to the refund and the order, and "Resolve" with a note (services.resolve_case,
audited on the case and in its History). The admin index says how many cases are open.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator
from django.utils.translation import gettext, gettext_lazy as _, ngettext

from .. import selectors, services
from ..exceptions import RefundError
from ..models import Attention, AttentionKind
from ..services.attention import KIND_HELP
from . import display
from .base import ReadOnlyAdmin

VIEW_PERMISSION = "refunds.view_attentioncase"
RESOLVE_PERMISSION = "refunds.resolve_attentioncase"


class CaseStatusFilter(admin.SimpleListFilter):
    """Open cases unless asked otherwise: the page is a work queue."""

    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("open", _("open")), ("resolved", _("resolved")), ("all", _("all"))]

    def queryset(self, request, queryset):
        value = self.value() or "open"
        if value == "open":
            return queryset.filter(resolved_at__isnull=True)
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset

    def choices(self, changelist):
        choices = list(super().choices(changelist))[1:]  # no "All" that would mean "open"
        if self.value() is None:
            choices[0]["selected"] = True
        return choices


class ResolveForm(forms.Form):
    note = forms.CharField(
        label=_("What was done"), widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Required: kept with the case (who resolved it and when are recorded too)."),
    )


@admin.register(Attention)
class AttentionAdmin(ReadOnlyAdmin):
    list_display = ["opened_display", "kind_display", "order_link", "refund_link", "detail_display", "status_display"]
    list_display_links = ["opened_display"]
    # The filters are links above the list (admin/refunds/attention/change_list.html), so the
    # table has the page's width for the case's detail.
    list_filter = [CaseStatusFilter, "kind"]
    search_fields = ["order__reference", "=refund__stripe_refund_id", "detail"]
    list_select_related = ["order", "refund", "resolved_by"]
    ordering = ["-opened_at", "-pk"]
    actions = ["resolve_cases"]
    fieldsets = [
        (None, {"fields": ["kind_display", "kind_help", "detail", "order_link", "refund_link", "event_link", "opened_at"]}),
        ("Resolution", {"fields": ["status_display", "resolution_note"]}),
        ("Alert", {"fields": ["alert_display", "alert_attempts", "alert_error"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(VIEW_PERMISSION) or super().has_view_permission(request, obj)

    def has_resolve_permission(self, request):
        return request.user.has_perm(RESOLVE_PERMISSION)

    # --- columns and fields ---------------------------------------------------------------
    @admin.display(description=_("opened"), ordering="opened_at")
    def opened_display(self, case):
        return display.when(case.opened_at)

    @admin.display(description=_("kind"), ordering="kind")
    def kind_display(self, case):
        return format_html('<span class="oms-case oms-case--{}">{}</span>', case.kind, case.get_kind_display())

    @admin.display(description=_("what it means"))
    def kind_help(self, case):
        return KIND_HELP.get(case.kind, "")

    @admin.display(description=_("order"), ordering="order__reference")
    def order_link(self, case):
        return display.admin_link(case.order, case.order.reference) if case.order_id else "—"

    @admin.display(description=_("refund"))
    def refund_link(self, case):
        return display.admin_link(case.refund) if case.refund_id else "—"

    @admin.display(description=_("Stripe event"))
    def event_link(self, case):
        return display.admin_link(case.event, case.event.stripe_event_id) if case.event_id else "—"

    @admin.display(description=_("detail"))
    def detail_display(self, case):
        return Truncator(case.detail).chars(240)

    @admin.display(description=_("status"), ordering="resolved_at")
    def status_display(self, case):
        if case.resolved_at is None:
            return format_html('<span class="oms-case-open">{}</span>', gettext("open"))
        if case.resolved_by_id:
            text = gettext("resolved by %(user)s,") % {"user": case.resolved_by.get_username()}
        else:
            text = gettext("resolved by itself,")
        return format_html("{} {}", text, display.when(case.resolved_at))

    @admin.display(description=_("alert"))
    def alert_display(self, case):
        if case.alert_sent_at:
            return format_html("{} {}", gettext("sent"), display.when(case.alert_sent_at))
        return gettext("not sent yet (retried; reconciliation sends it)") if case.alert_attempts else gettext("queued")

    # --- the page: counts per kind above the list -------------------------------------------
    def changelist_view(self, request, extra_context=None):
        counts = selectors.open_case_counts()
        url = reverse("admin:refunds_attention_changelist")
        status = request.GET.get("status", "open")
        kind = request.GET.get("kind__exact", "")
        summary = [
            {
                "kind": value, "label": label, "count": counts.get(value, 0), "selected": value == kind,
                "url": f"{url}?{urlencode({'kind__exact': value, 'status': status})}",
            }
            for value, label in AttentionKind.choices
        ]
        statuses = [
            {"label": label, "selected": value == status,
             "url": f"{url}?{urlencode({'status': value, **({'kind__exact': kind} if kind else {})})}"}
            for value, label in (("open", gettext("open")), ("resolved", gettext("resolved")), ("all", gettext("all")))
        ]
        extra_context = {
            **(extra_context or {}),
            "kind_counts": summary,
            "statuses": statuses,
            "all_kinds_url": f"{url}?{urlencode({'status': status})}",
            "kind_selected": bool(kind),
            "open_total": sum(counts.values()),
            "title": gettext("Needs attention"),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_resolve": self.has_resolve_permission(request),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # --- Resolve ----------------------------------------------------------------------------
    @admin.action(permissions=["resolve"], description=_("Resolve selected cases"))
    def resolve_cases(self, request, queryset):
        cases = list(queryset.select_related("order", "refund").order_by("-opened_at", "-pk"))
        form = ResolveForm(request.POST if request.POST.get("post") else None)
        if form.is_bound and form.is_valid():
            note = form.cleaned_data["note"]
            resolved = 0
            for case in cases:
                try:
                    services.resolve_case(case=case.pk, user=request.user, note=note)
                except RefundError as error:
                    self.message_user(request, str(error), messages.WARNING)
                    continue
                self.log_change(request, case, f"Resolved: {note}")
                resolved += 1
            if resolved:
                self.message_user(
                    request,
                    ngettext("%(count)d case resolved.", "%(count)d cases resolved.", resolved) % {"count": resolved},
                    messages.SUCCESS,
                )
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "is_nav_sidebar_enabled": False,  # the content gets the page's width
            "title": gettext("Resolve cases"),
            "subtitle": None,
            "opts": opts,
            "cases": cases,
            "form": form if form.is_bound else ResolveForm(),
            "action": "resolve_cases",
            "selected_ids": [case.pk for case in cases],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": reverse("admin:refunds_attention_changelist"),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/refunds/attention/resolve_confirmation.html", context)


# The admin index says how many cases are open (admin/refunds/index.html adds it above the app
# list). A host project whose admin has an index template of its own can add
# `{% load refunds_admin %}{% attention_notice %}` to it instead.
if admin.site.index_template is None:
    admin.site.index_template = "admin/refunds/index.html"
