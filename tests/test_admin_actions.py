"""Back Office refund actions: confirmation page, submission, messages and permissions."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from refunds import services
from refunds.exceptions import OrderNotRefundable
from refunds.models import ItemState, ItemTransition, OrderItem, Refund, RefundStatus
from refunds.services import Actor

from .conftest import post_confirmed
from .factories import UserFactory, paid_order_with_items, stored_order

pytestmark = pytest.mark.django_db

ITEMS_URL = reverse("admin:refunds_orderitem_changelist")
ORDERS_URL = reverse("admin:refunds_order_changelist")


def staff_with(*codenames: str):
    """A staff user who may view the OMS models and holds the given refunds permissions."""
    user = UserFactory(is_superuser=False)
    view = ["view_order", "view_orderitem", "view_refund", "view_stripeevent", "view_itemtransition"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="refunds", codename__in=[*view, *codenames]))
    return user


@pytest.fixture
def refunder(client):
    user = staff_with("refund_orderitem")
    client.force_login(user)
    return user


@pytest.fixture
def admin_client_alice(client, back_office_user):
    client.force_login(back_office_user)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def post_action(client, url, action, ids, **data):
    """The action, and with post="yes" also its confirmation, as a user confirms it."""
    return post_confirmed(client, url, {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], **data})


def states(*items) -> list[str]:
    return [OrderItem.objects.get(pk=item.pk).state for item in items]


def pend(*items, user):
    """Put items into `payment refund pending` through the service, as the Back Office would."""
    return services.request_refund(items=list(items), user=user)


# --- refund_items -------------------------------------------------------------------------


def test_refund_items_shows_a_confirmation_page_and_changes_nothing(admin_client_alice, paid_order):
    first, second, _ = paid_order.items.order_by("pk")

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [first.pk, second.pk])

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/refunds/refund_confirmation.html"
    page = response.content.decode()
    assert f"Order {paid_order.reference}" in page
    assert "€10.00" in page and "€20.00" in page
    assert "€30.00" in page  # the total: no shipping, an item of the order stays unrefunded
    assert "Shipping expense" not in page
    assert 'name="post" value="yes"' in page
    for value in ("requested_by_customer", "duplicate", "fraudulent"):
        assert f'value="{value}"' in page
    assert Refund.objects.count() == 0
    assert states(first, second) == [ItemState.PAYMENT_CAPTURED] * 2


def test_confirmation_includes_shipping_when_the_refund_leaves_no_item_unrefunded(admin_client_alice, paid_order):
    items = list(paid_order.items.order_by("pk"))

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk for item in items])

    page = response.content.decode()
    assert "Shipping expense" in page and "€4.95" in page
    assert "€40.45" in page  # 10.00 + 20.00 + 5.50 + 4.95
    assert "4045" not in page  # money, never cents


def test_confirming_refund_items_queues_one_refund_and_says_so(admin_client_alice, paid_order, back_office_user):
    first, second, third = paid_order.items.order_by("pk")

    response = post_action(
        admin_client_alice, ITEMS_URL, "refund_items", [first.pk, second.pk],
        post="yes", reason="requested_by_customer", note="parcel came back damaged",
    )

    assert response.status_code == 302
    assert messages_of(response) == [f"2 items of order {paid_order.reference} queued for refund: €30.00"]
    refund = Refund.objects.get()
    assert refund.amount == 3000
    assert refund.reason == "requested_by_customer"
    assert refund.note == "parcel came back damaged"
    assert refund.created_by == back_office_user
    assert states(first, second, third) == [
        ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_CAPTURED,
    ]
    assert set(ItemTransition.objects.values_list("by", flat=True)) == {"alice"}


def test_the_reason_is_optional(admin_client_alice, paid_order):
    item = paid_order.items.first()

    post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk], post="yes")

    assert Refund.objects.get().reason == ""


def test_an_unknown_reason_is_refused_on_the_page(admin_client_alice, paid_order):
    item = paid_order.items.first()

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk], post="yes", reason="because")

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert Refund.objects.count() == 0


def test_a_mixed_selection_refunds_the_refundable_items_and_names_the_others(
    admin_client_alice, paid_order, back_office_user
):
    first, second, third = paid_order.items.order_by("pk")
    pend(first, user=back_office_user)

    page = post_action(admin_client_alice, ITEMS_URL, "refund_items", [first.pk, second.pk]).content.decode()
    assert "Not refunded" in page
    assert f"{first.sku} · {first.name} (€10.00): its state is “payment refund pending”." in page
    assert "Refund total for" in page and "€20.00" in page

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [first.pk, second.pk], post="yes")

    assert messages_of(response) == [
        f"{first} was not refunded: its state is “payment refund pending”.",
        f"1 item of order {paid_order.reference} queued for refund: €20.00",
    ]
    assert Refund.objects.count() == 2
    assert states(first, second, third) == [
        ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_CAPTURED,
    ]


def test_a_selection_with_nothing_refundable_refunds_nothing(admin_client_alice, paid_order, back_office_user):
    first = paid_order.items.first()
    pend(first, user=back_office_user)

    page = post_action(admin_client_alice, ITEMS_URL, "refund_items", [first.pk]).content.decode()
    assert "Nothing in this selection can be refunded." in page
    assert 'value="Yes, refund"' not in page

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [first.pk], post="yes")

    assert "Nothing was refunded: no selected item can be refunded." in messages_of(response)
    assert Refund.objects.count() == 1


def test_an_unpaid_order_is_explained_not_refunded(admin_client_alice):
    order = stored_order(1000, stripe_payment_intent_id="")
    item = order.items.get()

    page = post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk]).content.decode()
    assert f"Order {order.reference} is not paid" in page

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk], post="yes")

    assert messages_of(response)[0].startswith(f"Order {order.reference} is not paid")
    assert Refund.objects.count() == 0


def test_a_refund_error_from_the_service_is_a_message_not_a_traceback(admin_client_alice, paid_order, monkeypatch):
    def refuse(**kwargs):
        raise OrderNotRefundable("DE--1001 / SKU-1 cannot be refunded: its state is “payment refund pending”.")

    monkeypatch.setattr(services, "request_refund", refuse)
    item = paid_order.items.first()

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk], post="yes")

    assert response.status_code == 302
    assert messages_of(response) == [
        "Nothing was refunded: DE--1001 / SKU-1 cannot be refunded: its state is “payment refund pending”."
    ]


def test_a_confirmation_overtaken_by_another_refund_is_shown_again(admin_client_alice, paid_order, back_office_user):
    first, second, _ = paid_order.items.order_by("pk")
    page = post_action(admin_client_alice, ITEMS_URL, "refund_items", [first.pk, second.pk]).content.decode()
    confirmed = page.split('name="confirmed" value="', 1)[1].split('"', 1)[0]
    pend(first, user=UserFactory(username="bob"))  # another user, between page and click

    response = post_action(
        admin_client_alice, ITEMS_URL, "refund_items", [first.pk, second.pk], post="yes", confirmed=confirmed
    )

    assert response.status_code == 200  # the page again, with what is true now
    assert "The selection changed since the confirmation page was shown" in messages_of(response)[0]
    assert Refund.objects.count() == 1
    assert states(second) == [ItemState.PAYMENT_CAPTURED]


def test_the_queued_refund_is_sent_to_stripe_after_commit(
    admin_client_alice, paid_order, fake_stripe, django_capture_on_commit_callbacks
):
    item = paid_order.items.first()

    with django_capture_on_commit_callbacks(execute=True):
        post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk], post="yes", reason="duplicate")

    assert [call["amount"] for call in fake_stripe.create_calls] == [1000]
    assert fake_stripe.create_calls[0]["reason"] == "duplicate"
    assert states(item) == [ItemState.PAYMENT_REFUND_SUCCEEDED]


def test_items_of_two_orders_make_two_refunds_and_two_messages(admin_client_alice):
    first_order, second_order = paid_order_with_items(1000, 2000), paid_order_with_items(300, 400)
    selected = [first_order.items.order_by("pk").first(), second_order.items.order_by("pk").first()]

    response = post_action(admin_client_alice, ITEMS_URL, "refund_items", [item.pk for item in selected], post="yes")

    assert messages_of(response) == [
        f"1 item of order {first_order.reference} queued for refund: €10.00",
        f"1 item of order {second_order.reference} queued for refund: €3.00",
    ]
    assert sorted(Refund.objects.values_list("order__reference", "amount")) == [
        (first_order.reference, 1000), (second_order.reference, 300),
    ]


# --- refund_orders and the order page's button ----------------------------------------------


def test_refund_orders_confirms_every_order_in_its_own_currency(admin_client_alice, back_office_user):
    euros = paid_order_with_items(1000, 2000, shipping_amount=495)
    pounds = paid_order_with_items(1250, currency="gbp", shipping_amount=0)
    pend(euros.items.first(), user=back_office_user)

    page = post_action(admin_client_alice, ORDERS_URL, "refund_orders", [euros.pk, pounds.pk]).content.decode()

    assert f"Order {euros.reference}" in page and f"Order {pounds.reference}" in page
    assert "€24.95" in page  # the second item and the shipping: no item stays unrefunded
    assert "£12.50" in page
    assert "its state is “payment refund pending”" in page

    response = post_action(admin_client_alice, ORDERS_URL, "refund_orders", [euros.pk, pounds.pk], post="yes")

    assert f"1 item of order {euros.reference} queued for refund: €24.95" in messages_of(response)
    assert f"1 item of order {pounds.reference} queued for refund: £12.50" in messages_of(response)
    assert sorted(Refund.objects.values_list("currency", "amount")) == [("eur", 1000), ("eur", 2495), ("gbp", 1250)]


def test_the_order_page_has_a_refund_button_for_the_same_flow(admin_client_alice, paid_order):
    change_url = reverse("admin:refunds_order_change", args=[paid_order.pk])
    refund_url = reverse("admin:refunds_order_refund", args=[paid_order.pk])
    assert refund_url in admin_client_alice.get(change_url).content.decode()

    page = admin_client_alice.get(refund_url).content.decode()
    assert "€40.45" in page
    response = post_confirmed(admin_client_alice, refund_url, {"post": "yes", "reason": "fraudulent"})

    assert response.status_code == 302 and response.url == change_url
    assert messages_of(response) == [f"3 items of order {paid_order.reference} queued for refund: €40.45"]
    assert Refund.objects.get().reason == "fraudulent"


# --- permissions --------------------------------------------------------------------------


def test_a_staff_user_without_the_refund_permission_sees_no_refund_action_or_button(client, paid_order):
    client.force_login(staff_with())

    items_page = client.get(ITEMS_URL).content.decode()
    orders_page = client.get(ORDERS_URL).content.decode()
    order_page = client.get(reverse("admin:refunds_order_change", args=[paid_order.pk])).content.decode()

    assert 'value="refund_items"' not in items_page
    assert 'value="confirm_refund_now"' not in items_page
    assert 'value="refund_orders"' not in orders_page
    assert reverse("admin:refunds_order_refund", args=[paid_order.pk]) not in order_page


def test_a_forged_refund_post_without_permission_changes_nothing(client, paid_order):
    client.force_login(staff_with())
    items = list(paid_order.items.order_by("pk"))

    items_response = post_action(client, ITEMS_URL, "refund_items", [item.pk for item in items], post="yes", confirmed="forged")
    orders_response = post_action(client, ORDERS_URL, "refund_orders", [paid_order.pk], post="yes", confirmed="forged")
    button_response = client.post(reverse("admin:refunds_order_refund", args=[paid_order.pk]), {"post": "yes", "confirmed": "forged"})

    # Without any action the admin ignores the "action" field: the plain changelist, no page.
    for response in (items_response, orders_response):
        assert response.status_code == 200
        assert "admin/refunds/refund_confirmation.html" not in [t.name for t in response.templates]
    assert button_response.status_code == 403
    assert Refund.objects.count() == 0
    assert states(*items) == [ItemState.PAYMENT_CAPTURED] * 3


def test_the_refund_permission_alone_allows_refunding_but_not_confirming(client, refunder, paid_order):
    item = paid_order.items.first()
    page = client.get(ITEMS_URL).content.decode()
    assert 'value="refund_items"' in page
    assert 'value="confirm_refund_now"' not in page

    response = post_action(client, ITEMS_URL, "refund_items", [item.pk], post="yes")

    assert messages_of(response) == [f"1 item of order {paid_order.reference} queued for refund: €10.00"]


# --- Confirm refund now -------------------------------------------------------------------


@pytest.fixture
def succeeded_item(paid_order, back_office_user):
    item = paid_order.items.first()
    (refund,) = pend(item, user=back_office_user)
    services.apply_refund_status(refund=refund, status=RefundStatus.SUCCEEDED, by=Actor.stripe_api())
    return item


def test_confirm_refund_now_finalizes_succeeded_items(client, succeeded_item):
    user = staff_with("refund_orderitem", "confirm_refund_orderitem")
    client.force_login(user)
    assert 'value="confirm_refund_now"' in client.get(ITEMS_URL).content.decode()

    response = post_action(client, ITEMS_URL, "confirm_refund_now", [succeeded_item.pk])

    assert messages_of(response) == ["1 item is now payment refunded."]
    assert states(succeeded_item) == [ItemState.PAYMENT_REFUNDED]
    assert ItemTransition.objects.filter(transition="confirm_refund").get().by_user == user


def test_confirm_refund_now_refuses_an_item_that_has_not_succeeded(admin_client_alice, paid_order, succeeded_item):
    captured = paid_order.items.exclude(pk=succeeded_item.pk).first()

    response = post_action(admin_client_alice, ITEMS_URL, "confirm_refund_now", [succeeded_item.pk, captured.pk])

    assert messages_of(response) == [
        f"Nothing was confirmed: {captured} cannot be confirmed: its state is “payment captured”, not “payment refund succeeded”."
    ]
    assert states(succeeded_item, captured) == [ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_CAPTURED]


def test_a_forged_confirm_post_without_its_permission_changes_nothing(client, succeeded_item):
    client.force_login(staff_with("refund_orderitem"))

    response = post_action(client, ITEMS_URL, "confirm_refund_now", [succeeded_item.pk])

    assert "No action selected." in messages_of(response)
    assert states(succeeded_item) == [ItemState.PAYMENT_REFUND_SUCCEEDED]
