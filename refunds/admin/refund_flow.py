"""The Back Office refund flow, shaped like Django's `delete_selected`: the first POST shows a
confirmation page with what `request_refund` would do; the POST with `post=yes` does it.

The page content is `services.preview_refunds`, the same rules `request_refund` applies under
lock, so what the user confirms is what gets refunded. Only the refundable items of a
selection are submitted; the others are reported with the reason.
"""

from __future__ import annotations

import hashlib

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils.translation import gettext, gettext_lazy as _, ngettext

from .. import services
from ..exceptions import RefundError
from ..models import RefundReason, RefundStatus
from ..services import RefundPlan, preview_refunds
from .double_submit import report_already_refunded


class RefundConfirmationForm(forms.Form):
    reason = forms.ChoiceField(
        label=_("Reason"),
        choices=[("", _("— none —")), *RefundReason.choices],
        required=False,
        help_text=_("Sent to Stripe with the refund; optional."),
    )
    note = forms.CharField(
        label=_("Note"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Kept with the refund for the Back Office; not sent to Stripe."),
    )


def fingerprint(plans: list[RefundPlan]) -> str:
    """What the user saw: per order the items and the amount. Compared on submit, so a refund
    never differs from its confirmation (another user may have refunded in between)."""
    seen = "|".join(
        f"{plan.order.pk}:{plan.amount}:{','.join(str(item.pk) for item in plan.items)}"
        for plan in plans
        if plan.can_refund
    )
    return hashlib.sha256(seen.encode()).hexdigest()


def refund_with_confirmation(
    modeladmin,
    request,
    *,
    items,
    action: str | None,
    selected_ids=(),
    title: str,
    cancel_url: str,
):
    """Show the confirmation page, or refund on `post=yes`; None means "done, redirect".

    `action` and `selected_ids` are echoed as hidden fields when the page is an admin action's
    (as `delete_selected` does); a view of its own passes `action=None`.
    """
    plans = preview_refunds(items)
    form = RefundConfirmationForm(request.POST if request.POST.get("post") else None)
    if form.is_bound:
        # The fingerprint is required: a POST without it never saw a confirmation page, so
        # it is shown one instead of refunding what the selection may have become.
        confirmed = request.POST.get("confirmed")
        confirmed_items = confirmed_item_ids(request)
        if not confirmed:
            modeladmin.message_user(
                request,
                gettext("Nothing was refunded: confirm the refund on this page first."),
                messages.WARNING,
            )
        elif confirmed != fingerprint(plans) and report_already_refunded(modeladmin, request, confirmed_items):
            # A second POST of a confirmation the first POST carried out (a double click, a
            # second tab): it says what was done, not that nothing was.
            return None
        elif confirmed != fingerprint(plans):
            modeladmin.message_user(
                request,
                gettext(
                    "The selection changed since the confirmation page was shown (another refund or a "
                    "Stripe update). Nothing was refunded; check the amounts below and confirm again."
                ),
                messages.WARNING,
            )
        elif form.is_valid():
            submit(
                modeladmin, request, plans, reason=form.cleaned_data["reason"], note=form.cleaned_data["note"],
                confirmed_items=confirmed_items,
            )
            return None

    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the content gets the page's width
        "title": title,
        "subtitle": None,
        "opts": opts,
        "plans": plans,
        "refundable_plans": [plan for plan in plans if plan.can_refund],
        "form": form if form.is_bound else RefundConfirmationForm(),
        "fingerprint": fingerprint(plans),
        "confirmed_items": ",".join(str(item.pk) for plan in plans if plan.can_refund for item in plan.items),
        "action": action,
        "selected_ids": list(selected_ids),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "cancel_url": cancel_url,
        "media": modeladmin.media,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(
        request,
        [
            f"admin/{opts.app_label}/{opts.model_name}/refund_confirmation.html",
            f"admin/{opts.app_label}/refund_confirmation.html",
        ],
        context,
    )


def confirmed_item_ids(request) -> set[int]:
    """The items the confirmation page offered to refund (its hidden `confirmed_items`). Used only
    to word the answer to a second POST; what is refunded is guarded by the fingerprint."""
    text = request.POST.get("confirmed_items", "")
    return {int(part) for part in text.split(",") if part.isascii() and part.isdigit() and len(part) <= 19}


def submit(
    modeladmin, request, plans: list[RefundPlan], *, reason: str, note: str, confirmed_items=frozenset()
) -> None:
    for plan in plans:
        for problem in plan.problems:
            modeladmin.message_user(request, problem, messages.WARNING)
        for blocked in plan.blocked:
            modeladmin.message_user(
                request, gettext("%(item)s was not refunded: %(reason)s.") % {"item": blocked.item, "reason": blocked.reason},
                messages.WARNING,
            )

    refundable = [plan for plan in plans if plan.can_refund]
    if not refundable:
        modeladmin.message_user(request, gettext("Nothing was refunded: no selected item can be refunded."), messages.ERROR)
        return
    try:
        refunds = services.request_refund(
            items=[item for plan in refundable for item in plan.items],
            user=request.user,
            reason=reason,
            note=note,
        )
    except RefundError as error:
        # Two POSTs of one confirmation at the same moment: both saw the items refundable, the
        # first refunded them under the order's lock, and this one found them taken.
        requested = confirmed_items or {item.pk for plan in refundable for item in plan.items}
        if not report_already_refunded(modeladmin, request, requested):
            modeladmin.message_user(request, gettext("Nothing was refunded: %(error)s") % {"error": error}, messages.ERROR)
        return

    item_counts = {plan.order.pk: len(plan.items) for plan in refundable}
    orders = {plan.order.pk: plan.order for plan in refundable}
    for refund in refunds:
        count = item_counts.get(refund.order_id, 0)
        # The objects' History pages (django.contrib.admin's LogEntry), as Django's own add and
        # change do: the refund was added, its order changed.
        requested = request_summary(count=count, amount=refund.amount_display, reason=reason)
        if refund.status == RefundStatus.AWAITING_APPROVAL:
            requested += " (awaiting approval)"
        modeladmin.log_addition(request, refund, f"Refund requested: {requested}")
        modeladmin.log_change(request, orders[refund.order_id], f"Refund #{refund.pk} requested: {requested}")
        if refund.status == RefundStatus.AWAITING_APPROVAL:
            modeladmin.message_user(request, awaiting_approval_message(refund, count), messages.WARNING)
            continue
        text = ngettext(
            "%(count)d item of order %(order)s queued for refund: %(amount)s",
            "%(count)d items of order %(order)s queued for refund: %(amount)s",
            count,
        ) % {"count": count, "order": orders[refund.order_id].reference, "amount": refund.amount_display}
        if getattr(refund, "task_enqueued", None) is False:
            # Made and committed; only its task could not be enqueued (services/outbox.py).
            text += f" ({gettext(services.QUEUE_UNREACHABLE)})"
        modeladmin.message_user(request, text, messages.SUCCESS)


def awaiting_approval_message(refund, count: int) -> str:
    return ngettext(
        "%(count)d item of order %(order)s awaits approval: %(amount)s. Another user with the approve "
        "permission must approve it before it is sent to Stripe.",
        "%(count)d items of order %(order)s await approval: %(amount)s. Another user with the approve "
        "permission must approve it before it is sent to Stripe.",
        count,
    ) % {"count": count, "order": refund.order.reference, "amount": refund.amount_display}


def request_summary(*, count: int, amount: str, reason: str) -> str:
    """A refund request in a History entry's words: "2 items, €84.90 (reason: duplicate)"."""
    summary = ngettext("%(count)d item, %(amount)s", "%(count)d items, %(amount)s", count) % {
        "count": count, "amount": amount,
    }
    if reason:
        summary += f" (reason: {RefundReason(reason).label})"
    return summary
