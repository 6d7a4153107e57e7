"""What a Back Office user does to a refund, an item or an event shows on that object's History
page (django.contrib.admin's LogEntry), with who did it, as Django's own add and change do."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse

from refunds import services
from refunds.models import ItemState, OrderItem, Refund, StripeEvent

from . import stripe_payloads
from .conftest import post_confirmed, table_rows
from .factories import paid_order_with_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, back_office_user):
    client.force_login(back_office_user)
    return client


def history(client, obj) -> list[tuple[str, str]]:
    """(user, action) of each entry on the object's History page, oldest first."""
    url = reverse(f"admin:refunds_{obj._meta.model_name}_history", args=[obj.pk])
    response = client.get(url)
    assert response.status_code == 200
    return [(user, action) for _when, user, action in table_rows(response, "change-history")]


def post_action(client, url, action, objects, **data):
    """The action, and with post="yes" also its confirmation, as a user confirms it."""
    return post_confirmed(client, url, {"action": action, ACTION_CHECKBOX_NAME: [obj.pk for obj in objects], **data})


def sent_refund(items, *, user, fake_stripe, status) -> Refund:
    """A refund requested and answered by (fake) Stripe with `status`."""
    fake_stripe.next_status = status
    [refund] = services.request_refund(items=items, user=user)
    return services.submit_refund(refund_id=refund.pk)


# --- a refund requested ---------------------------------------------------------------------


def test_refunding_items_adds_the_refund_and_changes_its_order_in_their_history(alice_client, paid_order):
    first, second, third = paid_order.items.order_by("pk")

    post_action(
        alice_client, reverse("admin:refunds_orderitem_changelist"), "refund_items", [first, second],
        post="yes", reason="duplicate",
    )

    refund = Refund.objects.get()
    assert history(alice_client, refund) == [("alice", "Refund requested: 2 items, €30.00 (reason: duplicate)")]
    assert history(alice_client, paid_order) == [
        ("alice", f"Refund #{refund.pk} requested: 2 items, €30.00 (reason: duplicate)")
    ]
    assert LogEntry.objects.get(object_id=str(refund.pk), content_type__model="refund").action_flag == ADDITION
    assert LogEntry.objects.get(object_id=str(paid_order.pk), content_type__model="order").action_flag == CHANGE


def test_refunding_orders_records_each_orders_refund(alice_client, paid_order):
    other = paid_order_with_items(700)
    orders = reverse("admin:refunds_order_changelist")

    post_action(alice_client, orders, "refund_orders", [paid_order, other], post="yes")

    ours, theirs = paid_order.refunds.get(), other.refunds.get()
    assert history(alice_client, ours) == [("alice", "Refund requested: 3 items, €40.45")]  # shipping included
    assert history(alice_client, theirs) == [("alice", "Refund requested: 1 item, €11.95")]
    assert history(alice_client, paid_order) == [("alice", f"Refund #{ours.pk} requested: 3 items, €40.45")]
    assert history(alice_client, other) == [("alice", f"Refund #{theirs.pk} requested: 1 item, €11.95")]


def test_the_order_pages_refund_button_is_recorded_too(alice_client, paid_order):
    button = reverse("admin:refunds_order_refund", args=[paid_order.pk])

    post_confirmed(alice_client, button, {"post": "yes", "reason": "fraudulent"})

    refund = paid_order.refunds.get()
    assert history(alice_client, refund) == [("alice", "Refund requested: 3 items, €40.45 (reason: fraudulent)")]
    assert history(alice_client, paid_order) == [
        ("alice", f"Refund #{refund.pk} requested: 3 items, €40.45 (reason: fraudulent)")
    ]


def test_a_refused_request_leaves_no_history(alice_client, paid_order, back_office_user):
    item = paid_order.items.first()
    services.request_refund(items=[item], user=back_office_user)  # already pending

    post_action(alice_client, reverse("admin:refunds_orderitem_changelist"), "refund_items", [item], post="yes")

    assert history(alice_client, paid_order) == []
    assert not LogEntry.objects.exists()


# --- confirmed by hand ----------------------------------------------------------------------


def test_confirming_by_hand_is_in_each_items_history(alice_client, paid_order, back_office_user, fake_stripe):
    first, second, third = paid_order.items.order_by("pk")
    sent_refund([first, second], user=back_office_user, fake_stripe=fake_stripe, status="succeeded")

    post_action(alice_client, reverse("admin:refunds_orderitem_changelist"), "confirm_refund_now", [first, second])

    assert OrderItem.objects.get(pk=first.pk).state == ItemState.PAYMENT_REFUNDED
    assert history(alice_client, first) == [("alice", "Confirmed by hand: payment refunded")]
    assert history(alice_client, second) == [("alice", "Confirmed by hand: payment refunded")]
    assert history(alice_client, third) == []


# --- checked with Stripe --------------------------------------------------------------------


def test_checking_with_stripe_is_in_the_refunds_history(alice_client, paid_order, back_office_user, fake_stripe):
    refund = sent_refund([paid_order.items.first()], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    button = reverse("admin:refunds_refund_check_status", args=[refund.pk])

    alice_client.post(button)  # Stripe still says pending
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")
    post_action(alice_client, reverse("admin:refunds_refund_changelist"), "check_status_with_stripe", [refund])

    assert history(alice_client, refund) == [
        ("alice", "Checked with Stripe: pending, unchanged"),
        ("alice", "Checked with Stripe: pending → succeeded"),
    ]


# --- events reprocessed ---------------------------------------------------------------------


@pytest.fixture
def unapplied_event(paid_order, back_office_user, fake_stripe):
    """A refund.updated saying 'succeeded', stored but not applied."""
    refund = sent_refund([paid_order.items.first()], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")
    payload = stripe_payloads.event("refund.updated", stripe_payloads.refund_object_for(refund, status="succeeded"))
    return StripeEvent.objects.create(
        stripe_event_id=payload["id"], type=payload["type"], payload=payload,
        error="OperationalError: database is locked",
    )


def test_reprocessing_an_event_is_in_its_history(alice_client, unapplied_event):
    post_action(alice_client, reverse("admin:refunds_stripeevent_changelist"), "reprocess", [unapplied_event])

    unapplied_event.refresh_from_db()
    assert unapplied_event.processed_at is not None
    assert history(alice_client, unapplied_event) == [("alice", "Stripe event reprocessed")]


def test_an_event_that_still_cannot_be_applied_says_so_in_its_history(alice_client, db):
    payload = stripe_payloads.event("refund.updated", stripe_payloads.charge_object(refunds=None))
    event = StripeEvent.objects.create(stripe_event_id=payload["id"], type=payload["type"], payload=payload)

    post_action(alice_client, reverse("admin:refunds_stripeevent_changelist"), "reprocess", [event])

    assert history(alice_client, event) == [("alice", "Stripe event reprocessed: could not be applied (InvalidEvent)")]
