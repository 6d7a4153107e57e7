"""Who may use the REST API (DESIGN.md §8): Bearer tokens stored hashed, revoked in the admin,
acting with their user's permissions, throttled per token."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.core.management import CommandError, call_command

from refunds.models import ApiToken, Order

from .api_helpers import ALL_API_PERMISSIONS, api_token, get, order_body, post, problem, table_counts, token_for, user_with
from .conftest import table_rows
from .factories import UserFactory, paid_order_with_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(db) -> Order:
    return paid_order_with_items(1000, 2000, reference="SHOP-1001")


def endpoints(order: Order):
    """(method, url, body, the permission it needs) for every endpoint of §8."""
    item = order.items.order_by("pk").first().pk
    return [
        ("post", "/api/v1/orders/", order_body("SHOP-9"), "add_order"),
        ("get", "/api/v1/orders/SHOP-1001/", None, "view_order"),
        ("post", "/api/v1/orders/SHOP-1001/refunds/preview/", {"items": [item]}, "view_order"),
        ("post", "/api/v1/orders/SHOP-1001/refunds/", {"items": [item]}, "refund_orderitem"),
        ("get", "/api/v1/refunds/1/", None, "view_refund"),
    ]


def call(client, method, url, body, token=None, **headers):
    if method == "get":
        return get(client, url, token, **headers)
    return post(client, url, body, token, **headers)


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Bearer rfd_not-a-token", "Bearer a b", "Token rfd_x", "Basic YWxpY2U6c2VjcmV0", "Bearer \u00e9",
])
def test_without_a_valid_token_every_endpoint_is_401_and_nothing_written(client, order, authorization):
    api_token()  # a token exists, just not this one
    before = table_counts()
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    for method, url, body, _ in endpoints(order):
        response = call(client, method, url, body, **headers)
        problem(response, 401, "authentication-required")
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert table_counts() == before


@pytest.mark.parametrize("index", range(5))
def test_a_user_without_the_endpoints_permission_gets_403_and_nothing_is_written(client, order, index):
    method, url, body, needed = endpoints(order)[index]
    token = api_token(*[p for p in ALL_API_PERMISSIONS if p != needed])
    before = table_counts()

    response = call(client, method, url, body, token)

    assert f"refunds.{needed}" in problem(response, 403, "permission-denied")["detail"]
    assert table_counts() == before


@pytest.mark.parametrize("index", range(5))
def test_the_endpoints_permission_alone_is_enough(client, order, index, fake_stripe):
    method, url, body, needed = endpoints(order)[index]
    response = call(client, method, url, body, api_token(needed))
    assert response.status_code in (200, 201, 404), response.content  # 404: refund 1 does not exist yet
    if url == "/api/v1/refunds/1/":
        problem(response, 404, "not-found")


def test_a_superusers_token_may_do_everything(client, order):
    token = token_for(UserFactory(username="root", is_superuser=True, password=None))
    assert get(client, "/api/v1/orders/SHOP-1001/", token).status_code == 200


def test_another_users_token_acts_as_that_user(client, order):
    """Alice's token is Alice: a refund made with it is hers, and her missing permission counts."""
    alice = user_with(*ALL_API_PERMISSIONS, username="alice")
    bob = user_with("view_order", username="bob")
    alices, bobs = token_for(alice), token_for(bob)
    item = order.items.order_by("pk").first().pk

    problem(post(client, "/api/v1/orders/SHOP-1001/refunds/", {"items": [item]}, bobs), 403)
    made = post(client, "/api/v1/orders/SHOP-1001/refunds/", {"items": [item]}, alices)

    assert made.status_code == 201
    assert order.refunds.get().created_by == alice


def test_a_revoked_token_is_401_and_nothing_written(client, order):
    token = api_token()
    admin = UserFactory(username="root", is_superuser=True)
    client.force_login(admin)
    row = ApiToken.objects.get()

    revoked = client.post("/admin/refunds/apitoken/", {"action": "revoke_tokens", "_selected_action": [row.pk]}, follow=True)

    assert "1 token revoked." in revoked.content.decode()
    client.logout()
    before = table_counts()
    for method, url, body, _ in endpoints(order):
        problem(call(client, method, url, body, token), 401, "authentication-required")
    assert table_counts() == before


def test_an_inactive_users_token_is_401(client, order):
    token = api_token(username="gone")
    user = ApiToken.objects.get().user
    user.is_active = False
    user.save(update_fields=["is_active"])
    problem(get(client, "/api/v1/orders/SHOP-1001/", token), 401)


def test_only_the_tokens_hash_is_stored_and_its_last_use_is_shown_in_the_admin(client, order):
    token = api_token(username="portal")
    row = ApiToken.objects.get()
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {row.key_hash, row.prefix, row.name} and token.startswith(row.prefix)
    assert row.last_used_at is None

    get(client, "/api/v1/orders/SHOP-1001/", token)

    row.refresh_from_db()
    assert row.last_used_at is not None
    client.force_login(UserFactory(username="root", is_superuser=True))
    [cells] = table_rows(client.get("/admin/refunds/apitoken/"), "result_list")
    assert cells[1].startswith(row.prefix) and cells[2] == "portal"
    assert cells[5] != "-" and cells[6] == "-"  # last used: a date; revoked: not


def test_create_api_token_prints_a_working_token_once(client, order):
    user_with("view_order", username="portal")
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_token", "portal", "--name", "returns portal", stdout=out, stderr=err)

    token = out.getvalue().strip()
    assert re.fullmatch(r"rfd_[A-Za-z0-9_-]{43}", token), token
    assert "shown once" in err.getvalue()
    assert ApiToken.objects.get().name == "returns portal"
    assert get(client, "/api/v1/orders/SHOP-1001/", token).status_code == 200


def test_create_api_token_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("create_api_token", "nobody")
    assert not ApiToken.objects.exists()


def test_tokens_need_no_second_factor(client, order, settings):
    """A deliberate choice (README, "API"): the Back Office's TOTP does not apply to tokens."""
    settings.REFUND_REQUIRE_2FA = True
    token = api_token()
    response = post(client, "/api/v1/orders/SHOP-1001/refunds/", {"items": [order.items.order_by("pk").first().pk]}, token)
    assert response.status_code == 201


def test_over_the_rate_a_token_gets_429_with_retry_after_and_other_tokens_do_not(client, order, settings):
    settings.REFUND_API_THROTTLE_RATE = "2/minute"
    token, other = api_token(username="busy"), api_token(username="calm")
    assert [get(client, "/api/v1/orders/SHOP-1001/", token).status_code for _ in range(2)] == [200, 200]
    before = table_counts()

    throttled = post(client, "/api/v1/orders/", order_body("SHOP-2"), token)

    problem(throttled, 429, "rate-limited")
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert table_counts() == before
    assert get(client, "/api/v1/orders/SHOP-1001/", other).status_code == 200
