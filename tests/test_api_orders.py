"""POST /api/v1/orders/ and GET /api/v1/orders/<reference>/ through the real HTTP stack, and the
`create_order` service behind them (DESIGN.md §8)."""

import json

import pytest

from refunds import services
from refunds.exceptions import InvalidOrder, OrderConflict
from refunds.models import ItemState, Order, OrderItem

from .api_helpers import api_token, get, order_body, post, problem, table_counts

URL = "/api/v1/orders/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def token():
    return api_token()


def test_an_order_is_created_paid_with_one_item_per_unit(client, token):
    response = post(client, URL, order_body(), token)

    assert response.status_code == 201, response.content
    assert response["Location"] == "/api/v1/orders/SHOP-1001/"
    body = response.json()
    assert {key: body[key] for key in ("reference", "currency", "payment_intent", "customer_email", "shipping_amount")} == {
        "reference": "SHOP-1001", "currency": "eur", "payment_intent": "pi_3QabcDEF123",
        "customer_email": "mia@example.com", "shipping_amount": 495,
    }
    # quantity 3 makes three items of one unit each
    assert [(item["sku"], item["amount"], item["state"]) for item in body["items"]] == [
        ("SHIRT-M", 4990, "payment_captured"), ("SOCKS-3", 1200, "payment_captured"),
        ("SOCKS-3", 1200, "payment_captured"), ("SOCKS-3", 1200, "payment_captured"),
    ]
    assert body["amount_captured"] == body["refundable_amount"] == 4990 + 3 * 1200 + 495
    assert body["refunds"] == []
    order = Order.objects.get(reference="SHOP-1001")
    assert order.stripe_payment_intent_id == "pi_3QabcDEF123" and order.amount_captured is None
    assert list(order.items.values_list("state", flat=True)) == [ItemState.PAYMENT_CAPTURED] * 4


def test_the_same_body_twice_is_one_order(client, token):
    first = post(client, URL, order_body(), token)
    # the same JSON with the lines in another order and the keys shuffled
    body = order_body()
    again = post(client, URL, {**dict(reversed(list(body.items()))), "items": list(reversed(body["items"]))}, token)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Order.objects.count() == 1 and OrderItem.objects.count() == 4


@pytest.mark.parametrize("change", [
    {"shipping_amount": 0},
    {"currency": "usd"},
    {"payment_intent": "pi_other"},
    {"customer_email": "someone@example.com"},
    {"amount_captured": 5000},
    {"items": [{"sku": "SHIRT-M", "name": "Linen shirt, M", "amount": 4990}]},
    {"items": [{"sku": "SHIRT-M", "name": "Linen shirt, M", "amount": 4990, "quantity": 2},
               {"sku": "SOCKS-3", "name": "Wool socks", "amount": 1200, "quantity": 3}]},
])
def test_another_body_for_a_stored_reference_is_409_and_changes_nothing(client, token, change):
    post(client, URL, order_body(), token)
    before = table_counts()

    response = post(client, URL, order_body(**change), token)

    body = problem(response, 409, "order-conflict")
    assert "SHOP-1001 exists with other content" in body["detail"]
    assert table_counts() == before
    assert Order.objects.get().shipping_amount == 495


def test_an_explicit_captured_amount_equal_to_the_default_is_the_same_order(client, token):
    post(client, URL, order_body(), token)
    assert post(client, URL, order_body(amount_captured=4990 + 3 * 1200 + 495), token).status_code == 200


def test_a_captured_amount_below_the_items_is_kept_and_caps_refunds(client, token):
    response = post(client, URL, order_body(amount_captured=5000), token)
    assert response.status_code == 201
    assert response.json()["refundable_amount"] == 5000
    assert Order.objects.get().amount_captured == 5000


