"""Property: whatever JSON value a signed event carries in any field the intake reads, the
webhook never answers 5xx, and no item moves unless the event is fully ours and well-formed
(DESIGN.md §10)."""

import copy
import json
import re
import time

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refunds.models import ItemState, Refund, RefundStatus

from .factories import paid_order_with_items
from .stripe_payloads import deliver, event, refund_object_for, sign
from .webhook_scenarios import requested_refund, states, submitted_refund

pytestmark = pytest.mark.django_db

STATUSES = ["pending", "requires_action", "succeeded", "failed", "canceled"]
STRIPE_ID = re.compile(r"[A-Za-z0-9_\-]{1,255}")
REFUND_EVENT_TYPES = ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"]

# The fields the intake reads, as paths into the event.
FIELDS = [
    ("id",), ("type",), ("created",),
    ("data", "object", "id"), ("data", "object", "status"), ("data", "object", "amount"),
    ("data", "object", "currency"), ("data", "object", "payment_intent"), ("data", "object", "created"),
    ("data", "object", "failure_reason"), ("data", "object", "reason"), ("data", "object", "metadata"),
    ("data", "object", "metadata", "oms_refund_id"), ("data", "object", "metadata", "oms_idempotency_key"),
    ("data", "object", "metadata", "order_reference"), ("data", "object", "object"),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# Values that sit on the edges of what the intake accepts.
edge_values = st.sampled_from([
    "weird", "", "²", "1", "٣", " 1", "01", str(2**63), str(2**63 - 1), 2**63 - 1, 2**63, 2**64, -1, 0, 1,
    10**12, 10**10, True, 1.5, "re_other", "pi_other", "usd", "EUR", "eur", "x" * 256, "x" * 600,
    *STATUSES, *REFUND_EVENT_TYPES, "charge.refunded", {"id": "pi_other"}, [], {},
])


def put(evt: dict, path: tuple, value) -> None:
    target = evt
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value


def fully_ours_and_well_formed(evt: dict, original: dict, refund: Refund, by_stripe_id: bool) -> bool:
    """An independent judgement, field by field, of whether the event may move our items."""
    now = int(time.time())
    obj = evt.get("data", {}).get("object")
    if not isinstance(obj, dict) or obj.get("object") != "refund":
        return False
    if not (isinstance(evt.get("id"), str) and STRIPE_ID.fullmatch(evt["id"])) or evt.get("type") not in REFUND_EVENT_TYPES:
        return False
    if not (type(evt.get("created")) is int and now - 30 * 86400 <= evt["created"] <= now + 300):
        return False
    if not (type(obj.get("created")) is int and 0 < obj["created"] <= now + 300):
        return False
    if obj.get("status") not in STATUSES:
        return False
    if not (type(obj.get("amount")) is int and obj["amount"] == refund.amount):
        return False
    if obj.get("currency") != "eur" or obj.get("payment_intent") != refund.order.stripe_payment_intent_id:
        return False
    for field in ("failure_reason", "reason"):
        if not (obj.get(field) is None or (isinstance(obj[field], str) and len(obj[field]) <= 255)):
            return False
    metadata = obj.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > 50:
            return False
        if any(len(k) > 40 or not isinstance(v, str) or len(v) > 500 for k, v in metadata.items()):
            return False
    if by_stripe_id:
        return obj.get("id") == original["data"]["object"]["id"]
    metadata = metadata or {}
    return (
        isinstance(obj.get("id"), str) and STRIPE_ID.fullmatch(obj["id"]) is not None
        and metadata.get("oms_refund_id") == str(refund.pk)
        and metadata.get("oms_idempotency_key") == refund.idempotency_key
    )


def pending_or_queued_refund(user, by_stripe_id: bool) -> Refund:
    order = paid_order_with_items(1000, 2000)
    if by_stripe_id:
        return submitted_refund(order.items.all(), user, stripe_refund_id="re_fuzz")
    refund = requested_refund(order.items.all(), user)
    Refund.objects.filter(pk=refund.pk).update(status=RefundStatus.QUEUED)
    refund.refresh_from_db()
    return refund


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    by_stripe_id=st.booleans(),
    field=st.sampled_from(FIELDS),
    value=st.one_of(edge_values, json_values),
)
def test_any_value_in_any_field_never_answers_5xx_nor_moves_an_item_unless_fully_ours(
    client, back_office_user, fake_stripe, by_stripe_id, field, value
):
    with transaction.atomic():  # each example starts from an empty database
        refund = pending_or_queued_refund(back_office_user, by_stripe_id)
        original = event("refund.updated", refund_object_for(refund, id="re_fuzz", status="succeeded"))
        evt = copy.deepcopy(original)
        put(evt, field, value)

        response = deliver(client, evt)

        assert response.status_code < 500, response.content
        if not fully_ours_and_well_formed(evt, original, refund, by_stripe_id):
            assert set(states(refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}, (field, value)
        transaction.set_rollback(True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS[3:]), depth=st.integers(1, 6000))
def test_any_nesting_in_any_field_never_answers_5xx(client, back_office_user, fake_stripe, field, depth):
    with transaction.atomic():
        refund = pending_or_queued_refund(back_office_user, True)
        evt = event("refund.updated", refund_object_for(refund, id="re_fuzz", status="succeeded"))
        put(evt, field, "__NEST__")
        body = json.dumps(evt).replace('"__NEST__"', "[" * depth + "]" * depth).encode()

        response = deliver(client, body=body, signature=sign(body))

        assert response.status_code < 500, response.content
        assert set(states(refund.items.all())) == {ItemState.PAYMENT_REFUND_PENDING}
        transaction.set_rollback(True)
