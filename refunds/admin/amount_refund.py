"""The order page's "Refund an amount": money back that is tied to no item (a price adjustment,
a shipping-only refund), typed in the order's currency and parsed exactly
(`money.parse_major_units`), then one call to `services.request_amount_refund`."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, gettext_lazy as _

from .. import selectors, services
from ..exceptions import AlreadyRequested, RefundError
from .base import forbidden
from .double_submit import already_requested_message
from ..models import RefundReason, RefundStatus
from ..money import AmountParseError, exponent, format_money, major_units, parse_major_units


class AmountRefundForm(forms.Form):
    # A token per page view: the same form sent twice makes one refund (request_amount_refund).
    request_key = forms.RegexField(regex=r"^[0-9a-f]{32}$", widget=forms.HiddenInput, required=False)
    amount = forms.CharField(label=_("Amount"), max_length=32)
    reason = forms.ChoiceField(
        label=_("Reason"), choices=[("", _("— none —")), *RefundReason.choices], required=False,
        help_text=_("Sent to Stripe with the refund; optional."),
    )
    note = forms.CharField(
        label=_("Note"), required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Why this amount: kept with the refund for the Back Office; not sent to Stripe."),
    )

    def __init__(self, *args, currency: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["request_key"].initial = uuid.uuid4().hex
        self.currency = currency
        places = exponent(currency)
        example = major_units(1200 if places == 0 else 1250 * 10 ** (places - 2), currency)
        self.fields["amount"].help_text = (
            gettext("In %(currency)s, for example %(example)s; a point before decimals, commas between thousands allowed.")
            % {"currency": currency.upper(), "example": example}
        )
        self.fields["amount"].widget.attrs.update(inputmode="decimal", autocomplete="off", size=14)

    def clean_amount(self) -> int:
        try:
            return parse_major_units(self.cleaned_data["amount"], self.currency)
        except AmountParseError as error:
            raise forms.ValidationError(str(error)) from None


class AmountRefundView:
    """Mixed into the Order admin: the URL `<order id>/refund-amount/` and its page."""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/refund-amount/",
                self.admin_site.admin_view(self.amount_refund_view),
                name="refunds_order_refund_amount",
            ),
            *super().get_urls(),
        ]

    def amount_refund_view(self, request, object_id):
        order = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not (self.has_view_permission(request, order) and self.has_refund_permission(request)):
            return forbidden(self, request, gettext("You may not refund orders."))
        order_url = reverse("admin:refunds_order_change", args=[order.pk])
        form = AmountRefundForm(request.POST or None, currency=order.currency)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                refund = services.request_amount_refund(
                    order=order.pk, amount=data["amount"], user=request.user, reason=data["reason"], note=data["note"],
                    request_key=data["request_key"] or "",
                )
            except AlreadyRequested as done:
                self.message_user(request, already_requested_message(request, done.refund), messages.SUCCESS)
                return HttpResponseRedirect(order_url)
            except RefundError as error:
                form.add_error(None, gettext("Nothing was refunded: %(error)s") % {"error": error})
            else:
                self._report(request, order, refund)
                return HttpResponseRedirect(order_url)

        captured = services.captured_amount(order, list(order.items.all()))
        committed = selectors.live_refunds([order.pk]).committed(order)
        threshold = services.approval_threshold(order.currency)
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "is_nav_sidebar_enabled": False,  # the content gets the page's width
            "title": gettext("Refund an amount of order %(order)s") % {"order": order.reference},
            "subtitle": None,
            "opts": opts,
            "original": order,
            "form": form,
            "captured": format_money(captured, order.currency),
            "committed": format_money(committed, order.currency),
            "available": format_money(max(captured - committed, 0), order.currency),
            "threshold": format_money(threshold, order.currency) if threshold is not None else "",
            "cancel_url": order_url,
            "media": self.media + form.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/refunds/order/amount_refund.html", context)

    def _report(self, request, order, refund) -> None:
        waits = refund.status == RefundStatus.AWAITING_APPROVAL
        summary = f"{refund.amount_display}, no item" + (" (awaiting approval)" if waits else "")
        self.log_addition(request, refund, f"Amount refund requested: {summary}")
        self.log_change(request, order, f"Refund #{refund.pk} requested: {summary}")
        if waits:
            self.message_user(
                request,
                gettext(
                    "Refund of %(amount)s for order %(order)s awaits approval: another user with the approve "
                    "permission must approve it before it is sent to Stripe."
                ) % {"amount": refund.amount_display, "order": order.reference},
                messages.WARNING,
            )
        else:
            self.message_user(
                request,
                gettext("Refund of %(amount)s for order %(order)s queued.")
                % {"amount": refund.amount_display, "order": order.reference},
                messages.SUCCESS,
            )
