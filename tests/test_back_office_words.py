"""What a Back Office user reads: the money of an order, buttons only where they do something,
a 403 in the Back Office's own page, words instead of code names, the product's name."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from refunds import services
from refunds.models import Refund, RefundOrigin, RefundStatus, StripeEvent

from .conftest import page_of, readonly_field
from .factories import UserFactory, paid_order_with_items

pytestmark = pytest.mark.django_db

ORDERS_URL = reverse("admin:refunds_order_changelist")


@pytest.fixture
def alice_client(client, back_office_user):
    client.force_login(back_office_user)
    return client


@pytest.fixture
def busy_order(paid_order, back_office_user, fake_stripe, settings):
    """€40.45 captured: €10.00 refunded (Stripe said succeeded), €20.00 awaiting approval, a
    Stripe Dashboard refund of $3.00 in another currency; €10.45 remains."""
    first, second, _ = paid_order.items.order_by("pk")
    fake_stripe.next_status = "succeeded"
    (done,) = services.request_refund(items=[first], user=back_office_user)
    services.submit_refund(refund_id=done.pk)
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 2000}
    services.request_refund(items=[second], user=back_office_user)
    Refund.objects.create(
        order=paid_order, amount=300, currency="usd", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_3QotherCurrency", status=RefundStatus.SUCCEEDED,
    )
    return paid_order


def test_the_order_list_shows_captured_refunded_in_flight_and_remaining(alice_client, busy_order):
    page = page_of(alice_client.get(ORDERS_URL))

    [row] = page.by_id("result_list").find_all("tbody")[0].find_all("tr")
    cells = {cls.removeprefix("field-"): cell.text for cell in row.find_all() for cls in cell.classes if cls.startswith("field-")}
    assert (cells["captured_list"], cells["refunded_list"], cells["in_flight_list"], cells["remaining_list"]) == (
        "€40.45", "€10.00 $3.00", "€20.00", "€10.45",
    )
    headers = [th.text for th in page.by_id("result_list").find_all("thead")[0].find_all("th")][1:]
    assert "" not in headers  # every column has a header
    assert headers[:6] == ["Reference", "Customer email", "Captured", "Refunded", "In flight", "Remaining"]


def test_the_order_page_shows_the_same_money(alice_client, busy_order):
    response = alice_client.get(reverse("admin:refunds_order_change", args=[busy_order.pk]))

    assert readonly_field(response, "captured_display") == "€40.45"
    assert readonly_field(response, "refunded_display") == "€10.00 $3.00"
    assert readonly_field(response, "in_flight_display") == "€20.00"
    assert readonly_field(response, "remaining_display") == "€10.45"
    assert readonly_field(response, "currency_display") == "EUR"


def test_the_refund_buttons_show_only_where_something_can_be_refunded(alice_client, back_office_user):
    open_order = paid_order_with_items(1000)
    done_order = paid_order_with_items(1000)
    services.request_refund(items=list(done_order.items.all()), user=back_office_user)

    def buttons(order):
        page = page_of(alice_client.get(reverse("admin:refunds_order_change", args=[order.pk])))
        return [a.text for a in page.find_all("a", cls="oms-refund-button")]

    assert buttons(open_order) == ["Refund", "Refund an amount"]
    assert buttons(done_order) == []  # items and shipping are all in flight: nothing left


def test_a_view_only_user_gets_the_back_office_403_page(client, paid_order):
    viewer = UserFactory(is_superuser=False)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_order", "view_orderitem"]))
    client.force_login(viewer)

    response = client.get(reverse("admin:refunds_order_refund", args=[paid_order.pk]))

    assert response.status_code == 403
    page = page_of(response)
    assert page.by_id("site-name").text == "Refunds Back Office"  # the admin's own header and navigation
    assert [p.text for p in page.find_all("p", cls="errornote")] == ["You may not refund orders."]


def test_the_site_is_named_after_the_product_and_the_name_can_be_set(alice_client, settings):
    assert page_of(alice_client.get("/admin/")).by_id("site-name").text == "Refunds Back Office"

    settings.REFUND_SITE_HEADER = "Shop OMS: refunds"
    page = alice_client.get("/admin/").content.decode()

    assert ">Shop OMS: refunds</a>" in page


def test_the_reprocess_permission_says_what_it_allows(client, db):
    permission = Permission.objects.get(codename="reprocess_stripeevent")
    assert permission.name == "Can reprocess Stripe events"
    operator = UserFactory(is_superuser=False)
    operator.user_permissions.add(Permission.objects.get(codename="view_stripeevent"))
    StripeEvent.objects.create(stripe_event_id="evt_1QexampleOnly", type="refund.updated", payload={})
    client.force_login(operator)
    url = reverse("admin:refunds_stripeevent_changelist")

    without = page_of(client.get(url))
    operator.user_permissions.add(permission)
    with_it = page_of(client.get(url))

    def actions(page):
        return [option.attrs.get("value") for option in page.find_all("option") if option.attrs.get("value")]

    assert "reprocess" not in actions(without)
    assert "reprocess" in actions(with_it)
    assert page_of(client.get(url)).find_all("h1")[0].text == "Select Stripe event to view"
