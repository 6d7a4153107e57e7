"""Property: whatever JSON a client sends in any field of an order or a refund request, the API
never answers 5xx, and an answer that is not a success writes nothing (DESIGN.md §8, "never a
500 for bad input, and nothing written")."""

import json

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refunds.models import Order

from .api_helpers import api_token, order_body, post, table_counts

pytestmark = pytest.mark.django_db

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
edge_values = st.sampled_from([
    "", " ", "\x00", "\ud800", "eur", "EUR", "xyz", "pi_", "pi_x", "pi_x\x00", "a@b.c", "a" * 300 + "@example.com",
    0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, 10**12, 10**12 + 1, 10**30, 1.0, 1.5, True, False, None, [], {}, [0], [2**63],
    "x" * 65, "x" * 256, "R/1", "R 1", "²",
])
values = json_values | edge_values

ORDER_FIELDS = [
    ("reference",), ("currency",), ("payment_intent",), ("customer_email",), ("shipping_amount",),
    ("amount_captured",), ("items",), ("items", 0), ("items", 0, "sku"), ("items", 0, "name"),
    ("items", 0, "amount"), ("items", 0, "quantity"), ("extra",),
]
REFUND_FIELDS = ["items", "amount", "reason", "note", "extra"]
HYPOTHESIS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _no_throttle(settings):
    settings.REFUND_API_THROTTLE_RATE = "1000000/minute"  # hundreds of examples in one test


def put(body, path, value):
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def posted(client, url, body, token):
    """POST `body` as JSON (a lone surrogate sent as its JSON escape, as any client would)."""
    return post(client, url, json.dumps(body).encode(), token)


@settings(max_examples=300, **HYPOTHESIS)
@given(field=st.sampled_from(ORDER_FIELDS), value=values)
def test_any_value_in_any_field_of_an_order_never_answers_5xx_and_a_refusal_writes_nothing(client, field, value):
    with transaction.atomic():  # each example starts from an empty database
        token = api_token()
        body = order_body()
        put(body, field, value)
        before = table_counts()

        response = posted(client, "/api/v1/orders/", body, token)

        assert response.status_code < 500, (field, value, response.content)
        if response.status_code == 201:
            assert Order.objects.filter(reference=body["reference"]).exists()
        else:
            assert response["Content-Type"] == "application/problem+json"
            assert table_counts() == before, (field, value, response.status_code)
        transaction.set_rollback(True)


@settings(max_examples=300, **HYPOTHESIS)
@given(fields=st.dictionaries(st.sampled_from(REFUND_FIELDS), values, max_size=3), preview=st.booleans())
def test_any_refund_request_never_answers_5xx_and_a_refusal_writes_nothing(client, fake_stripe, fields, preview):
    with transaction.atomic():
        token = api_token()
        assert post(client, "/api/v1/orders/", order_body(), token).status_code == 201
        before = table_counts()
        url = "/api/v1/orders/SHOP-1001/refunds/" + ("preview/" if preview else "")

        response = posted(client, url, fields, token)

        assert response.status_code < 500, (fields, response.content)
        if preview or response.status_code != 201:
            assert table_counts() == before, (fields, response.status_code)
        transaction.set_rollback(True)
