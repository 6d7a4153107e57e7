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
