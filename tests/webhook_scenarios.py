"""Our side of webhook tests: refunds in the state a webhook finds them in."""

from __future__ import annotations

from refunds import services
from refunds.models import ItemTransition, OrderItem, Refund, RefundStatus


def requested_refund(items, user) -> Refund:
    """A refund the Back Office requested; its submission task not yet run (no Stripe id)."""
    [refund] = services.request_refund(items=items, user=user)
    return refund


def submitted_refund(items, user, *, stripe_refund_id: str, status: str = RefundStatus.PENDING) -> Refund:
    """A refund Stripe accepted with `status`, as submit_refund leaves it."""
    refund = requested_refund(items, user)
    Refund.objects.filter(pk=refund.pk).update(stripe_refund_id=stripe_refund_id, status=status)
    refund.refresh_from_db()
    return refund


def force_state(item: OrderItem, state: str) -> None:
    """Put an item in `state` without a transition (the field is protected on instances)."""
    OrderItem.objects.filter(pk=item.pk).update(state=state)


def states(items) -> list[str]:
    return list(OrderItem.objects.filter(pk__in=[item.pk for item in items]).order_by("pk").values_list("state", flat=True))


def stripe_event_transitions(**filters):
    return ItemTransition.objects.filter(by__startswith="Stripe event ", **filters)