@pytest.mark.parametrize("field, value, message", [
    ("currency", "xyz", "Unknown currency"),
    ("currency", "", "Unknown currency"),
    ("payment_intent", "ch_123", "pi_"),
    ("payment_intent", "pi_", "pi_"),
    ("payment_intent", "pi_12 34", "pi_"),
    ("customer_email", "not-an-address", "e-mail"),
    ("customer_email", "a" * 250 + "@example.com", "at most 254"),
    ("shipping_amount", -1, "zero or more"),
    ("shipping_amount", 10**13, "at most"),
    ("amount_captured", 0, "above zero"),
    ("amount_captured", -100, "above zero"),
    ("reference", "a/b", "letters, digits"),
    ("reference", "x" * 65, "letters, digits"),
    ("reference", "", "letters, digits"),
    ("items", [], "At least one item"),
    ("items", [{"sku": "A", "name": "A", "amount": 0}], "above zero"),
    ("items", [{"sku": "A", "name": "A", "amount": -5}], "above zero"),
    ("items", [{"sku": "A", "name": "A", "amount": 10**30}], "at most"),
    ("items", [{"sku": "A", "name": "A", "amount": 100, "quantity": 0}], "1 or more"),
    ("items", [{"sku": "A", "name": "A", "amount": 100, "quantity": 1001}], "At most 1000 units"),
    ("items", [{"sku": "", "name": "A", "amount": 100}], "Required"),
    ("items", [{"sku": "A" * 65, "name": "A", "amount": 100}], "At most 64"),
])
def test_unacceptable_values_are_422_with_the_field_and_nothing_written(client, token, field, value, message):
    before = table_counts()

    response = post(client, URL, order_body(**{field: value}), token)

    body = problem(response, 422, "invalid-order")
    [(named, messages)] = body["errors"].items()
    assert named == field or named.startswith(f"{field}."), body["errors"]
    assert message in " ".join(messages)
    assert table_counts() == before


@pytest.mark.parametrize("field, value", [
    ("shipping_amount", 4.95),
    ("shipping_amount", "495"),
    ("shipping_amount", True),
    ("shipping_amount", None),
    ("currency", 978),
    ("items", {"sku": "A"}),
    ("items", [{"sku": "A", "name": "A", "amount": 12.5}]),
    ("items", [{"sku": "A", "name": "A", "amount": 1000.0}]),
    ("items", [{"sku": "A", "name": "A", "amount": "1000"}]),
    ("items", [{"sku": "A", "name": "A"}]),
    ("items", [{"sku": "A", "name": "A", "amount": 100, "colour": "red"}]),
    ("items", ["A"]),
    ("amount_captured", "all"),
    ("items", [{"sku": "A\x00", "name": "A", "amount": 100}]),
    ("items", [{"sku": "A", "name": "\ud800", "amount": 100}]),
])
def test_wrong_types_missing_and_unknown_fields_are_400_and_nothing_written(client, token, field, value):
    before = table_counts()

    response = post(client, URL, json.dumps(order_body(**{field: value})), token)

    body = problem(response, 400, "invalid-request")
    assert any(name == field or name.startswith(f"{field}.") for name in body["errors"]), body["errors"]
    assert table_counts() == before


def test_a_missing_field_and_an_unknown_one_are_named(client, token):
    body = order_body()
    del body["customer_email"]
    body["item"] = []

    errors = problem(post(client, URL, body, token), 400)["errors"]

    assert errors == {"customer_email": ["This field is required."], "item": ["Unknown field."]}
    assert Order.objects.count() == 0


@pytest.mark.parametrize("raw", [
    b"{", b"", b"[1, 2]", b"null", b'{"reference": NaN}', "\"\ud800\"".encode("utf-8", "surrogatepass"),
    b"[" * 100_000 + b"]" * 100_000, b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
], ids=["unclosed", "empty", "a-list", "null", "nan", "bad-utf8", "nested-deep", "nested-deep-in-a-field"])
def test_malformed_json_is_400(client, token, raw):
    response = post(client, URL, raw, token)
    assert response.status_code == 400, response.content
    problem(response, 400, "invalid-request")
    assert Order.objects.count() == 0


def test_a_body_that_is_not_json_is_415(client, token):
    response = post(client, URL, "reference=SHOP-1", token, content_type="application/x-www-form-urlencoded")
    problem(response, 415, "unsupported-media-type")
    assert Order.objects.count() == 0


def test_a_2_mib_body_is_413_and_nothing_written(client, token):
    body = order_body(items=[{"sku": "A", "name": "x" * 2000, "amount": 100}] * 1100)
    raw = json.dumps(body).encode()
    assert len(raw) >= 2 * 1024 * 1024
    problem(post(client, URL, raw, token), 413, "payload-too-large")
    assert Order.objects.count() == 0


