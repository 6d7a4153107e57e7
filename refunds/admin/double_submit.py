"""Honest answers to a form sent twice: a double click, a second tab, the back button.

The first POST refunds (or approves); the second finds the work done. It must say what
happened — "already queued for refund by you at 10:42:05: €249.00", with the refund linked —
never "Nothing was refunded", which makes a user refund again in the Stripe Dashboard.
"""

from __future__ import annotations

from django.contrib import messages
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext

from .. import selectors
from ..models import Refund, RefundStatus


def clock_time(moment) -> str:
    """`10:42:05` in the active time zone; the date too when it is not today."""
    local = timezone.localtime(moment)
    if local.date() == timezone.localdate():
        return dateformat.format(local, "H:i:s")
    return dateformat.format(local, "Y-m-d H:i:s")


def who(user, request) -> str:
    if user is None:
        return gettext("another user")
    if user.pk == request.user.pk:
        return gettext("you")
    return user.get_username()


def refund_link(refund: Refund):
    url = reverse("admin:refunds_refund_change", args=[refund.pk])
    return format_html('<a href="{}" class="oms-refund-link">{}</a>', url, gettext("refund #%(id)s") % {"id": refund.pk})


def already_requested_message(request, refund: Refund):
    """One refund that a second POST found already made, in words, the refund linked."""
    count = len(refund.items.all())
    values = {
        "count": count,
        "order": refund.order.reference,
        "who": who(refund.created_by, request),
        "time": clock_time(refund.created_at),
        "amount": refund.amount_display,
    }
    if refund.status == RefundStatus.AWAITING_APPROVAL and not count:
        text = gettext(
            "A refund of %(amount)s for order %(order)s was already requested by %(who)s at %(time)s and awaits "
            "approval"
        ) % values
    elif refund.status == RefundStatus.AWAITING_APPROVAL:
        text = ngettext(
            "%(count)d item of order %(order)s was already requested for refund by %(who)s at %(time)s and awaits "
            "approval: %(amount)s",
            "%(count)d items of order %(order)s were already requested for refund by %(who)s at %(time)s and await "
            "approval: %(amount)s",
            count,
        ) % values
    elif not count:
        text = gettext(
            "A refund of %(amount)s for order %(order)s was already queued by %(who)s at %(time)s"
        ) % values
    else:
        text = ngettext(
            "%(count)d item of order %(order)s already queued for refund by %(who)s at %(time)s: %(amount)s",
            "%(count)d items of order %(order)s already queued for refund by %(who)s at %(time)s: %(amount)s",
            count,
        ) % values
    return format_html("{} ({})", text, refund_link(refund))


def report_already_refunded(modeladmin, request, item_ids) -> bool:
    """Say which of `item_ids` a refund made meanwhile already covers; True when it covers them
    all, so the request was done and nothing is left for this POST to do."""
    covered = selectors.live_refunds_of_items(item_ids)
    if not covered:
        return False
    for refund in sorted({refund.pk: refund for refund in covered.values()}.values(), key=lambda r: r.pk):
        level = messages.SUCCESS if refund.created_by_id == request.user.pk else messages.WARNING
        modeladmin.message_user(request, already_requested_message(request, refund), level)
    return set(covered) >= set(item_ids)


def decided_message(request, refund: Refund):
    """A refund approved or rejected before this POST got to it (a double click on "Yes, approve")."""
    values = {"id": refund.pk, "time": clock_time(refund.decided_at) if refund.decided_at else "—"}
    if refund.approved_by_id:
        values["who"] = who(refund.approved_by, request)
        text = gettext("Refund #%(id)s was already approved by %(who)s at %(time)s.") % values
    else:
        values["who"] = who(refund.rejected_by, request)
        text = gettext("Refund #%(id)s was already rejected by %(who)s at %(time)s.") % values
    return format_html("{} ({})", text, refund_link(refund))
