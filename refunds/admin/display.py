"""How the Back Office shows OMS values: money in the order's currency, states as coloured
labels, Stripe ids as links to the Stripe Dashboard, failure reasons in words."""

from __future__ import annotations

from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator
from django.utils.translation import gettext

from ..conf import app_settings
from ..models import ItemState, RefundOrigin, RefundStatus, transition_label
from ..money import format_money

# Stripe's refund `failure_reason` values: https://docs.stripe.com/api/refunds/object#refund_object-failure_reason
STRIPE_FAILURE_REASONS = {
    "charge_for_pending_refund_disputed": "the customer disputed the charge while the refund was pending",
    "declined": "the card issuer declined the refund",
    "expired_or_canceled_card": "the card has expired or was canceled",
    "insufficient_funds": "the Stripe balance was too low to pay the refund",
    "lost_or_stolen_card": "the card was reported lost or stolen",
    "merchant_request": "the refund was canceled on request",
    "unknown": "Stripe gave no reason",
    # Our own, when Stripe reports a status without a failure_reason.
    RefundStatus.FAILED: "Stripe reported the refund failed, without a reason",
    RefundStatus.CANCELED: "the refund was canceled",
}


def first_line(text: str, limit: int = 120) -> str:
    """The headline of a stored error (the webhook keeps the traceback below it)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return Truncator(line).chars(limit)


def warning(text: str):
    """A refund's warning lines (refunds.services.stripe_view), or a dash."""
    if not text:
        return "—"
    return format_html_join(mark_safe("<br>"), '<span class="oms-warning">{}</span>', ((line,) for line in text.splitlines()))


def money(amount: int | None, currency: str) -> str:
    return "—" if amount is None else format_money(amount, currency)


def currency_code(currency: str) -> str:
    """One style everywhere in the Back Office: EUR, never eur (Stripe's own lower case stays in data)."""
    return (currency or "").upper()


def money_with_others(summary, part: str):
    """`summary.refunded` or `.in_flight` (selectors.OrderMoney) in the order's currency, and
    apart from it, never added, what a refund in another currency holds."""
    amount = money(getattr(summary, part), summary.currency)
    index = 0 if part == "refunded" else 1
    others = [
        format_money(values[index], currency) for currency, values in sorted(summary.other_currencies.items())
        if values[index]
    ]
    if not others:
        return amount
    return format_html(
        '{} <span class="oms-other-currency-amount">{}</span>', amount, " + ".join(others)
    )


def failure_reason_in_words(failure_reason: str) -> str:
    if not failure_reason:
        return ""
    if failure_reason.startswith("stripe_error: "):
        return gettext("Stripe refused the refund (%(error)s)") % {"error": failure_reason.removeprefix("stripe_error: ")}
    return STRIPE_FAILURE_REASONS.get(failure_reason, failure_reason.replace("_", " "))


def _label(choices, value: str, css: str):
    """A stored value as its coloured label; the class carries the value for styling."""
    try:
        label = choices(value).label
    except ValueError:
        label = value
    return format_html('<span class="{0} {0}--{1}">{2}</span>', css, value, label)


def state_label(state: str):
    return _label(ItemState, state, "oms-state")


def refund_status_label(status: str):
    return _label(RefundStatus, status, "oms-status")


def origin_label(origin: str):
    if origin == RefundOrigin.STRIPE_DASHBOARD:
        return format_html('<span class="oms-outside">{}</span>', RefundOrigin(origin).label)
    return RefundOrigin(origin).label if origin in RefundOrigin.values else origin


def is_test_mode() -> bool:
    return app_settings.STRIPE_SECRET_KEY.startswith(("sk_test_", "rk_test_"))


def stripe_dashboard_url(stripe_refund_id: str) -> str:
    """https://dashboard.stripe.com/[test/]refunds/<id>; test mode follows the secret key."""
    mode = "test/" if is_test_mode() else ""
    return f"https://dashboard.stripe.com/{mode}refunds/{stripe_refund_id}"


def stripe_refund_link(stripe_refund_id: str | None):
    if not stripe_refund_id:
        return gettext("— (not yet at Stripe)")
    return format_html(
        '<a href="{}" target="_blank" rel="noopener noreferrer" class="oms-stripe-link">{}</a>',
        stripe_dashboard_url(stripe_refund_id),
        stripe_refund_id,
    )


def admin_link(obj, text=None):
    if obj is None:
        return "—"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else obj)


def approval(refund) -> str:
    """Dual control on a refund's page: who approved or rejected it, or that it waits."""
    if refund.approved_by_id:
        return gettext("approved by %(user)s") % {"user": refund.approved_by.get_username()}
    if refund.rejected_by_id:
        return gettext("rejected by %(user)s") % {"user": refund.rejected_by.get_username()}
    if refund.status == RefundStatus.AWAITING_APPROVAL:
        return gettext("awaiting approval by a second user")
    return "—"


def transition(name: str):
    """A transition in a Back Office user's words ("refund started"), its code name on hover."""
    return format_html('<span class="oms-transition" title="{}">{}</span>', name, transition_label(name))


def when(moment) -> str:
    """A moment of the audit, to the second, in the active time zone."""
    if moment is None:
        return "—"
    # ISO 8601 in every language (DIN 5008 writes it too): unambiguous, and sorts as it reads.
    local = timezone.localtime(moment)
    # Date and time each on one line; in a narrow column the time goes below the date.
    return format_html(
        '<span class="oms-when"><span>{}</span> <span>{}</span></span>',
        dateformat.format(local, "Y-m-d"), dateformat.format(local, "H:i:s"),
    )


def actor(by: str):
    """Who fired a transition; a long "Stripe event evt_…" may break anywhere."""
    return format_html('<span class="oms-actor">{}</span>', by)
