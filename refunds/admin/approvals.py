"""Dual control in the Back Office: "Approve selected refunds" and "Reject selected refunds" on
the Refund changelist, each with a confirmation page shaped like Django's `delete_selected`
(a rejection takes a note). The rule — another user than the requester, with
`refunds.approve_refund` — is the service's (`services.approve_refund` / `reject_refund`);
this page only shows up front whom it will refuse, and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy as _

from .. import services
from ..exceptions import RefundError
from ..models import Refund, RefundStatus
from .double_submit import decided_message

APPROVE, REJECT = "approve", "reject"


class ApproveForm(forms.Form):
    note = forms.CharField(
        label=_("Note"), required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Kept with the refund (optional)."),
    )


class RejectForm(forms.Form):
    note = forms.CharField(
        label=_("Why rejected"), required=True, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Required. Kept with the refund; the requester reads it there."),
    )


@dataclass
class Decision:
    refund: Refund
    refused: str = ""  # why this user cannot decide it; empty when they can


def decisions_for(request, queryset) -> list[Decision]:
    decisions = []
    for refund in queryset.select_related("order", "created_by").prefetch_related("items").order_by("pk"):
        refused = ""
        if refund.status != RefundStatus.AWAITING_APPROVAL:
            refused = gettext("its status is “%(status)s”, not awaiting approval") % {"status": refund.get_status_display()}
        elif refund.created_by_id == request.user.pk:
            refused = gettext("you requested it yourself; another user must decide it")
        decisions.append(Decision(refund, refused))
    return decisions


class ApprovalActions:
    """Mixed into the Refund admin: the two actions and their confirmation page."""

    def has_approve_permission(self, request):
        return request.user.has_perm("refunds.approve_refund")

    @admin.action(permissions=["approve"], description=_("Approve selected refunds"))
    def approve_refunds(self, request, queryset):
        return self._decide(request, queryset, APPROVE)

    @admin.action(permissions=["approve"], description=_("Reject selected refunds"))
    def reject_refunds(self, request, queryset):
        return self._decide(request, queryset, REJECT)

    def _decide(self, request, queryset, decision: str):
        decisions = decisions_for(request, queryset)
        form_class = ApproveForm if decision == APPROVE else RejectForm
        form = form_class(request.POST if request.POST.get("post") else None)
        if form.is_bound and form.is_valid():
            self._apply(request, decisions, decision, note=form.cleaned_data["note"])
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "is_nav_sidebar_enabled": False,  # the content gets the page's width
            "title": gettext("Approve refunds") if decision == APPROVE else gettext("Reject refunds"),
            "subtitle": None,
            "opts": opts,
            "decision": decision,
            "decisions": decisions,
            "decidable": [d for d in decisions if not d.refused],
            "form": form if form.is_bound else form_class(),
            "action": f"{decision}_refunds",
            "selected_ids": [d.refund.pk for d in decisions],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "cancel_url": reverse("admin:refunds_refund_changelist"),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, f"admin/{opts.app_label}/{opts.model_name}/approval_confirmation.html", context)

    def _apply(self, request, decisions: list[Decision], decision: str, *, note: str) -> None:
        for item in decisions:
            refund = item.refund
            try:
                if decision == APPROVE:
                    refund = services.approve_refund(refund=refund.pk, user=request.user, note=note)
                else:
                    refund = services.reject_refund(refund=refund.pk, user=request.user, note=note)
            except RefundError as error:
                decided = Refund.objects.select_related("approved_by", "rejected_by").get(pk=refund.pk)
                if decided.approved_by_id or decided.rejected_by_id:
                    # Decided before this POST got to it: a double click, or another approver.
                    same = (decided.approved_by_id if decision == APPROVE else decided.rejected_by_id) == request.user.pk
                    self.message_user(
                        request, decided_message(request, decided), messages.SUCCESS if same else messages.WARNING
                    )
                else:
                    text = (
                        gettext("Refund #%(id)s was not approved: %(error)s") if decision == APPROVE
                        else gettext("Refund #%(id)s was not rejected: %(error)s")
                    )
                    self.message_user(request, text % {"id": refund.pk, "error": error}, messages.ERROR)
                continue
            order = refund.order
            if decision == APPROVE:
                self.log_change(request, refund, f"Refund approved{': ' + note if note else ''}")
                self.message_user(
                    request,
                    gettext("Refund #%(id)s of order %(order)s approved: %(amount)s is being sent to Stripe.")
                    % {"id": refund.pk, "order": order.reference, "amount": refund.amount_display},
                    messages.SUCCESS,
                )
            else:
                self.log_change(request, refund, f"Refund rejected: {note}")
                self.message_user(
                    request,
                    gettext(
                        "Refund #%(id)s of order %(order)s rejected: nothing was sent to Stripe, its items are back "
                        "where they were."
                    ) % {"id": refund.pk, "order": order.reference},
                    messages.SUCCESS,
                )