"""A Back Office refund request: amounts, shipping, over-refunds and refusals."""

import pytest
from django.db import IntegrityError

from refunds import services
from refunds.exceptions import NothingToRefund, OrderNotRefundable, RefundError
from refunds.models import ItemState, ItemTransition, OrderItem, Refund, RefundOrigin, RefundStatus
from refunds.services import Actor

from .factories import OrderFactory, OrderItemFactory, paid_order_with_items, stored_order

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stripe(fake_stripe):
    """Requests are submitted to a fake Stripe that leaves refunds pending unless told otherwise."""
    fake_stripe.next_status = "pending"
    return fake_stripe


def refund(items, user, **kwargs):
    return services.request_refund(items=list(items), user=user, **kwargs)


def states(order):
    return list(order.items.order_by("pk").values_list("state", flat=True))


def fail(refund_obj):
    services.apply_refund_status(refund=refund_obj, status=RefundStatus.FAILED, by=Actor.stripe_api())


def test_single_item_refund_is_the_item_amount(paid_order, back_office_user):
    first = paid_order.items.order_by("pk")[0]

    [created] = refund([first], back_office_user)

    assert created.amount == 1000
    assert created.shipping_amount == 0
    assert created.currency == "eur"
    assert created.status == RefundStatus.QUEUED
    assert list(created.items.all()) == [first]
    assert states(paid_order) == [ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_CAPTURED, ItemState.PAYMENT_CAPTURED]


def test_whole_order_refund_includes_shipping(paid_order, back_office_user):
    [created] = refund(paid_order.items.all(), back_office_user)

    assert created.amount == 1000 + 2000 + 550 + 495
    assert created.shipping_amount == 495
    assert set(states(paid_order)) == {ItemState.PAYMENT_REFUND_PENDING}


def test_shipping_goes_with_the_refund_that_leaves_nothing_unrefunded_and_only_once(paid_order, back_office_user):
    first, second, third = paid_order.items.order_by("pk")

    [a] = refund([first], back_office_user)
    [b] = refund([second, third], back_office_user)

    assert (a.amount, a.shipping_amount) == (1000, 0)
    assert (b.amount, b.shipping_amount) == (2000 + 550 + 495, 495)
    assert sum(r.shipping_amount for r in Refund.objects.filter(order=paid_order)) == 495


def test_shipping_is_not_added_while_an_item_is_still_captured(paid_order, back_office_user):
    first, second, _ = paid_order.items.order_by("pk")
    [created] = refund([first, second], back_office_user)
    assert created.shipping_amount == 0


def test_a_failed_refund_that_carried_shipping_carries_it_again_on_retry(paid_order, back_office_user):
    first, second, third = paid_order.items.order_by("pk")
    [a] = refund([first], back_office_user)
    [b] = refund([second, third], back_office_user)
    fail(b)
    assert states(paid_order)[1:] == [ItemState.PAYMENT_REFUND_FAILED] * 2

    [retry] = refund([second, third], back_office_user)

    assert (retry.amount, retry.shipping_amount) == (2000 + 550 + 495, 495)
    assert a.pk != retry.pk


def test_retrying_one_failed_item_of_a_fully_refunded_order_does_not_add_shipping_twice(paid_order, back_office_user):
    first, second, third = paid_order.items.order_by("pk")
    [a] = refund([first], back_office_user)
    refund([second, third], back_office_user)  # carries the shipping and stays live
    fail(a)

    [retry] = refund([first], back_office_user)

    assert (retry.amount, retry.shipping_amount) == (1000, 0)


def test_an_over_refund_is_refused_and_nothing_is_written(back_office_user):
    order = paid_order_with_items(1000, 2000, amount_captured=2500, shipping_amount=0)

    with pytest.raises(OrderNotRefundable, match=r"would exceed what may still be refunded: €25.00 of €25.00"):
        refund(order.items.all(), back_office_user)

    assert not Refund.objects.exists()
    assert set(states(order)) == {ItemState.PAYMENT_CAPTURED}
    assert not ItemTransition.objects.exists()


def test_refunds_made_in_the_stripe_dashboard_count_against_what_may_be_refunded(paid_order, back_office_user):
    Refund.objects.create(
        order=paid_order, amount=3000, currency="eur", status=RefundStatus.SUCCEEDED,
        origin=RefundOrigin.STRIPE_DASHBOARD, stripe_refund_id="re_dashboard",
    )
    first, second, _ = paid_order.items.order_by("pk")

    with pytest.raises(OrderNotRefundable, match=r"€10.45 of €40.45 captured \(€30.00 refunded or in flight\)"):
        refund([first, second], back_office_user)
    [created] = refund([first], back_office_user)

    assert created.amount == 1000


def test_failed_refunds_do_not_count_against_what_may_be_refunded(back_office_user):
    order = paid_order_with_items(1000, shipping_amount=0)
    [a] = refund(order.items.all(), back_office_user)
    fail(a)

    [retry] = refund(order.items.all(), back_office_user)

    assert retry.amount == 1000


def test_items_of_several_orders_make_one_refund_per_order(back_office_user):
    one = paid_order_with_items(1000, 2000, shipping_amount=0)
    two = paid_order_with_items(700, shipping_amount=300, currency="usd")

    refunds = refund([*one.items.all(), *two.items.all()], back_office_user)

    assert {(r.order_id, r.amount, r.currency) for r in refunds} == {(one.pk, 3000, "eur"), (two.pk, 1000, "usd")}


