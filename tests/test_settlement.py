"""Settlement: items `payment refund succeeded` for the settlement period become `payment refunded`."""

import datetime as dt
import logging

import pytest

from refunds import services
from refunds.models import ItemState, ItemTransition, OrderItem, RefundStatus
from refunds.tasks import finalize_refunds
from refunds.services import Actor

from .factories import paid_order_with_items

pytestmark = pytest.mark.django_db

SUCCEEDED_AT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def refund_now(items, user, fake_stripe, status="succeeded"):
    """A Back Office refund of `items`, sent to Stripe, which answers `status`."""
    fake_stripe.next_status = status
    [refund] = services.request_refund(items=items, user=user)
    return services.submit_refund(refund_id=refund.pk)


@pytest.fixture
def succeeded_refund(paid_order, back_office_user, fake_stripe, time_machine):
    """The whole DE--1001-like order refunded; Stripe said succeeded at SUCCEEDED_AT."""
    time_machine.move_to(SUCCEEDED_AT, tick=False)
    return refund_now(paid_order.items.all(), back_office_user, fake_stripe)


def states(order):
    return list(order.items.order_by("pk").values_list("state", flat=True))


def test_an_item_succeeded_6_days_23_hours_ago_stays(succeeded_refund, paid_order, time_machine):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=6, hours=23), tick=False)

    assert finalize_refunds.delay().get() == 0
    assert states(paid_order) == [ItemState.PAYMENT_REFUND_SUCCEEDED] * 3


def test_an_item_succeeded_7_days_and_a_minute_ago_is_payment_refunded(succeeded_refund, paid_order, time_machine):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)

    assert finalize_refunds.delay().get() == 3
    assert states(paid_order) == [ItemState.PAYMENT_REFUNDED] * 3
    assert set(paid_order.items.values_list("state_changed_at", flat=True)) == {
        SUCCEEDED_AT + dt.timedelta(days=7, minutes=1)
    }


def test_each_finalized_item_has_one_audit_row_naming_the_settlement_timeout(succeeded_refund, paid_order, time_machine):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=8), tick=False)

    finalize_refunds.delay()

    rows = ItemTransition.objects.filter(transition="confirm_refund")
    assert sorted(rows.values_list("item_id", flat=True)) == sorted(paid_order.items.values_list("pk", flat=True))
    assert set(rows.values_list("from_state", "to_state", "by", "by_user", "refund_id", "at")) == {(
        ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_REFUNDED, "settlement timeout", None,
        succeeded_refund.pk, SUCCEEDED_AT + dt.timedelta(days=8),
    )}


def test_succeeded_then_failed_then_succeeded_restarts_the_clock(succeeded_refund, paid_order, time_machine):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=3), tick=False)
    # "Previously successful refunds may be declined", then Stripe reports success again.
    services.apply_refund_status(refund=succeeded_refund, status=RefundStatus.FAILED, by=Actor.stripe_event("evt_1"))
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=4), tick=False)
    services.apply_refund_status(refund=succeeded_refund, status=RefundStatus.SUCCEEDED, by=Actor.stripe_event("evt_2"))

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)
    assert finalize_refunds.delay().get() == 0
    assert states(paid_order) == [ItemState.PAYMENT_REFUND_SUCCEEDED] * 3

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=4 + 7, minutes=1), tick=False)
    assert finalize_refunds.delay().get() == 3
    assert states(paid_order) == [ItemState.PAYMENT_REFUNDED] * 3


def test_a_failed_item_never_moves(paid_order, back_office_user, fake_stripe, time_machine):
    time_machine.move_to(SUCCEEDED_AT, tick=False)
    refund_now(paid_order.items.all(), back_office_user, fake_stripe, status="failed")

    for days in (7, 30, 365):
        time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=days, minutes=1), tick=False)
        assert finalize_refunds.delay().get() == 0
    assert states(paid_order) == [ItemState.PAYMENT_REFUND_FAILED] * 3
    assert not ItemTransition.objects.filter(transition="confirm_refund").exists()


