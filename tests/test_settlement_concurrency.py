"""Settlement runs at the same time as each other and as Stripe updates (real row locks: PostgreSQL)."""

import datetime as dt
import threading
from collections import Counter

import pytest
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from refunds import services
from refunds.models import ItemState, ItemTransition, Order, OrderItem, Refund, RefundStatus

from .concurrency import in_thread, run_in_threads
from .conftest import skip_unless_postgres

pytestmark = pytest.mark.django_db(transaction=True)


def due_orders(count: int, *, items_per_order: int) -> list[Refund]:
    """`count` orders whose items all succeeded 8 days ago, one succeeded refund each."""
    succeeded_at = timezone.now() - dt.timedelta(days=8)
    orders = Order.objects.bulk_create(
        Order(reference=f"CC-{n:05d}", currency="eur", stripe_payment_intent_id=f"pi_cc{n:05d}") for n in range(count)
    )
    items = OrderItem.objects.bulk_create(
        OrderItem(order=order, sku=f"SKU-{order.pk}-{n}", name="Item", amount=1000,
                  state=ItemState.PAYMENT_REFUND_SUCCEEDED, state_changed_at=succeeded_at)
        for order in orders for n in range(items_per_order)
    )
    refunds = Refund.objects.bulk_create(
        Refund(order=order, amount=1000 * items_per_order, currency="eur", status=RefundStatus.SUCCEEDED,
               stripe_refund_id=f"re_cc{order.pk}")
        for order in orders
    )
    refund_of_order = {refund.order_id: refund for refund in refunds}
    Refund.items.through.objects.bulk_create(
        Refund.items.through(refund=refund_of_order[item.order_id], orderitem=item) for item in items
    )
    return refunds


def test_two_runs_at_once_move_each_of_1000_items_exactly_once():
    skip_unless_postgres()
    due_orders(250, items_per_order=4)  # items of one refund end up in both runs' batches

    def finalize():
        return services.finalize_due_refunds(batch_size=50)

    results = run_in_threads(finalize, finalize)

    assert all(isinstance(moved, int) for moved in results), results
    assert sum(results) == 1000
    assert OrderItem.objects.filter(state=ItemState.PAYMENT_REFUNDED).count() == 1000
    audit = Counter(ItemTransition.objects.filter(transition="confirm_refund").values_list("item_id", flat=True))
    assert len(audit) == 1000 and set(audit.values()) == {1}
    # Each row names the item's own refund.
    assert not ItemTransition.objects.exclude(refund__order_id=F("item__order_id")).exists()


def test_items_of_a_refund_being_updated_from_stripe_wait_for_the_next_run_without_blocking_it():
    skip_unless_postgres()
    busy, *others = due_orders(3, items_per_order=2)
    locked, release = threading.Event(), threading.Event()

    def hold_refund_like_a_webhook():
        # A webhook or sync_refund_from_stripe locks the refund, then the order and items.
        with transaction.atomic():
            Refund.objects.select_for_update().get(pk=busy.pk)
            locked.set()
            release.wait(timeout=60)

    holder = in_thread(hold_refund_like_a_webhook)
    assert locked.wait(timeout=30)
    try:
        moved = services.finalize_due_refunds()
        busy_states = set(busy.items.values_list("state", flat=True))
    finally:
        release.set()
        holder.result()

    assert moved == 4
    assert busy_states == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    assert services.finalize_due_refunds() == 2
    assert OrderItem.objects.filter(state=ItemState.PAYMENT_REFUNDED).count() == 6


def test_an_item_locked_by_another_transaction_is_skipped_not_waited_for():
    skip_unless_postgres()
    due_orders(2, items_per_order=1)
    first = OrderItem.objects.order_by("pk").first()
    locked, release = threading.Event(), threading.Event()

    def hold_item():
        with transaction.atomic():
            OrderItem.objects.select_for_update().get(pk=first.pk)
            locked.set()
            release.wait(timeout=60)

    holder = in_thread(hold_item)
    assert locked.wait(timeout=30)
    try:
        moved = services.finalize_due_refunds()
    finally:
        release.set()
        holder.result()

    assert moved == 1
    assert OrderItem.objects.get(pk=first.pk).state == ItemState.PAYMENT_REFUND_SUCCEEDED