def test_every_transition_is_audited_with_who_and_which_refund(paid_order, back_office_user):
    [created] = refund(paid_order.items.all(), back_office_user, reason="requested_by_customer", note="parcel lost")

    log = list(ItemTransition.objects.order_by("item_id"))
    assert [(t.item_id, t.from_state, t.to_state) for t in log] == [
        (item.pk, ItemState.PAYMENT_CAPTURED, ItemState.PAYMENT_REFUND_PENDING) for item in paid_order.items.order_by("pk")
    ]
    assert {(t.by, t.by_user_id, t.refund_id, t.transition) for t in log} == {
        ("alice", back_office_user.pk, created.pk, "start_refund")
    }
    assert (created.reason, created.note, created.created_by) == ("requested_by_customer", "parcel lost", back_office_user)


def test_the_submission_is_enqueued_only_after_commit(paid_order, back_office_user, fake_stripe, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        refund(paid_order.items.all(), back_office_user)
        assert fake_stripe.create_calls == []

    assert len(callbacks) == 1
    callbacks[0]()
    assert len(fake_stripe.create_calls) == 1


def test_each_refund_has_its_own_idempotency_key(paid_order, back_office_user):
    first, second, _ = paid_order.items.order_by("pk")
    [a] = refund([first], back_office_user)
    [b] = refund([second], back_office_user)
    assert a.idempotency_key != b.idempotency_key
    assert a.idempotency_key.startswith("oms-refund-")


# --- refusals: a clear error, nothing written ------------------------------------------------

def assert_nothing_written(*orders):
    assert not Refund.objects.exists()
    assert not ItemTransition.objects.exists()
    for order in orders:
        assert set(states(order)) <= {ItemState.PAYMENT_CAPTURED}


def test_an_empty_selection_is_refused(back_office_user):
    with pytest.raises(NothingToRefund, match="Select at least one item"):
        refund([], back_office_user)
    assert_nothing_written()


def test_items_of_an_unpaid_order_are_refused(back_office_user):
    order = stored_order(1000, stripe_payment_intent_id="")
    with pytest.raises(OrderNotRefundable, match=rf"Order {order.reference} is not paid"):
        refund(order.items.all(), back_office_user)
    assert_nothing_written(order)


def test_an_order_in_an_unknown_currency_is_refused(back_office_user):
    order = stored_order(1000, currency="xyz")
    with pytest.raises(OrderNotRefundable, match=r"unknown currency 'xyz'"):
        refund(order.items.all(), back_office_user)
    assert_nothing_written(order)


def test_a_zero_amount_refund_is_refused(back_office_user):
    order = stored_order(0, 1000, shipping_amount=0)
    free_gift = order.items.get(amount=0)
    with pytest.raises(OrderNotRefundable, match="add up to €0.00; there is nothing to refund"):
        refund([free_gift], back_office_user)
    assert_nothing_written(order)


def test_negative_amounts_cannot_enter_the_data():
    order = OrderFactory()
    with pytest.raises(IntegrityError):
        OrderItemFactory(order=order, amount=-100)


def test_negative_shipping_cannot_enter_the_data():
    with pytest.raises(IntegrityError):
        OrderFactory(shipping_amount=-1)


def test_an_unknown_reason_is_refused(paid_order, back_office_user):
    with pytest.raises(RefundError, match="Unknown refund reason 'because'"):
        refund(paid_order.items.all(), back_office_user, reason="because")
    assert_nothing_written(paid_order)


def test_an_item_that_does_not_exist_is_refused(paid_order, back_office_user):
    with pytest.raises(RefundError, match="Item\\(s\\) 999999 do not exist"):
        refund([*paid_order.items.all(), 999999], back_office_user)
    assert_nothing_written(paid_order)


def test_a_request_without_a_signed_in_user_is_refused(paid_order):
    with pytest.raises(ValueError):
        refund(paid_order.items.all(), None)
    assert_nothing_written(paid_order)


@pytest.mark.parametrize(
    "state", [ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_REFUNDED]
)
def test_a_selection_with_an_item_that_cannot_be_refunded_is_refused_whole(paid_order, back_office_user, state):
    first, second, _ = paid_order.items.order_by("pk")
    OrderItem.objects.filter(pk=second.pk).update(state=state)

    with pytest.raises(OrderNotRefundable, match=rf"{second.sku} cannot be refunded: its state is “{state.label}”"):
        refund([first, second], back_office_user)

    assert not Refund.objects.exists()
    assert OrderItem.objects.get(pk=first.pk).state == ItemState.PAYMENT_CAPTURED


def test_an_item_refunded_twice_is_refused_the_second_time(paid_order, back_office_user):
    first = paid_order.items.order_by("pk")[0]
    refund([first], back_office_user)

    with pytest.raises(OrderNotRefundable, match="its state is “payment refund pending”"):
        refund([first], back_office_user)

    assert Refund.objects.count() == 1


def test_a_failed_item_still_tied_to_a_live_refund_is_refused(paid_order, back_office_user):
    first = paid_order.items.order_by("pk")[0]
    [live] = refund([first], back_office_user)
    OrderItem.objects.filter(pk=first.pk).update(state=ItemState.PAYMENT_REFUND_FAILED)  # inconsistent data

    with pytest.raises(OrderNotRefundable, match=rf"it is part of refund #{live.pk}, which is still in progress"):
        refund([first], back_office_user)