def test_a_refund_declined_after_it_succeeded_is_not_finalized(succeeded_refund, paid_order, time_machine):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=6), tick=False)
    services.apply_refund_status(refund=succeeded_refund, status=RefundStatus.FAILED, by=Actor.stripe_event("evt_1"))

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)

    assert finalize_refunds.delay().get() == 0
    assert states(paid_order) == [ItemState.PAYMENT_REFUND_FAILED] * 3


def test_running_finalize_twice_moves_nothing_the_second_time(succeeded_refund, paid_order, time_machine):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)

    assert finalize_refunds.delay().get() == 3
    assert finalize_refunds.delay().get() == 0
    assert ItemTransition.objects.filter(transition="confirm_refund").count() == 3


def test_only_the_due_items_of_an_order_move(paid_order, back_office_user, fake_stripe, time_machine):
    first, second, third = paid_order.items.order_by("pk")
    time_machine.move_to(SUCCEEDED_AT, tick=False)
    refund_now([first], back_office_user, fake_stripe)
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=2), tick=False)
    refund_now([second], back_office_user, fake_stripe)

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)

    assert finalize_refunds.delay().get() == 1
    assert states(paid_order) == [
        ItemState.PAYMENT_REFUNDED, ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_CAPTURED,
    ]


def test_the_audit_row_names_the_items_latest_refund(paid_order, back_office_user, fake_stripe, time_machine):
    """An item refunded twice (the first refund failed) is settled under the refund that succeeded."""
    time_machine.move_to(SUCCEEDED_AT - dt.timedelta(days=1), tick=False)
    refund_now(paid_order.items.all(), back_office_user, fake_stripe, status="failed")
    time_machine.move_to(SUCCEEDED_AT, tick=False)
    retry = refund_now(paid_order.items.all(), back_office_user, fake_stripe)

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)
    finalize_refunds.delay()

    assert set(ItemTransition.objects.filter(transition="confirm_refund").values_list("refund_id", flat=True)) == {retry.pk}


def test_items_of_many_orders_are_settled_in_batches_each_under_its_own_refund(
    back_office_user, fake_stripe, time_machine
):
    time_machine.move_to(SUCCEEDED_AT, tick=False)
    orders = [paid_order_with_items(1000, 2000) for _ in range(3)]
    refunds = {order.pk: refund_now(order.items.all(), back_office_user, fake_stripe) for order in orders}
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)
    batches = []

    moved = services.finalize_due_refunds(batch_size=4, on_batch=batches.append)

    assert (moved, batches) == (6, [4, 2])
    assert OrderItem.objects.filter(state=ItemState.PAYMENT_REFUNDED).count() == 6
    audit = ItemTransition.objects.filter(transition="confirm_refund").values_list("item__order_id", "refund_id")
    assert sorted(audit) == sorted((order_id, refund.pk) for order_id, refund in refunds.items() for _ in range(2))


def test_the_settlement_period_comes_from_settings(succeeded_refund, paid_order, settings, time_machine):
    settings.REFUND_SETTLEMENT_PERIOD = dt.timedelta(days=1)

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(hours=23, minutes=59), tick=False)
    assert finalize_refunds.delay().get() == 0
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=1, minutes=1), tick=False)
    assert finalize_refunds.delay().get() == 3


def test_the_job_logs_how_many_items_moved(succeeded_refund, time_machine, caplog):
    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)

    with caplog.at_level(logging.INFO, logger="refunds.settlement"):
        finalize_refunds.delay()

    assert "finalize_refunds: 3 item(s) moved to payment refunded" in caplog.text


def test_a_manually_confirmed_item_is_not_finalized_again(succeeded_refund, paid_order, back_office_user, time_machine):
    services.confirm_refund_now(items=paid_order.items.all()[:1], user=back_office_user)

    time_machine.move_to(SUCCEEDED_AT + dt.timedelta(days=7, minutes=1), tick=False)

    assert finalize_refunds.delay().get() == 2
    assert ItemTransition.objects.filter(transition="confirm_refund").count() == 3
