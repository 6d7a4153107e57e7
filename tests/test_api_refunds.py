"""Refunds through the REST API (DESIGN.md §8): preview, request, read back; every bad input;
Idempotency-Key, also two requests at once on PostgreSQL."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from refunds import gateway
from refunds.models import ApiIdempotencyKey, ItemState, Order, Refund, RefundStatus
from refunds.services import refund_requests
from refunds_dev import stripe_tools

from .api_helpers import api_token, get, order_body, post, problem, table_counts
from .concurrency import HeldCall, run_overlapping
from .conftest import skip_unless_postgres

REFUNDS = "/api/v1/orders/SHOP-1001/refunds/"
PREVIEW = "/api/v1/orders/SHOP-1001/refunds/preview/"


@pytest.fixture
def token(db):
    return api_token(username="portal")


@pytest.fixture
def order(client, token) -> Order:
    """SHOP-1001 through the API: a shirt (€49.90), three pairs of socks (€12.00 each), €4.95 shipping."""
    assert post(client, "/api/v1/orders/", order_body(), token).status_code == 201
    return Order.objects.get(reference="SHOP-1001")


def item_ids(order: Order) -> list[int]:
    return list(order.items.order_by("pk").values_list("pk", flat=True))


# --- The whole way, with localstripe ---------------------------------------------------------

@pytest.mark.localstripe
@pytest.mark.django_db
def test_an_order_created_previewed_refunded_sent_to_localstripe_and_read_back(
    client, token, localstripe, settings, django_capture_on_commit_callbacks
):
    settings.STRIPE_SEND_REFUND_REASON = False  # localstripe answers 400 to `reason`
    intent = stripe_tools.create_paid_payment_intent(amount=9085, currency="eur")
    created = post(client, "/api/v1/orders/", order_body(payment_intent=intent), token)
    assert created.status_code == 201, created.content
    shirt, *socks = [item["id"] for item in created.json()["items"]]

    preview = post(client, PREVIEW, {"items": [shirt, socks[0]]}, token)
    assert preview.status_code == 200
    assert {key: preview.json()[key] for key in ("amount", "shipping_amount", "refundable", "blocked")} == {
        "amount": 6190, "shipping_amount": 0, "refundable": True, "blocked": [],
    }
    with django_capture_on_commit_callbacks(execute=True):
        requested = post(client, REFUNDS, {"items": [shirt, socks[0]], "reason": "requested_by_customer"}, token)
    assert requested.status_code == 201, requested.content
    assert requested.json()["status"] == "queued"  # the answer is given before Stripe is asked

    read = get(client, requested["Location"], token)

    assert read.status_code == 200
    body = read.json()
    at_stripe = gateway.retrieve_refund(body["stripe_refund_id"])
    assert (at_stripe.amount, at_stripe.status, at_stripe.payment_intent) == (6190, "succeeded", intent)
    assert at_stripe.metadata["oms_refund_id"] == str(body["id"])
    assert {key: body[key] for key in ("order", "amount", "currency", "status", "failure_reason", "items", "reason")} == {
        "order": "SHOP-1001", "amount": 6190, "currency": "eur", "status": "succeeded", "failure_reason": "",
        "items": [shirt, socks[0]], "reason": "requested_by_customer",
    }
    order = get(client, "/api/v1/orders/SHOP-1001/", token).json()
    assert [item["state"] for item in order["items"]] == [
        "payment_refund_succeeded", "payment_refund_succeeded", "payment_captured", "payment_captured",
    ]
    assert order["refundable_amount"] == 9085 - 6190


# --- Preview ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_preview_shows_blocked_items_shipping_and_approval_and_writes_nothing(client, token, order, settings, fake_stripe):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 5000}
    shirt, sock1, sock2, sock3 = item_ids(order)
    post(client, REFUNDS, {"items": [sock1]}, token)
    before = table_counts()

    body = post(client, PREVIEW, {"items": [shirt, sock1, sock2, sock3]}, token).json()

    assert [item["id"] for item in body["items"]] == [shirt, sock2, sock3]
    assert [(b["id"], b["reason"]) for b in body["blocked"]] == [(sock1, "its state is “payment refund pending”")]
    assert body["refundable"] is False  # the request as sent would be refused for sock1
    # nothing else is left unrefunded, so the shipping goes with it
    assert (body["shipping_amount"], body["amount"], body["needs_approval"]) == (495, 4990 + 2400 + 495, True)
    assert body["available"] == 9085 - 1200
    assert table_counts() == before


@pytest.mark.django_db
def test_the_preview_without_items_takes_every_refundable_item(client, token, order, fake_stripe):
    shirt, sock1, *_ = item_ids(order)
    post(client, REFUNDS, {"items": [shirt]}, token)

    body = post(client, PREVIEW, {}, token).json()

    assert len(body["items"]) == 3 and sock1 in [item["id"] for item in body["items"]]
    assert (body["blocked"], body["refundable"], body["amount"]) == ([], True, 3600 + 495)


@pytest.mark.django_db
def test_an_amount_preview_says_whether_it_fits(client, token, order):
    assert post(client, PREVIEW, {"amount": 9085}, token).json()["refundable"] is True
    over = post(client, PREVIEW, {"amount": 9086}, token).json()
    assert over["refundable"] is False and "would exceed what may still be refunded" in over["problems"][0]


# --- Requests --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_items_left_out_refunds_every_refundable_item_with_the_shipping(client, token, order, fake_stripe):
    shirt, *socks = item_ids(order)
    post(client, REFUNDS, {"items": [shirt]}, token)

    response = post(client, REFUNDS, {"note": "rest of the order"}, token)

    assert response.status_code == 201
    body = response.json()
    assert (body["items"], body["amount"], body["shipping_amount"]) == (socks, 3600 + 495, 495)
    assert Refund.objects.get(pk=body["id"]).note == "rest of the order"
    assert len(fake_stripe.create_calls) == 0  # sent after commit, which this test does not run


@pytest.mark.django_db
def test_an_amount_refund_moves_no_item(client, token, order, fake_stripe, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, REFUNDS, {"amount": 1000, "reason": "duplicate"}, token)

    assert response.status_code == 201
    assert (response.json()["items"], response.json()["amount"]) == ([], 1000)
    assert [call["amount"] for call in fake_stripe.create_calls] == [1000]
    assert set(order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_CAPTURED}


@pytest.mark.django_db
def test_a_refund_at_the_threshold_awaits_approval_and_is_not_sent(
    client, token, order, settings, fake_stripe, django_capture_on_commit_callbacks
):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 4990}
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, REFUNDS, {"items": [item_ids(order)[0]]}, token)

    assert response.json()["status"] == "awaiting_approval"
    assert fake_stripe.create_calls == []
    assert get(client, "/api/v1/orders/SHOP-1001/", token).json()["refundable_amount"] == 9085 - 4990


@pytest.mark.django_db
def test_the_refund_is_made_by_the_tokens_user(client, token, order):
    body = post(client, REFUNDS, {"items": [item_ids(order)[0]]}, token).json()
    assert Refund.objects.get(pk=body["id"]).created_by.username == "portal"


BAD_SHAPES = [
    b"{",
    b'{"items": [1,]}',
    json.dumps({"items": "1"}).encode(),
    json.dumps({"items": 1}).encode(),
    json.dumps({"items": ["1"]}).encode(),
    json.dumps({"items": [1.0]}).encode(),
    json.dumps({"items": [True]}).encode(),
    json.dumps({"items": [None]}).encode(),
    json.dumps({"amount": 12.5}).encode(),
    json.dumps({"amount": "1000"}).encode(),
    json.dumps({"amount": None}).encode(),
    json.dumps({"reason": "because"}).encode(),
    json.dumps({"note": 5}).encode(),
    json.dumps({"itemz": [1]}).encode(),
    json.dumps([1, 2]).encode(),
    b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
]


@pytest.mark.django_db
@pytest.mark.parametrize("raw", BAD_SHAPES)
def test_a_malformed_or_wrongly_typed_refund_request_is_400_and_nothing_written(client, token, order, fake_stripe, raw):
    before = table_counts()
    for url in (REFUNDS, PREVIEW):
        problem(post(client, url, raw, token), 400, "invalid-request")
    assert table_counts() == before


def unacceptable(order: Order, other: Order) -> list[tuple[dict, str]]:
    shirt, sock1, *_ = item_ids(order)
    return [
        ({"items": [999999]}, "are not items of order SHOP-1001"),
        ({"items": [10**30]}, "are not items of order SHOP-1001"),
        ({"items": [-1]}, "are not items of order SHOP-1001"),
        ({"items": [item_ids(other)[0]]}, "are not items of order SHOP-1001"),
        ({"items": [shirt, item_ids(other)[0]]}, "are not items of order SHOP-1001"),
        ({"items": []}, "`items` is empty"),
        ({"items": [shirt, shirt]}, "listed more than once"),
        ({"items": [shirt], "amount": 100}, "not both"),
        ({"amount": 0}, "above zero"),
        ({"amount": -100}, "above zero"),
        ({"amount": 9086}, "would exceed what may still be refunded"),
        ({"amount": 10**12}, "would exceed what may still be refunded"),
        ({"amount": 10**12 + 1}, "at most"),
        ({"amount": 10**30}, "at most"),
        ({"items": [sock1]}, "its state is “payment refund pending”"),  # already refunding (set up below)
    ]


@pytest.mark.django_db
def test_unacceptable_refund_requests_are_422_and_nothing_written(client, token, order, fake_stripe):
    other = Order.objects.get(reference=post(client, "/api/v1/orders/", order_body("SHOP-2002"), token).json()["reference"])
    post(client, REFUNDS, {"items": [item_ids(order)[1]]}, token)  # sock1 is now refunding
    before = table_counts()

    for body, message in unacceptable(order, other):
        response = post(client, REFUNDS, body, token, HTTP_IDEMPOTENCY_KEY=f"key-{json.dumps(body)}")
        assert message in problem(response, 422, "not-refundable")["detail"], (body, response.json())

    assert table_counts() == before
    assert fake_stripe.create_calls == []


@pytest.mark.django_db
def test_more_than_is_refundable_is_422(client, token, fake_stripe):
    # captured less than the items (an order-level discount): the last items cannot all go back
    post(client, "/api/v1/orders/", order_body(amount_captured=5000), token)
    before = table_counts()

    response = post(client, REFUNDS, {}, token)

    assert "would exceed what may still be refunded: €50.00 of €50.00" in problem(response, 422, "not-refundable")["detail"]
    assert table_counts() == before


@pytest.mark.django_db
def test_an_unknown_order_or_refund_is_404(client, token):
    problem(post(client, "/api/v1/orders/NOPE/refunds/", {}, token), 404, "not-found")
    problem(post(client, "/api/v1/orders/NOPE/refunds/preview/", {}, token), 404, "not-found")
    for reference in ("%00", "a%00b", "%F0%9F%98%80", "x" * 300, "%ED%A0%80"):
        problem(get(client, f"/api/v1/orders/{reference}/", token), 404, "not-found")
        problem(post(client, f"/api/v1/orders/{reference}/refunds/", {}, token), 404, "not-found")
    for refund_id in ("12345", "abc", "²", "1.5", "99999999999999999999999", "-1"):
        problem(get(client, f"/api/v1/refunds/{refund_id}/", token), 404, "not-found")
    assert Refund.objects.count() == 0


@pytest.mark.django_db
def test_a_2_mib_refund_request_is_413(client, token, order):
    raw = json.dumps({"items": [1], "note": "x" * (2 * 1024 * 1024)}).encode()
    problem(post(client, REFUNDS, raw, token), 413, "payload-too-large")
    assert Refund.objects.count() == 0


# --- Idempotency-Key -------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_same_key_twice_makes_one_refund_and_one_stripe_call(
    client, token, order, fake_stripe, django_capture_on_commit_callbacks
):
    body = {"items": item_ids(order)[:2], "reason": "requested_by_customer"}
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, REFUNDS, body, token, HTTP_IDEMPOTENCY_KEY="return-77")
    with django_capture_on_commit_callbacks(execute=True):
        # the same JSON, spelled differently
        again = post(client, REFUNDS, json.dumps(dict(reversed(body.items())), indent=2), token, HTTP_IDEMPOTENCY_KEY="return-77")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Refund.objects.count() == 1
    assert len(fake_stripe.create_calls) == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_409_and_nothing_written(client, token, order, fake_stripe):
    shirt, sock1, *_ = item_ids(order)
    post(client, REFUNDS, {"items": [shirt]}, token, HTTP_IDEMPOTENCY_KEY="k-1")
    before = table_counts()

    response = post(client, REFUNDS, {"items": [sock1]}, token, HTTP_IDEMPOTENCY_KEY="k-1")

    assert "was used with another request" in problem(response, 409, "idempotency-key-reused")["detail"]
    assert table_counts() == before


@pytest.mark.django_db
def test_the_same_key_from_another_token_is_another_key(client, token, order, fake_stripe):
    shirt, sock1, *_ = item_ids(order)
    other_token = api_token(username="storefront")

    first = post(client, REFUNDS, {"items": [shirt]}, token, HTTP_IDEMPOTENCY_KEY="k-1")
    second = post(client, REFUNDS, {"items": [sock1]}, other_token, HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert ApiIdempotencyKey.objects.filter(key="k-1").count() == 2


@pytest.mark.django_db
def test_a_refused_request_does_not_use_up_its_key(client, token, order, fake_stripe):
    shirt = item_ids(order)[0]
    refused = post(client, REFUNDS, {"amount": 100000}, token, HTTP_IDEMPOTENCY_KEY="k-2")
    assert refused.status_code == 422 and not ApiIdempotencyKey.objects.exists()

    assert post(client, REFUNDS, {"items": [shirt]}, token, HTTP_IDEMPOTENCY_KEY="k-2").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "schlüssel"])
def test_a_malformed_key_is_400(client, token, order, key):
    problem(post(client, REFUNDS, {}, token, HTTP_IDEMPOTENCY_KEY=key), 400, "invalid-request")
    assert Refund.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_same_key_twice_at_once_makes_one_refund_and_one_stripe_call(fake_stripe, monkeypatch):
    skip_unless_postgres()
    token = api_token(username="portal")
    assert post(Client(), "/api/v1/orders/", order_body(), token).status_code == 201
    body = {"items": item_ids(Order.objects.get())[:2]}
    # The first request waits inside its refund, key row inserted and order locked, until the
    # second is seen waiting for a lock (on the key's unique index): the two really overlap.
    held = HeldCall(refund_requests.plan_refunds)
    monkeypatch.setattr(refund_requests, "plan_refunds", held)

    first, second = run_overlapping(
        lambda: post(Client(), REFUNDS, body, token, HTTP_IDEMPOTENCY_KEY="at-once"),
        lambda: post(Client(), REFUNDS, body, token, HTTP_IDEMPOTENCY_KEY="at-once"),
        held=held,
    )

    assert (first.status_code, second.status_code) == (201, 201), (first.content, second.content)
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Refund.objects.count() == 1
    assert len(held.calls) == 1  # the second never planned a refund of its own
    assert len(fake_stripe.create_calls) == 1
    assert Refund.objects.get().status == RefundStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_the_same_order_twice_at_once_is_one_order(monkeypatch):
    skip_unless_postgres()
    from refunds.services import orders as order_service

    token = api_token(username="portal")
    # The first request waits after inserting its order row (before its items), until the
    # second is seen waiting for the reference's unique index.
    held = HeldCall(order_service.OrderItem.objects.bulk_create)
    monkeypatch.setattr(order_service.OrderItem.objects, "bulk_create", held)

    first, second = run_overlapping(
        lambda: post(Client(), "/api/v1/orders/", order_body(), token),
        lambda: post(Client(), "/api/v1/orders/", order_body(), token),
        held=held,
    )

    assert sorted([first.status_code, second.status_code]) == [200, 201], (first.content, second.content)
    assert first.json() == second.json()
    assert Order.objects.count() == 1 and Order.objects.get().items.count() == 4


@pytest.mark.django_db
def test_a_preview_that_makes_no_sense_is_422_and_one_that_cannot_be_honoured_says_why(client, token, order, fake_stripe):
    other = Order.objects.get(reference=post(client, "/api/v1/orders/", order_body("SHOP-2002"), token).json()["reference"])
    shirt, sock1, *_ = item_ids(order)
    post(client, REFUNDS, {"items": [sock1]}, token)
    before = table_counts()

    for body in ({"items": [item_ids(other)[0]]}, {"items": [10**30]}, {"items": []}, {"items": [shirt, shirt]},
                 {"items": [shirt], "amount": 1}, {"amount": 0}, {"amount": 10**30}):
        problem(post(client, PREVIEW, body, token), 422, "not-refundable")
    blocked = post(client, PREVIEW, {"items": [sock1]}, token).json()
    over = post(client, PREVIEW, {"amount": 10**12}, token).json()

    assert (blocked["refundable"], blocked["blocked"][0]["reason"]) == (False, "its state is “payment refund pending”")
    assert over["refundable"] is False and over["problems"]
    assert table_counts() == before


@pytest.mark.django_db
def test_with_every_item_refunding_there_is_nothing_left_to_refund(client, token, order, fake_stripe):
    assert post(client, REFUNDS, {}, token).status_code == 201
    before = table_counts()

    preview = post(client, PREVIEW, {}, token).json()
    refused = post(client, REFUNDS, {}, token)

    assert (preview["refundable"], preview["items"], preview["amount"]) == (False, [], 0)
    assert preview["problems"] == ["Order SHOP-1001 has no item that can be refunded now."]
    assert problem(refused, 422, "not-refundable")["detail"] == preview["problems"][0]
    assert table_counts() == before


@pytest.mark.django_db
def test_the_preview_is_what_the_back_office_confirmation_page_shows(client, token, order, settings, fake_stripe):
    """Both come from the planning rules (`services.preview_refunds` is the confirmation page's)."""
    from refunds import services

    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 3000}
    shirt, sock1, sock2, sock3 = item_ids(order)
    post(client, REFUNDS, {"items": [shirt]}, token)  # awaits approval: it still counts
    for selection in ([sock1], [sock1, sock2, sock3], [shirt, sock1]):
        [plan] = services.preview_refunds(list(order.items.filter(pk__in=selection)))
        body = post(client, PREVIEW, {"items": selection}, token).json()

        assert [item["id"] for item in body["items"]] == [item.pk for item in plan.items]
        assert [(b["id"], b["reason"]) for b in body["blocked"]] == [(b.item.pk, b.reason) for b in plan.blocked]
        assert (body["amount"], body["shipping_amount"], body["needs_approval"], body["available"]) == (
            plan.amount, plan.shipping_amount, plan.needs_approval, plan.available
        )
