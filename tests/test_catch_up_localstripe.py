"""Catch-up against localstripe over HTTP: Stripe's refund list, filtered by `created` and paged
with `starting_after` (localstripe's list gains the filter in refunds_dev.emulator)."""

import datetime as dt

import pytest
from django.utils import timezone

from refunds import gateway, services
from refunds.models import ItemState, Refund, RefundStatus
from refunds_dev import stripe_tools

from .factories import paid_order_with_items

pytestmark = [pytest.mark.django_db, pytest.mark.localstripe]


def refund_at_stripe(amount: int = 1000):
    intent = stripe_tools.create_paid_payment_intent(amount=amount, currency="eur")
    return gateway.create_refund(payment_intent=intent, amount=amount, idempotency_key=f"k-{intent}", metadata={})


def test_the_refund_list_pages_through_a_created_window(localstripe):
    made = {refund_at_stripe().id for _ in range(5)}
    now = timezone.now() + dt.timedelta(seconds=1)

    listed, starting_after, pages = [], None, 0
    while True:
        page, has_more = gateway.list_refunds_created(
            since=now - dt.timedelta(minutes=5), until=now, starting_after=starting_after, limit=2
        )
        pages += 1
        listed += [refund.id for refund in page]
        if not has_more:
            break
        starting_after = page[-1].id

    assert made <= set(listed) and len(listed) == len(set(listed))
    assert pages >= 3
    before, _ = gateway.list_refunds_created(since=now - dt.timedelta(days=2), until=now - dt.timedelta(days=1))
    assert before == []


def test_catch_up_settles_refunds_pending_here_from_localstripes_list(localstripe, back_office_user):
    intent = stripe_tools.create_paid_payment_intent(amount=4045, currency="eur")
    order = paid_order_with_items(1000, 2000, 550, stripe_payment_intent_id=intent)
    [refund] = services.request_refund(items=order.items.all(), user=back_office_user)
    services.submit_refund(refund_id=refund.pk)
    # As if Stripe had said pending and its succeeded webhook had been lost.
    Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.PENDING, stripe_event_created_at=None)
    order.items.update(state=ItemState.PAYMENT_REFUND_PENDING)

    report = services.catch_up_refunds(since=timezone.now() - dt.timedelta(minutes=5))

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert set(order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    assert report.changed >= 1 and report.fetched == 0
