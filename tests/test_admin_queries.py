"""Changelists stay fast: the number of SQL queries does not grow with rows or items per order."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from refunds import services
from refunds.models import Refund, RefundOrigin, RefundStatus, StripeEvent

from . import stripe_payloads
from .factories import paid_order_with_items

pytestmark = pytest.mark.django_db

CHANGELISTS = ["order", "orderitem", "refund", "stripeevent", "itemtransition", "attention"]


def add_orders(count: int, *, items_per_order: int, user, fake_stripe) -> None:
    """Orders with items in several states, Back Office and Stripe Dashboard refunds and events."""
    fake_stripe.next_status = "pending"
    for _ in range(count):
        order = paid_order_with_items(*([1000] * items_per_order))
        first, *_ = order.items.order_by("pk")
        (refund,) = services.request_refund(items=[first], user=user)
        refund = services.submit_refund(refund_id=refund.pk)
        payload = stripe_payloads.event("refund.updated", stripe_payloads.refund_object_for(refund, status="pending"))
        StripeEvent.objects.create(stripe_event_id=payload["id"], type=payload["type"], payload=payload, refund=refund)
        services.open_case(kind="stuck_pending", refund=refund, detail="pending for days")
        Refund.objects.create(
            order=order, amount=100, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
            stripe_refund_id=f"re_dashboard{order.pk:06d}", status=RefundStatus.SUCCEEDED,
        )


def queries_for(client, model: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse(f"admin:refunds_{model}_changelist"))
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("model", CHANGELISTS)
def test_changelist_queries_do_not_grow_with_rows(client, back_office_user, fake_stripe, model):
    client.force_login(back_office_user)
    add_orders(1, items_per_order=2, user=back_office_user, fake_stripe=fake_stripe)
    queries_for(client, model)  # warm the session and content-type caches
    one_row = queries_for(client, model)

    add_orders(49, items_per_order=5, user=back_office_user, fake_stripe=fake_stripe)
    fifty_rows = queries_for(client, model)

    assert fifty_rows == one_row
