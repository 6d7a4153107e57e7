"""Reconciliation against localstripe over HTTP: a lost task ends with exactly one Stripe refund.

localstripe ignores idempotency keys, so only our own rules (one attempt at a time, a lookup by
metadata before sending again) keep a customer from being refunded twice.
"""

import datetime as dt

import pytest
from django.utils import timezone

from refunds import gateway, services
from refunds_dev import stripe_tools
from refunds.models import ItemState, Refund, RefundStatus
from refunds.tasks import reconcile_refunds

from .factories import paid_order_with_items

pytestmark = [pytest.mark.django_db, pytest.mark.localstripe]


@pytest.fixture
def localstripe_order(localstripe):
    intent = stripe_tools.create_paid_payment_intent(amount=4045, currency="eur")
    return paid_order_with_items(1000, 2000, 550, stripe_payment_intent_id=intent)


def at_stripe(order):
    return gateway.list_refunds(payment_intent=order.stripe_payment_intent_id)


def backdate(refund, **delta):
    moment = timezone.now() - dt.timedelta(**delta)
    Refund.objects.filter(pk=refund.pk).update(created_at=moment, status_changed_at=moment)


def test_a_refund_whose_task_was_lost_ends_with_exactly_one_refund_at_stripe(localstripe_order, back_office_user):
    # Not a transaction=True test: the on_commit task never runs, as when the broker was down.
    [refund] = services.request_refund(items=localstripe_order.items.all(), user=back_office_user)
    assert at_stripe(localstripe_order) == []
    backdate(refund, minutes=6)

    reconcile_refunds.delay()
    reconcile_refunds.delay()

    refund.refresh_from_db()
    [stripe_refund] = at_stripe(localstripe_order)
    assert (stripe_refund.id, stripe_refund.amount, stripe_refund.status) == (refund.stripe_refund_id, 4045, "succeeded")
    assert stripe_refund.metadata["oms_refund_id"] == str(refund.pk)
    assert refund.status == RefundStatus.SUCCEEDED
    assert set(refund.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_a_refund_localstripe_made_before_the_worker_died_is_found_not_made_again(localstripe_order, back_office_user):
    [refund] = services.request_refund(items=localstripe_order.items.all(), user=back_office_user)
    # The lost worker's attempt: counted and committed, sent, then the process died.
    Refund.objects.filter(pk=refund.pk).update(submit_attempts=1, last_submitted_at=timezone.now() - dt.timedelta(days=2))
    sent = gateway.create_refund(
        payment_intent=localstripe_order.stripe_payment_intent_id,
        amount=refund.amount,
        idempotency_key=refund.idempotency_key,
        metadata=gateway.refund_metadata(
            order_reference=localstripe_order.reference, refund_id=refund.pk,
            idempotency_key=refund.idempotency_key, item_ids=list(refund.items.values_list("pk", flat=True)),
        ),
    )
    backdate(refund, days=2)

    reconcile_refunds.delay()

    refund.refresh_from_db()
    assert [r.id for r in at_stripe(localstripe_order)] == [sent.id]
    assert (refund.stripe_refund_id, refund.status) == (sent.id, RefundStatus.SUCCEEDED)
