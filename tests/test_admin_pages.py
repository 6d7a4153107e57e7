"""Back Office pages: orders, items, refunds, Stripe events — what they show and their actions."""

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from refunds import gateway, services
from refunds.exceptions import StripeRetryableError
from refunds.models import ItemState, OrderItem, Refund, RefundOrigin, RefundStatus, StripeEvent

from . import stripe_payloads
from .conftest import inline_rows, readonly_field, table_rows
from .factories import UserFactory, paid_order_with_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, back_office_user):
    client.force_login(back_office_user)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def text_of(response) -> str:
    """The page's visible text, tags dropped and spaces collapsed, for reading like a user."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html).replace("&nbsp;", " "))


def sent_refund(items, *, user, fake_stripe, status="pending") -> Refund:
    """A refund requested in the Back Office and answered by (fake) Stripe with `status`."""
    fake_stripe.next_status = status
    (refund,) = services.request_refund(items=items, user=user)
    return services.submit_refund(refund_id=refund.pk)


@pytest.fixture
def busy_order(paid_order, back_office_user, fake_stripe):
    """DE--100x: item 1 refunded at Stripe (succeeded), item 2 pending, item 3 captured, plus a
    €2.00 refund made in the Stripe Dashboard."""
    first, second, _ = paid_order.items.order_by("pk")
    sent_refund([first], user=back_office_user, fake_stripe=fake_stripe, status="succeeded")
    sent_refund([second], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    Refund.objects.create(
        order=paid_order, amount=200, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_dashboard0001", status=RefundStatus.SUCCEEDED,
    )
    return paid_order


# --- orders -------------------------------------------------------------------------------


def test_order_list_shows_total_currency_and_a_summary_of_item_states(alice_client, busy_order):
    text = text_of(alice_client.get(reverse("admin:refunds_order_changelist")))

    assert busy_order.reference in text
    assert busy_order.customer_email in text
    assert "€40.45" in text  # items 35.50 + shipping 4.95
    assert "EUR" in text
    assert "1 × payment captured" in text
    assert "1 × payment refund pending" in text
    assert "1 × payment refund succeeded" in text
    assert "refunded outside this system" in text


def test_order_list_filters_by_item_state_without_changing_the_totals(alice_client, busy_order):
    quiet = paid_order_with_items(700)
    url = reverse("admin:refunds_order_changelist")

    pending = text_of(alice_client.get(url, {"item_state": ItemState.PAYMENT_REFUND_PENDING}))
    captured = text_of(alice_client.get(url, {"item_state": ItemState.PAYMENT_CAPTURED}))

    assert busy_order.reference in pending and quiet.reference not in pending
    assert "€40.45" in pending  # the whole order's total, not the pending item's
    assert busy_order.reference in captured and quiet.reference in captured


@pytest.mark.parametrize("term", ["reference", "customer_email", "stripe_payment_intent_id", "stripe_refund_id"])
def test_order_search_finds_by_reference_email_payment_intent_and_stripe_refund(alice_client, busy_order, term):
    other = paid_order_with_items(700)
    query = busy_order.refunds.exclude(stripe_refund_id=None).first().stripe_refund_id if term == "stripe_refund_id" \
        else getattr(busy_order, term)

    response = alice_client.get(reverse("admin:refunds_order_changelist"), {"q": query})

    assert list(response.context["cl"].result_list) == [busy_order]
    assert other.reference not in text_of(response)


def test_order_page_shows_items_refunds_history_and_flags_dashboard_refunds(alice_client, busy_order):
    response = alice_client.get(reverse("admin:refunds_order_change", args=[busy_order.pk]))
    text, html = text_of(response), response.content.decode()

    assert response.status_code == 200
    for label in ("payment refund succeeded", "payment refund pending", "payment captured"):
        assert label in text
    assert "€10.00" in text and "€20.00" in text and "€5.50" in text
    assert "State changed at" in text  # "state since" column of the items
    stripe_ids = list(busy_order.refunds.values_list("stripe_refund_id", flat=True))
    for stripe_id in stripe_ids:
        assert f'href="https://dashboard.stripe.com/test/refunds/{stripe_id}"' in html
    assert "Refunded outside this system." in text
    assert "outside this system (Stripe Dashboard)" in text
    first, second, _ = busy_order.items.order_by("pk")
    first_refund, second_refund = first.refunds.get(), second.refunds.get()
    history = [row[1:] for row in table_rows(response, "transition-history")]  # all but the time
    assert sorted(history) == sorted([
        [first.sku, "refund started", "payment captured", "payment refund pending", "alice", str(first_refund)],
        [first.sku, "Stripe confirmed the refund", "payment refund pending", "payment refund succeeded",
         "Stripe API response", str(first_refund)],
        [second.sku, "refund started", "payment captured", "payment refund pending", "alice", str(second_refund)],
    ])
    assert 'name="state"' not in html  # the state is never a form field


def test_order_page_cannot_be_saved(alice_client, paid_order):
    response = alice_client.post(reverse("admin:refunds_order_change", args=[paid_order.pk]), {"reference": "X"})

    assert response.status_code == 403


# --- items and the process picture ----------------------------------------------------------


def test_item_page_draws_the_process_with_the_current_state_marked(alice_client, busy_order):
    item = busy_order.items.order_by("pk")[1]  # payment refund pending

    html = alice_client.get(reverse("admin:refunds_orderitem_change", args=[item.pk])).content.decode()

    svg = re.search(r"<svg class=\"oms-process\".*?</svg>", html, flags=re.S).group(0)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    for label in ItemState.labels:
        assert label in texts  # each state's label as one text string
    current = re.findall(r'<g class="oms-node oms-node--current" data-state="([a-z_]+)" aria-current="step">', svg)
    assert current == [ItemState.PAYMENT_REFUND_PENDING]
    edges = set(re.findall(r'data-transition="(\w+)" data-source="(\w+)" data-target="(\w+)"', svg))
    assert len(edges) == 13  # 8, and dual control's 5 (request_approval ×2, approve_refund, reject_refund ×2)
    assert ("reject_refund", ItemState.PAYMENT_REFUND_AWAITING_APPROVAL, ItemState.PAYMENT_REFUND_FAILED) in edges
    assert ("confirm_refund", ItemState.PAYMENT_REFUND_SUCCEEDED, ItemState.PAYMENT_REFUNDED) in edges
    assert ("refund_failed", ItemState.PAYMENT_REFUNDED, ItemState.PAYMENT_REFUND_FAILED) in edges
    assert re.findall(r"https?://", svg) == ["http://"]  # only the SVG namespace: nothing is fetched


def test_item_page_shows_its_refunds_and_audit_log_read_only(alice_client, busy_order):
    item = busy_order.items.order_by("pk")[0]
    refund = item.refunds.get()

    response = alice_client.get(reverse("admin:refunds_orderitem_change", args=[item.pk]))
    html = response.content.decode()

    assert f"https://dashboard.stripe.com/test/refunds/{refund.stripe_refund_id}" in html
    history = [
        (row["transition_display"], row["from_display"], row["to_display"], row["by_display"], row["refund"])
        for row in inline_rows(response, "transitions-group")
    ]
    assert history == [  # newest first, as every audit list of the Back Office
        ("Stripe confirmed the refund", "payment refund pending", "payment refund succeeded", "Stripe API response",
         refund.stripe_refund_id),
        ("refund started", "payment captured", "payment refund pending", "alice", refund.stripe_refund_id),
    ]
    assert 'name="state"' not in html
    assert alice_client.post(reverse("admin:refunds_orderitem_change", args=[item.pk]), {}).status_code == 403


def test_item_list_shows_money_state_and_latest_refund(alice_client, busy_order):
    text = text_of(alice_client.get(reverse("admin:refunds_orderitem_changelist")))

    assert "€10.00" in text and "€20.00" in text and "€5.50" in text
    assert "payment refund succeeded" in text
    assert "pending at Stripe" in text  # the latest refund's status


# --- refunds ------------------------------------------------------------------------------


def test_refund_page_shows_what_a_back_office_user_needs(alice_client, paid_order, back_office_user, fake_stripe):
    fake_stripe.next_failure_reason = "expired_or_canceled_card"
    refund = sent_refund(list(paid_order.items.all()), user=back_office_user, fake_stripe=fake_stripe, status="failed")
    StripeEvent.objects.create(
        stripe_event_id="evt_test_failed", type="refund.failed", refund=refund,
        payload=stripe_payloads.event("refund.failed", stripe_payloads.refund_object_for(refund, status="failed")),
    )

    response = alice_client.get(reverse("admin:refunds_refund_change", args=[refund.pk]))
    text, html = text_of(response), response.content.decode()

    assert readonly_field(response, "order_link") == paid_order.reference
    assert readonly_field(response, "amount_display") == "€40.45"
    assert readonly_field(response, "shipping_display") == "€4.95"
    assert readonly_field(response, "status_display") == "failed"
    assert readonly_field(response, "failure_display") == "the card has expired or was canceled"
    assert readonly_field(response, "created_by") == "alice"
    assert f'href="https://dashboard.stripe.com/test/refunds/{refund.stripe_refund_id}"' in html
    assert "evt_test_failed" in text and "refund.failed" in text
    assert "Check status with Stripe" in text


def test_the_dashboard_link_has_no_test_segment_for_a_live_key(alice_client, settings, busy_order):
    settings.STRIPE_SECRET_KEY = "rk_live_restricted"
    refund = busy_order.refunds.get(origin=RefundOrigin.STRIPE_DASHBOARD)

    html = alice_client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()

    assert 'href="https://dashboard.stripe.com/refunds/re_dashboard0001"' in html
    assert "dashboard.stripe.com/test/" not in html


def test_check_status_with_stripe_applies_what_stripe_says(alice_client, paid_order, back_office_user, fake_stripe):
    item = paid_order.items.first()
    refund = sent_refund([item], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")

    response = alice_client.post(
        reverse("admin:refunds_refund_changelist"),
        {"action": "check_status_with_stripe", ACTION_CHECKBOX_NAME: [refund.pk]},
    )

    assert messages_of(response) == [f"Refund #{refund.pk} ({refund.stripe_refund_id}): now succeeded (was pending at Stripe)."]
    assert OrderItem.objects.get(pk=item.pk).state == ItemState.PAYMENT_REFUND_SUCCEEDED
    assert item.transitions.last().by == "alice"


def test_check_status_button_on_the_refund_page(alice_client, paid_order, back_office_user, fake_stripe):
    refund = sent_refund([paid_order.items.first()], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    url = reverse("admin:refunds_refund_check_status", args=[refund.pk])
    assert url in alice_client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()
    assert alice_client.get(url).status_code == 405  # it may move items: POST only

    response = alice_client.post(url)

    assert response.status_code == 302
    assert messages_of(response) == [f"Refund #{refund.pk} ({refund.stripe_refund_id}): unchanged, pending at Stripe."]


def test_a_stripe_outage_during_check_status_is_an_error_message(
    alice_client, paid_order, back_office_user, fake_stripe, monkeypatch
):
    refund = sent_refund([paid_order.items.first()], user=back_office_user, fake_stripe=fake_stripe, status="pending")

    def unreachable(stripe_refund_id):
        raise StripeRetryableError("Could not connect to Stripe.")

    monkeypatch.setattr(gateway, "retrieve_refund", unreachable)

    response = alice_client.post(reverse("admin:refunds_refund_check_status", args=[refund.pk]))

    assert response.status_code == 302
    assert messages_of(response) == [f"Refund #{refund.pk} ({refund.stripe_refund_id}): Stripe could not be asked: Could not connect to Stripe."]
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.PENDING


def test_check_status_needs_the_refund_permission(client, paid_order, back_office_user, fake_stripe):
    refund = sent_refund([paid_order.items.first()], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    viewer = UserFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_refund"))
    client.force_login(viewer)

    page = client.get(reverse("admin:refunds_refund_change", args=[refund.pk])).content.decode()
    button = client.post(reverse("admin:refunds_refund_check_status", args=[refund.pk]))

    assert "Check status with Stripe" not in page
    assert button.status_code == 403


# --- Stripe events ------------------------------------------------------------------------


@pytest.fixture
def unapplied_event(paid_order, back_office_user, fake_stripe):
    """A refund.updated saying 'succeeded' that was stored but not applied (e.g. failed before)."""
    refund = sent_refund([paid_order.items.first()], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")  # what Stripe says by the time the event is read
    payload = stripe_payloads.event("refund.updated", stripe_payloads.refund_object_for(refund, status="succeeded"))
    return StripeEvent.objects.create(
        stripe_event_id=payload["id"], type=payload["type"], payload=payload, error="OperationalError: database is locked"
    )


def test_event_list_shows_type_received_processed_and_error(alice_client, unapplied_event):
    url = reverse("admin:refunds_stripeevent_changelist")

    text = text_of(alice_client.get(url))
    failed_only = alice_client.get(url, {"outcome": "error"}).context["cl"].result_list

    assert unapplied_event.stripe_event_id in text
    assert "refund.updated" in text
    assert "OperationalError: database is locked" in text
    assert list(failed_only) == [unapplied_event]


def test_reprocess_applies_a_stored_event(alice_client, unapplied_event):
    pytest.importorskip("refunds.webhooks")

    response = alice_client.post(
        reverse("admin:refunds_stripeevent_changelist"),
        {"action": "reprocess", ACTION_CHECKBOX_NAME: [unapplied_event.pk]},
    )

    assert messages_of(response) == ["1 event reprocessed."]
    unapplied_event.refresh_from_db()
    assert unapplied_event.processed_at is not None and unapplied_event.error == ""
    assert unapplied_event.refund.status == RefundStatus.SUCCEEDED
    assert unapplied_event.refund.items.get().state == ItemState.PAYMENT_REFUND_SUCCEEDED


def test_reprocess_reports_an_event_that_cannot_be_applied(alice_client, db):
    pytest.importorskip("refunds.webhooks")
    payload = stripe_payloads.event("refund.updated", stripe_payloads.charge_object(refunds=None))
    event = StripeEvent.objects.create(stripe_event_id=payload["id"], type=payload["type"], payload=payload)

    response = alice_client.post(
        reverse("admin:refunds_stripeevent_changelist"), {"action": "reprocess", ACTION_CHECKBOX_NAME: [event.pk]}
    )

    (message,) = messages_of(response)
    assert message.startswith(f"Stripe event {event.stripe_event_id} (refund.updated) could not be applied: InvalidEvent:")
    assert "Traceback" not in message
    event.refresh_from_db()
    assert event.processed_at is None and event.error


def test_reprocess_needs_the_change_permission_on_events(client, unapplied_event):
    viewer = UserFactory(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_stripeevent"))
    client.force_login(viewer)
    url = reverse("admin:refunds_stripeevent_changelist")

    page = client.get(url).content.decode()
    client.post(url, {"action": "reprocess", ACTION_CHECKBOX_NAME: [unapplied_event.pk]})

    assert 'value="reprocess"' not in page
    unapplied_event.refresh_from_db()
    assert unapplied_event.processed_at is None