def test_an_order_is_read_back_with_its_refunds_and_what_may_still_be_refunded(client, token, fake_stripe, back_office_user):
    post(client, URL, order_body(), token)
    order = Order.objects.get()
    [refund] = services.request_refund(items=list(order.items.order_by("pk"))[:1], user=back_office_user)

    body = get(client, "/api/v1/orders/SHOP-1001/", token).json()

    assert [r["id"] for r in body["refunds"]] == [refund.pk]
    assert body["refunds"][0]["items"] == [order.items.order_by("pk").first().pk]
    assert body["refundable_amount"] == 9085 - 4990


def test_refunds_awaiting_approval_count_against_the_refundable_amount(client, token, settings, fake_stripe, back_office_user):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 4000}
    post(client, URL, order_body(), token)
    order = Order.objects.get()
    [refund] = services.request_refund(items=[order.items.order_by("pk").first()], user=back_office_user)
    assert refund.status == "awaiting_approval"

    body = get(client, "/api/v1/orders/SHOP-1001/", token).json()

    assert body["refundable_amount"] == 9085 - 4990
    # the same figure the preview (the confirmation page's rules) starts from
    preview = post(client, "/api/v1/orders/SHOP-1001/refunds/preview/", {"amount": 100}, token).json()
    assert preview["available"] == body["refundable_amount"]


def test_an_unknown_order_is_404(client, token):
    problem(get(client, "/api/v1/orders/NOPE-1/", token), 404, "not-found")


# --- The service, as the demo seeding and scripts call it -------------------------------------

def test_create_order_takes_item_lines_and_is_idempotent():
    lines = [services.ItemLine("A", "Item A", 1000, quantity=2), {"sku": "B", "name": "Item B", "amount": 500}]
    kwargs = dict(reference="R-1", currency="EUR", payment_intent="pi_abc", customer_email="a@example.com",
                  shipping_amount=0, items=lines)

    order, created = services.create_order(**kwargs)
    again, created_again = services.create_order(**kwargs)

    assert (created, created_again) == (True, False) and again.pk == order.pk
    assert order.currency == "eur"
    assert sorted(order.items.values_list("sku", "amount")) == [("A", 1000), ("A", 1000), ("B", 500)]
    with pytest.raises(OrderConflict):
        services.create_order(**{**kwargs, "shipping_amount": 1})


def test_create_order_reports_every_bad_field_at_once():
    with pytest.raises(InvalidOrder) as refused:
        services.create_order(reference="R 1", currency="eur", payment_intent="pi_x", customer_email="a@example.com",
                              shipping_amount=1.5, items=[{"sku": "A", "name": "A", "amount": True}])
    assert set(refused.value.errors) == {"reference", "shipping_amount", "items.0.amount"}
    assert Order.objects.count() == 0


def test_the_refundable_amount_is_the_one_refund_requests_check(client, token, fake_stripe, back_office_user):
    """`live_refunds_among` (the order page, from rows already read) and `live_refunds` (refund
    requests, by query) agree whatever the refunds: live, rejected, failed, another currency."""
    from refunds import selectors
    from refunds.models import Refund, RefundOrigin, RefundStatus

    post(client, URL, order_body(), token)
    order = Order.objects.get()
    shirt, sock1, sock2, sock3 = order.items.order_by("pk")
    services.request_refund(items=[shirt], user=back_office_user)
    for status, currency, amount in [(RefundStatus.REJECTED, "eur", 700), (RefundStatus.FAILED, "eur", 800),
                                     (RefundStatus.SUCCEEDED, "usd", 900), (RefundStatus.SUCCEEDED, "eur", 300),
                                     (RefundStatus.AWAITING_APPROVAL, "eur", 200)]:
        Refund.objects.create(order=order, amount=amount, currency=currency, status=status, origin=RefundOrigin.STRIPE_DASHBOARD)

    detail = services.order_detail("SHOP-1001")

    by_query = selectors.live_refunds([order.pk])
    assert detail.refundable_amount == 9085 - by_query.committed(order) == 9085 - 4990 - 300 - 200
    among = selectors.live_refunds_among(detail.refunds)
    assert (among.committed_by_currency, among.shipping_taken, among.refund_of_item) == (
        by_query.committed_by_currency, by_query.shipping_taken, by_query.refund_of_item
    )
    assert get(client, "/api/v1/orders/SHOP-1001/", token).json()["refundable_amount"] == detail.refundable_amount
