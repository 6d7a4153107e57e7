"""Amount (goodwill) refunds: typed exactly in the order's currency, refused clearly, checked under
the same locks and over-refund rule as item refunds, moving no item."""

from decimal import Decimal

import pytest

from refunds import services
from refunds.exceptions import InvalidAmount, OrderNotRefundable, OverRefund
from refunds.models import ItemState, ItemTransition, Refund, RefundOrigin, RefundStatus
from refunds.money import AmountParseError, major_units, parse_major_units

from .factories import stored_order

pytestmark = pytest.mark.django_db


# --- what a Back Office user types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("12.5", "eur", 1250),
        ("12.50", "eur", 1250),
        ("12", "eur", 1200),
        ("0.01", "eur", 1),
        (" 1,200.50 ", "eur", 120050),
        ("€12.50", "eur", 1250),
        ("EUR 12.50", "eur", 1250),
        ("1,200", "jpy", 1200),
        ("1200", "jpy", 1200),
        ("¥1,200", "jpy", 1200),
        ("1,234,567", "krw", 1234567),
        ("1.234", "kwd", 1234),
        ("1.5", "kwd", 1500),
        ("0.1", "usd", 10),  # 0.1 is not exact as a float; here it is 10 cents
    ],
)
def test_an_amount_in_major_units_is_parsed_exactly(typed, currency, minor):
    assert parse_major_units(typed, currency) == minor


@pytest.mark.parametrize(
    ("typed", "currency", "message"),
    [
        ("12.5", "jpy", "JPY has no decimal places"),
        ("1.200", "jpy", "JPY has no decimal places"),
        ("12.505", "eur", "EUR has 2 decimal places; 12.505 has 3. Write it like 12.50."),
        ("1.2345", "kwd", "KWD has 3 decimal places"),
        ("12,50", "eur", "write decimals with a point, for example 12.50"),
        ("1,20,000", "eur", "is not an amount in EUR"),
        ("-5", "eur", "a refund cannot be negative"),
        ("0", "eur", "above zero"),
        ("0.00", "eur", "above zero"),
        ("", "eur", "Enter an amount in EUR, for example 12.50"),
        ("1e3", "eur", "is not an amount in EUR"),
        ("twelve", "eur", "is not an amount in EUR"),
        ("NaN", "eur", "is not an amount in EUR"),
    ],
)
def test_an_amount_that_is_not_one_is_refused_saying_how_to_write_it(typed, currency, message):
    with pytest.raises(AmountParseError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_major_units(typed, currency)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(1250, "eur", "12.50"), (5, "eur", "0.05"), (1200, "jpy", "1200"), (1234, "kwd", "1.234"), (100000000, "usd", "1000000.00")],
)
def test_major_units_are_exact_without_grouping(minor, currency, text):
    assert major_units(minor, currency) == text
    assert parse_major_units(text, currency) == minor


# --- the service --------------------------------------------------------------------------------


