"""A form sent twice (a double click, a second tab, two POSTs at once) is answered truthfully:
the second answer names the refund the first one made, never "Nothing was refunded"."""

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from refunds import services
from refunds.models import ItemState, OrderItem, Refund, RefundStatus

from .concurrency import HeldCall, run_overlapping
from .conftest import fingerprint_on, page_of, skip_unless_postgres
from .factories import UserFactory

pytestmark = pytest.mark.django_db

ITEMS_URL = reverse("admin:refunds_orderitem_changelist")
REFUNDS_URL = reverse("admin:refunds_refund_changelist")
CLOCK = r"\d\d:\d\d:\d\d"


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def confirmation_post(client, items) -> dict:
    """What "Yes, refund" sends: the page's hidden fields, as the browser sends them every time."""
    data = {"action": "refund_items", ACTION_CHECKBOX_NAME: [str(item.pk) for item in items]}
    page = client.post(ITEMS_URL, data)
    [shown] = [el for el in page_of(page).find_all("input") if el.attrs.get("name") == "confirmed_items"]
    return {**data, "post": "yes", "confirmed": fingerprint_on(page), "confirmed_items": shown.attrs["value"]}


@pytest.fixture
def alice_client(client, back_office_user):
    client.force_login(back_office_user)
    return client


def test_a_second_post_of_a_carried_out_confirmation_names_the_refund(alice_client, paid_order):
    first, second, _ = paid_order.items.order_by("pk")
    yes_refund = confirmation_post(alice_client, [first, second])

    done = alice_client.post(ITEMS_URL, yes_refund)
    again = alice_client.post(ITEMS_URL, yes_refund)  # the double click's second POST

    refund = Refund.objects.get()
    assert messages_of(done) == [f"2 items of order {paid_order.reference} queued for refund: €30.00"]
    assert again.status_code == 302  # done, as the first answer: not the confirmation page again
    # The first answer's message is still waiting to be shown (a double click never showed it).
    [_first_answer, message] = messages_of(again)
    assert re.fullmatch(
        rf"2 items of order {paid_order.reference} already queued for refund by you at {CLOCK}: €30\.00 "
        rf"\(<a href=\"/admin/refunds/refund/{refund.pk}/change/\" class=\"oms-refund-link\">refund #{refund.pk}</a>\)",
        message,
    ), message
    assert Refund.objects.count() == 1


def test_the_answer_shows_the_link_on_the_next_page(alice_client, paid_order):
    item = paid_order.items.order_by("pk").first()
    yes_refund = confirmation_post(alice_client, [item])
    alice_client.post(ITEMS_URL, yes_refund)
    alice_client.post(ITEMS_URL, yes_refund)

    page = alice_client.get(ITEMS_URL)

    [success, already] = page_of(page).find_all("li", cls="success")
    assert "queued for refund: €10.00" in success.text
    assert already.text.startswith(f"1 item of order {paid_order.reference} already queued for refund by you at")
    [link] = already.find_all("a")
    assert link.attrs["href"] == reverse("admin:refunds_refund_change", args=[Refund.objects.get().pk])


def test_a_refund_by_another_user_in_between_is_named_with_its_user(alice_client, paid_order):
    first, second, _ = paid_order.items.order_by("pk")
    yes_refund = confirmation_post(alice_client, [first, second])
    services.request_refund(items=[first, second], user=UserFactory(username="bob"))

    response = alice_client.post(ITEMS_URL, yes_refund)

    assert response.status_code == 302
    [message] = messages_of(response)
    assert re.match(rf"2 items of order {paid_order.reference} already queued for refund by bob at {CLOCK}: €30\.00", message)
    assert Refund.objects.count() == 1


