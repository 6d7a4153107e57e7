"""Talking to the REST API as a shop's client does: JSON bodies, a Bearer token, problem details."""

from __future__ import annotations

import json

from django.contrib.auth.models import Permission

from refunds.api.tokens import create_api_token

from .factories import UserFactory

PROBLEM = "application/problem+json"


def user_with(*permissions: str, username: str | None = None):
    """A user holding exactly the given `refunds.*` permissions (codenames)."""
    # No password: a token's user needs none, and hashing one per test is slow.
    user = UserFactory(password=None, **({"username": username} if username else {}))
    if permissions:
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="refunds", codename__in=[p.split(".")[-1] for p in permissions])
        )
    assert {f"refunds.{p.split('.')[-1]}" for p in permissions} <= user.get_all_permissions()
    return user


def token_for(user, name: str = "") -> str:
    return create_api_token(user=user, name=name)[1]


ALL_API_PERMISSIONS = ("add_order", "view_order", "refund_orderitem", "view_refund")


def api_token(*permissions: str, username: str | None = None) -> str:
    return token_for(user_with(*(permissions or ALL_API_PERMISSIONS), username=username))


def auth(token: str | None) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}


def post(client, url: str, body, token: str | None, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data, content_type=headers.pop("content_type", "application/json"), **auth(token), **headers)


def get(client, url: str, token: str | None, **headers):
    return client.get(url, **auth(token), **headers)


def problem(response, status: int, slug: str | None = None) -> dict:
    """The problem details body of an error answer, checked for RFC 9457's members."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"] == PROBLEM, response["Content-Type"]
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    if slug is not None:
        assert body["type"] == f"urn:refunds-oms:problem:{slug}", body
    return body


def order_body(reference: str = "SHOP-1001", **overrides) -> dict:
    body = {
        "reference": reference,
        "currency": "eur",
        "payment_intent": "pi_3QabcDEF123",
        "customer_email": "mia@example.com",
        "shipping_amount": 495,
        "items": [
            {"sku": "SHIRT-M", "name": "Linen shirt, M", "amount": 4990},
            {"sku": "SOCKS-3", "name": "Wool socks", "amount": 1200, "quantity": 3},
        ],
    }
    body.update(overrides)
    return body


def table_counts() -> dict[str, int]:
    """Rows of every table a request could write; equal before and after = nothing written."""
    from refunds.models import ApiIdempotencyKey, ItemTransition, Order, OrderItem, Refund

    return {model.__name__: model.objects.count() for model in (Order, OrderItem, Refund, ItemTransition, ApiIdempotencyKey)}