def test_an_amount_refund_has_no_items_and_moves_none(paid_order, back_office_user, fake_stripe, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        refund = services.request_amount_refund(
            order=paid_order, amount=1250, user=back_office_user, reason="requested_by_customer", note="late delivery",
        )

    refund.refresh_from_db()
    assert (refund.amount, refund.shipping_amount, refund.currency, refund.status) == (1250, 0, "eur", RefundStatus.SUCCEEDED)
    assert (refund.note, refund.created_by, refund.items.count()) == ("late delivery", back_office_user, 0)
    assert [call["amount"] for call in fake_stripe.create_calls] == [1250]
    assert set(paid_order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_CAPTURED}
    assert not ItemTransition.objects.exists()


@pytest.mark.parametrize("amount", [12.5, Decimal("1250"), "1250", True, None])
def test_an_amount_that_is_not_whole_minor_units_is_refused(paid_order, back_office_user, amount):
    with pytest.raises(InvalidAmount, match="whole number of minor units"):
        services.request_amount_refund(order=paid_order, amount=amount, user=back_office_user)
    assert not Refund.objects.exists()


@pytest.mark.parametrize("amount", [0, -100])
def test_a_non_positive_amount_is_refused(paid_order, back_office_user, amount):
    with pytest.raises(InvalidAmount, match="above zero"):
        services.request_amount_refund(order=paid_order, amount=amount, user=back_office_user)
    assert not Refund.objects.exists()


def test_an_unpaid_order_is_refused(back_office_user):
    order = stored_order(1000, stripe_payment_intent_id="")

    with pytest.raises(OrderNotRefundable, match="is not paid"):
        services.request_amount_refund(order=order, amount=100, user=back_office_user)


def assert_refused_without_writing(order, user, amount, message):
    refunds_before = Refund.objects.count()
    transitions_before = ItemTransition.objects.count()
    with pytest.raises(OverRefund, match=message):
        services.request_amount_refund(order=order, amount=amount, user=user)
    assert Refund.objects.count() == refunds_before
    assert ItemTransition.objects.count() == transitions_before


def test_the_over_refund_rule_counts_item_refunds(paid_order, back_office_user):
    first, second, _ = paid_order.items.order_by("pk")
    services.request_refund(items=[first, second], user=back_office_user)  # €30.00 of €40.45 in flight

    assert_refused_without_writing(
        paid_order, back_office_user, 1046,
        r"A refund of €10.46 for order DE--\d+ would exceed what may still be refunded: €10.45 of €40.45 captured "
        r"\(€30.00 refunded or in flight\)",
    )
    assert services.request_amount_refund(order=paid_order, amount=1045, user=back_office_user).amount == 1045


def test_the_over_refund_rule_counts_stripe_dashboard_refunds(paid_order, back_office_user):
    Refund.objects.create(
        order=paid_order, amount=4000, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_dashboard", status=RefundStatus.SUCCEEDED,
    )

    assert_refused_without_writing(paid_order, back_office_user, 46, r"€0.45 of €40.45 captured \(€40.00 refunded")


def test_the_over_refund_rule_counts_other_amount_refunds_but_not_failed_ones(paid_order, back_office_user, fake_stripe):
    services.request_amount_refund(order=paid_order, amount=2000, user=back_office_user)
    fake_stripe.next_status = "failed"
    failed = services.request_amount_refund(order=paid_order, amount=2000, user=back_office_user)
    services.submit_refund(refund_id=failed.pk)

    assert_refused_without_writing(paid_order, back_office_user, 2046, r"€20.45 of €40.45 captured \(€20.00 refunded")
    assert services.request_amount_refund(order=paid_order, amount=2045, user=back_office_user).amount == 2045


def test_item_refunds_count_amount_refunds(paid_order, back_office_user):
    services.request_amount_refund(order=paid_order, amount=3000, user=back_office_user)
    first, second, _ = paid_order.items.order_by("pk")

    with pytest.raises(OrderNotRefundable, match=r"€10.45 of €40.45 captured \(€30.00 refunded or in flight\)"):
        services.request_refund(items=[first, second], user=back_office_user)
    assert set(paid_order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_CAPTURED}


def test_shipping_still_goes_with_the_last_item_refund_but_never_beyond_what_was_captured(paid_order, back_office_user):
    # A shipping-only goodwill refund of €3.00 of the €4.95 shipping, then every item.
    services.request_amount_refund(order=paid_order, amount=300, user=back_office_user)

    [plan] = services.preview_refunds(paid_order.items.all())
    assert (plan.items_amount, plan.shipping_amount, plan.shipping_reduced) == (3550, 195, True)
    [last] = services.request_refund(items=paid_order.items.all(), user=back_office_user)

    assert (last.amount, last.shipping_amount) == (3745, 195)
    assert sum(Refund.objects.values_list("amount", flat=True)) == 4045  # exactly what was captured


def test_without_amount_refunds_the_last_item_refund_carries_all_shipping(paid_order, back_office_user):
    [refund] = services.request_refund(items=paid_order.items.all(), user=back_office_user)

    assert (refund.amount, refund.shipping_amount) == (4045, 495)


def test_dual_control_applies_to_amount_refunds(paid_order, back_office_user, settings, fake_stripe, django_capture_on_commit_callbacks):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 2000}

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        refund = services.request_amount_refund(order=paid_order, amount=2000, user=back_office_user)

    assert refund.status == RefundStatus.AWAITING_APPROVAL
    assert callbacks == [] and fake_stripe.create_calls == []
