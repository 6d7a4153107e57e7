"""Template filters for the Back Office pages: `{{ amount|money:currency }}`, `{{ state|state_label }}`."""

from django import template

from ..admin import display

register = template.Library()


@register.filter
def money(amount, currency):
    return display.money(amount, currency)


@register.filter
def state_label(state):
    return display.state_label(state)


@register.filter
def refund_status_label(status):
    return display.refund_status_label(status)


@register.filter
def failure_reason_in_words(failure_reason):
    return display.failure_reason_in_words(failure_reason)


@register.filter
def stripe_refund_link(stripe_refund_id):
    return display.stripe_refund_link(stripe_refund_id)


@register.filter
def duration(value):
    """A timedelta as people say it: `15 minutes`, `1 day 12 hours`."""
    from ..management.console import duration_text

    return duration_text(value) if value else ""
@register.inclusion_tag("admin/refunds/includes/attention_notice.html", takes_context=True)
def attention_notice(context):
    """The number of open needs-attention cases, per kind, for users who may see them."""
    from django.urls import reverse

    from .. import selectors
    from ..models import AttentionKind

    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not (user.has_perm("refunds.view_attentioncase") or user.has_perm("refunds.view_attention")):
        return {"show": False}
    counts = selectors.open_case_counts()
    return {
        "show": True,
        "total": sum(counts.values()),
        "kinds": [{"label": label, "count": counts[kind]} for kind, label in AttentionKind.choices if counts.get(kind)],
        "url": reverse("admin:refunds_attention_changelist"),
    }


@register.filter
def when(moment):
    """A moment to the second, in the active time zone and language."""
    return display.when(moment)


@register.filter
def transition_label(name):
    return display.transition(name)
