"""Property: whatever order Stripe delivers several refunds' events in, and however often,
every item ends in the state implied by the newest Stripe status of its refund."""

import time

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refunds.gateway import StripeRefund
from refunds.models import ItemState, Refund, StripeEvent

from .factories import paid_order_with_items
from .stripe_payloads import charge_object, deliver, event, refund_object_for
from .webhook_scenarios import requested_refund, states

pytestmark = pytest.mark.django_db

# The status sequences a Stripe refund really goes through (https://docs.stripe.com/refunds#refund-events):
# created pending (or requires_action, or succeeded at once), then an outcome, and sometimes a
# late failure of a succeeded refund.
LIFECYCLES = [
    ["pending"],
    ["requires_action"],
    ["succeeded"],
    ["pending", "succeeded"],
    ["pending", "failed"],
    ["pending", "canceled"],
    ["requires_action", "pending", "succeeded"],
    ["requires_action", "canceled"],
    ["succeeded", "failed"],
    ["pending", "succeeded", "failed"],
]
IMPLIED_ITEM_STATE = {
    "pending": ItemState.PAYMENT_REFUND_PENDING,
    "requires_action": ItemState.PAYMENT_REFUND_PENDING,
    "succeeded": ItemState.PAYMENT_REFUND_SUCCEEDED,
    "failed": ItemState.PAYMENT_REFUND_FAILED,
    "canceled": ItemState.PAYMENT_REFUND_FAILED,
}


@st.composite
def refund_histories(draw, refund_count):
    """Per refund: its statuses with the `created` offsets of their events (0 s apart = a tie)."""
    histories = []
    for _ in range(refund_count):
        statuses = draw(st.sampled_from(LIFECYCLES))
        gaps = draw(st.lists(st.integers(0, 2), min_size=len(statuses), max_size=len(statuses)))
        offsets = [sum(gaps[: i + 1]) for i in range(len(statuses))]
        # An event type per step: the first is refund.created; a charge.refunded may come along.
        kinds = draw(st.lists(st.sampled_from(["refund.updated", "charge.refund.updated", "charge.refunded"]),
                              min_size=len(statuses), max_size=len(statuses)))
        kinds[0] = "refund.created"
        histories.append(list(zip(statuses, offsets, kinds)))
    return histories


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_delivery_order_with_duplicates_ends_in_the_newest_stripe_status(client, back_office_user, fake_stripe, data):
    refund_count = data.draw(st.integers(2, 3), label="refunds")
    histories = data.draw(refund_histories(refund_count), label="histories")
    with transaction.atomic():  # each example starts from an empty database
        fake_stripe.refunds.clear()
        base = int(time.time()) - 100
        refunds, events = [], []
        for number, history in enumerate(histories):
            order = paid_order_with_items(1000, 2000)
            refund = requested_refund(order.items.all(), back_office_user)  # queued: matched by metadata
            stripe_id = f"re_prop{number}"
            refunds.append((refund, history[-1][0]))
            for status, offset, kind in history:
                obj = refund_object_for(refund, id=stripe_id, status=status)
                if kind == "charge.refunded":
                    obj = charge_object(refunds=[obj], payment_intent=order.stripe_payment_intent_id)
                events.append(event(kind, obj, created=base + offset))
            # What Stripe says when asked after a tie: the refund as it is now, its newest status.
            fake_stripe.refunds[stripe_id] = StripeRefund.from_stripe(refund_object_for(refund, id=stripe_id, status=history[-1][0]))

        duplicates = data.draw(st.lists(st.sampled_from(events), max_size=4), label="duplicates")
        deliveries = data.draw(st.permutations(events + duplicates), label="delivery order")

        answers = [deliver(client, evt).status_code for evt in deliveries]

        assert answers == [200] * len(deliveries)
        assert StripeEvent.objects.filter(processed_at__isnull=False).count() == len(events)
        for refund, newest_status in refunds:
            refund.refresh_from_db()
            assert refund.status == newest_status
            assert set(states(refund.items.all())) == {IMPLIED_ITEM_STATE[newest_status]}
        transaction.set_rollback(True)
    assert not Refund.objects.exists()