def test_two_posts_that_both_passed_the_check_make_one_refund_and_the_second_says_so(
    alice_client, paid_order, monkeypatch
):
    """Both POSTs saw the items refundable; the second reaches `request_refund` after the first
    committed (simulated here by running the real service twice in a row; on PostgreSQL below
    with two real requests at once)."""
    real = services.request_refund

    def first_then_second(**kwargs):
        real(**kwargs)  # the other POST, a moment earlier
        return real(**kwargs)

    monkeypatch.setattr(services, "request_refund", first_then_second)
    item = paid_order.items.order_by("pk").first()

    response = alice_client.post(ITEMS_URL, confirmation_post(alice_client, [item]))

    [message] = messages_of(response)
    assert "Nothing was refunded" not in message
    assert re.match(rf"1 item of order {paid_order.reference} already queued for refund by you at {CLOCK}: €10\.00", message)
    assert Refund.objects.count() == 1
    assert OrderItem.objects.get(pk=item.pk).state == ItemState.PAYMENT_REFUND_PENDING


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_posts_make_one_refund_and_the_second_answer_names_it(
    paid_order, back_office_user, fake_stripe, monkeypatch
):
    """The first POST holds the order's lock inside `request_refund`; the second waits for it
    (PostgreSQL shows it waiting), then finds the items taken and says by which refund."""
    skip_unless_postgres()
    from refunds.services import approvals

    first_client, second_client = Client(), Client()
    first_client.force_login(back_office_user)
    second_client.force_login(back_office_user)
    item = paid_order.items.order_by("pk").first()
    yes_refund = confirmation_post(first_client, [item])
    held = HeldCall(approvals.transition_items)
    monkeypatch.setattr(approvals, "transition_items", held)

    first, second = run_overlapping(
        lambda: messages_of(first_client.post(ITEMS_URL, yes_refund)),
        lambda: messages_of(second_client.post(ITEMS_URL, yes_refund)),
        held=held,
    )

    refund = Refund.objects.get()
    assert first == [f"1 item of order {paid_order.reference} queued for refund: €10.00"]
    [answer] = second
    assert re.match(
        rf"1 item of order {paid_order.reference} already queued for refund by you at {CLOCK}: €10\.00 "
        rf"\(<a href=\"/admin/refunds/refund/{refund.pk}/change/\"",
        answer,
    ), answer
    assert len(fake_stripe.create_calls) == 1


def test_a_second_approve_post_says_who_approved_it_and_when(client, paid_order, back_office_user, settings):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 1000}
    (refund,) = services.request_refund(items=list(paid_order.items.order_by("pk")[:2]), user=back_office_user)
    assert refund.status == RefundStatus.AWAITING_APPROVAL
    bob = UserFactory(username="bob", is_superuser=True)
    client.force_login(bob)
    yes_approve = {"action": "approve_refunds", ACTION_CHECKBOX_NAME: [str(refund.pk)], "post": "yes", "note": ""}

    client.post(REFUNDS_URL, yes_approve)
    again = client.post(REFUNDS_URL, yes_approve)

    [_first_answer, message] = messages_of(again)
    assert re.match(rf"Refund #{refund.pk} was already approved by you at {CLOCK}\.", message), message
    assert Refund.objects.get(pk=refund.pk).approved_by == bob


def test_the_amount_form_sent_twice_makes_one_refund(alice_client, paid_order):
    url = reverse("admin:refunds_order_refund_amount", args=[paid_order.pk])
    page = alice_client.get(url)
    [key] = [el.attrs["value"] for el in page_of(page).find_all("input") if el.attrs.get("name") == "request_key"]
    form = {"request_key": key, "amount": "5.00", "reason": "", "note": "goodwill"}

    alice_client.post(url, form)
    again = alice_client.post(url, form)

    assert again.status_code == 302
    [_first_answer, message] = messages_of(again)
    assert re.match(rf"A refund of €5\.00 for order {paid_order.reference} was already queued by you at {CLOCK}", message)
    assert Refund.objects.filter(amount=500).count() == 1


def test_the_confirmation_page_sends_itself_once(alice_client, paid_order):
    page = alice_client.post(
        ITEMS_URL, {"action": "refund_items", ACTION_CHECKBOX_NAME: [str(paid_order.items.first().pk)]}
    )

    [form] = [el for el in page_of(page).find_all("form") if "data-submit-once" in el.attrs]
    assert any(el.attrs.get("value") == "Yes, refund" for el in form.find_all("input"))
    assert 'src="/static/refunds/submit_once.js"' in page.content.decode()
