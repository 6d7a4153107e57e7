"""Operations in the Back Office: approving and rejecting refunds, "Refund an amount", the
"Needs attention" page and the admin index's count of open cases."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from refunds import services
from refunds.models import AttentionCase, ItemState, Refund, RefundOrigin, RefundStatus

from .conftest import page_of, post_confirmed, table_rows
from .factories import UserFactory, paid_order_with_items

pytestmark = pytest.mark.django_db

REFUNDS_URL = reverse("admin:refunds_refund_changelist")
ITEMS_URL = reverse("admin:refunds_orderitem_changelist")
ATTENTION_URL = "/admin/refunds/attention/"  # DESIGN.md §9 names the path itself


@pytest.fixture(autouse=True)
def thresholds(settings):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 3000}


def staff_with(*codenames, username):
    user = UserFactory(username=username, is_superuser=False)
    view = ["view_order", "view_orderitem", "view_refund", "view_stripeevent", "view_itemtransition", "view_attentioncase"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="refunds", codename__in=[*view, *codenames]))
    return user


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def post_action(client, url, action, ids, **data):
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], **data}
    if action in ("refund_items", "refund_orders"):
        return post_confirmed(client, url, data)  # the refund confirmation's fingerprint is required
    return client.post(url, data)


@pytest.fixture
def held(paid_order, back_office_user):
    """€30.00 of alice's, awaiting approval."""
    [refund] = services.request_refund(items=list(paid_order.items.order_by("pk")[:2]), user=back_office_user)
    assert refund.status == RefundStatus.AWAITING_APPROVAL
    return refund


@pytest.fixture
def approver_client(client):
    client.force_login(staff_with("approve_refund", username="bob"))
    return client


# --- requesting: the confirmation page says it before ------------------------------------------


def test_the_confirmation_page_says_the_refund_will_need_approval(client, back_office_user, paid_order):
    client.force_login(back_office_user)
    first, second, third = paid_order.items.order_by("pk")

    at = post_action(client, ITEMS_URL, "refund_items", [first.pk, second.pk])
    below = post_action(client, ITEMS_URL, "refund_items", [first.pk])

    [notice] = page_of(at).find_all(cls="oms-approval-notice")
    assert notice.text == (
        "Needs approval: this refund is at or above €30.00, so it waits for a second user's approval before "
        "anything is sent to Stripe."
    )
    assert page_of(below).find_all(cls="oms-approval-notice") == []

    done = post_confirmed(client, ITEMS_URL, {
        "action": "refund_items", ACTION_CHECKBOX_NAME: [str(first.pk), str(second.pk)], "post": "yes",
    })
    assert messages_of(done) == [
        f"2 items of order {paid_order.reference} await approval: €30.00. Another user with the approve "
        "permission must approve it before it is sent to Stripe."
    ]
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL


# --- approving and rejecting ---------------------------------------------------------------------


def test_approve_shows_a_confirmation_page_then_approves(approver_client, held, fake_stripe):
    page = post_action(approver_client, REFUNDS_URL, "approve_refunds", [held.pk])

    assert page.status_code == 200
    assert table_rows(page, "approval-refunds") == [[
        f"#{held.pk} awaiting approval (not yet sent to Stripe)", held.order.reference,
        ", ".join(held.items.order_by("pk").values_list("sku", flat=True)),
        f"alice, {held.created_at:%Y-%m-%d %H:%M:%S}", "—", "€30.00", "Yes",
    ]]
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL

    done = post_action(approver_client, REFUNDS_URL, "approve_refunds", [held.pk], post="yes", note="checked the return")

    assert messages_of(done) == [f"Refund #{held.pk} of order {held.order.reference} approved: €30.00 is being sent to Stripe."]
    held.refresh_from_db()
    assert (held.status, held.approved_by.username, held.decision_note) == (RefundStatus.QUEUED, "bob", "checked the return")
    assert LogEntry.objects.get(object_id=str(held.pk)).get_change_message() == "Refund approved: checked the return"


def test_the_requester_cannot_approve_in_the_admin_either(client, back_office_user, held, fake_stripe):
    client.force_login(back_office_user)  # alice, a superuser, asked for it

    page = post_action(client, REFUNDS_URL, "approve_refunds", [held.pk])
    assert page_of(page).find_all(cls="oms-refused")[0].text.endswith(
        "No: you requested it yourself; another user must decide it."
    )
    done = post_action(client, REFUNDS_URL, "approve_refunds", [held.pk], post="yes")

    assert messages_of(done) == [
        f"Refund #{held.pk} was not approved: You requested refund #{held.pk} yourself; another user must approve it "
        "(dual control)."
    ]
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL
    assert fake_stripe.create_calls == []


def test_a_user_without_the_approve_permission_has_no_such_action(client, held):
    refunder = staff_with("refund_orderitem", username="carol")
    client.force_login(refunder)

    changelist = client.get(REFUNDS_URL).content.decode()
    forged = post_action(client, REFUNDS_URL, "approve_refunds", [held.pk], post="yes")

    assert 'value="approve_refunds"' not in changelist and 'value="reject_refunds"' not in changelist
    assert forged.status_code in (200, 302)
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL


def test_a_rejection_takes_a_note_and_puts_the_items_back(approver_client, held):
    items = list(held.items.order_by("pk"))

    without_note = post_action(approver_client, REFUNDS_URL, "reject_refunds", [held.pk], post="yes", note="")
    assert without_note.status_code == 200 and "This field is required." in without_note.content.decode()
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL

    done = post_action(approver_client, REFUNDS_URL, "reject_refunds", [held.pk], post="yes", note="no return received")

    assert messages_of(done) == [
        f"Refund #{held.pk} of order {held.order.reference} rejected: nothing was sent to Stripe, its items are back "
        "where they were."
    ]
    held.refresh_from_db()
    assert (held.status, held.rejected_by.username, held.decision_note) == (RefundStatus.REJECTED, "bob", "no return received")
    assert {item.state for item in items for item in [type(item).objects.get(pk=item.pk)]} == {ItemState.PAYMENT_CAPTURED}
    assert LogEntry.objects.get(object_id=str(held.pk)).get_change_message() == "Refund rejected: no return received"


def test_the_refund_page_offers_approve_and_reject_to_an_approver(approver_client, client, held):
    page = approver_client.get(reverse("admin:refunds_refund_change", args=[held.pk]))

    buttons = [button.text for button in page_of(page).find_all("button", cls="oms-object-tool-button")]
    assert buttons == ["Approve", "Reject"]  # bob may approve, not refund: no "Check status with Stripe"
    assert "awaiting approval by a second user" in page.content.decode()


# --- Refund an amount ----------------------------------------------------------------------------


@pytest.fixture
def refunder_client(client):
    client.force_login(staff_with("refund_orderitem", username="carol"))
    return client


def amount_url(order):
    return reverse("admin:refunds_order_refund_amount", args=[order.pk])


def test_the_order_page_has_a_refund_an_amount_button(refunder_client, paid_order):
    page = refunder_client.get(reverse("admin:refunds_order_change", args=[paid_order.pk]))

    [button] = page_of(page).find_all("a", cls="oms-refund-amount-button")
    assert (button.text, button.attrs["href"]) == ("Refund an amount", amount_url(paid_order))


def test_the_amount_page_shows_what_may_still_be_refunded(refunder_client, paid_order, back_office_user):
    services.request_amount_refund(order=paid_order, amount=1000, user=back_office_user)

    page = refunder_client.get(amount_url(paid_order))

    assert table_rows(page, "amount-summary") == [
        ["Captured", "€40.45"], ["Refunded or in flight", "€10.00"], ["May still be refunded", "€30.45"],
    ]
    assert page_of(page).by_id("approval-notice").text == (
        "Refunds of €30.00 or more need a second user's approval before they are sent to Stripe."
    )


def test_an_amount_is_typed_in_major_units_and_refunded_exactly(refunder_client, paid_order):
    response = refunder_client.post(amount_url(paid_order), {"amount": "12.5", "reason": "", "note": "late parcel"})

    assert response.status_code == 302
    assert messages_of(response) == [f"Refund of €12.50 for order {paid_order.reference} queued."]
    refund = Refund.objects.get()
    assert (refund.amount, refund.items.count(), refund.note, refund.created_by.username) == (1250, 0, "late parcel", "carol")
    entry = LogEntry.objects.get(object_id=str(refund.pk), content_type__model="refund")
    assert entry.get_change_message() == "Amount refund requested: €12.50, no item"


def test_a_yen_amount_with_a_thousands_separator(refunder_client, settings):
    settings.REFUND_APPROVAL_THRESHOLDS = {}
    order = paid_order_with_items(5000, currency="jpy", shipping_amount=0)

    refunder_client.post(amount_url(order), {"amount": "1,200"})

    assert Refund.objects.get().amount == 1200


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("12,50", "12,50 is not an amount: write decimals with a point, for example 12.50."),
        ("12.505", "EUR has 2 decimal places; 12.505 has 3. Write it like 12.50."),
        ("40.46", "Nothing was refunded: A refund of €40.46 for order"),
    ],
)
def test_a_bad_amount_is_explained_on_the_page_and_nothing_is_written(refunder_client, paid_order, typed, error):
    response = refunder_client.post(amount_url(paid_order), {"amount": typed})

    assert response.status_code == 200
    errors = " ".join(el.text for el in page_of(response).find_all(cls="errorlist") + page_of(response).find_all(cls="errornote"))
    assert error in errors
    assert not Refund.objects.exists()


def test_an_amount_at_the_threshold_waits_for_approval(refunder_client, paid_order):
    response = refunder_client.post(amount_url(paid_order), {"amount": "30"})

    assert messages_of(response)[0].startswith(f"Refund of €30.00 for order {paid_order.reference} awaits approval")
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL


def test_the_amount_page_needs_the_refund_permission(client, paid_order):
    client.force_login(staff_with(username="viewer"))

    assert client.get(amount_url(paid_order)).status_code == 403
    assert client.post(amount_url(paid_order), {"amount": "1"}).status_code == 403
    assert not Refund.objects.exists()


# --- Needs attention -----------------------------------------------------------------------------


@pytest.fixture
def open_cases(paid_order, back_office_user, time_machine):
    import datetime as dt

    first, second, third = paid_order.items.order_by("pk")
    [older] = services.request_refund(items=[first], user=back_office_user)
    [newer] = services.request_refund(items=[third], user=back_office_user)
    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc), tick=False)
    stuck = services.open_case(kind="stuck_pending", refund=older, detail="pending for 12 days")
    time_machine.move_to(dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.timezone.utc), tick=False)
    failed = services.open_case(kind="refund_failed", refund=newer, detail="declined by the bank")
    time_machine.move_to(dt.datetime(2026, 3, 4, 9, 0, tzinfo=dt.timezone.utc), tick=False)
    done = services.open_case(kind="refund_failed", order=paid_order, key="old", detail="handled already")
    services.resolve_case(case=done, user=back_office_user, note="handled")
    return {"stuck": stuck, "failed": failed, "done": done, "older": older, "newer": newer}


def test_the_attention_page_lists_open_cases_newest_first_with_counts_per_kind(client, back_office_user, open_cases, paid_order):
    client.force_login(back_office_user)

    page = client.get(ATTENTION_URL)

    assert page.status_code == 200
    counts = {
        li.attrs["data-kind"]: li.find_all(cls="oms-kind-number")[0].text
        for li in page_of(page).by_id("kind-counts").find_all("li")
    }
    assert counts == {
        "refund_failed": "1", "late_decline": "0", "possible_double_refund": "0", "stuck_pending": "1",
        "event_error": "0", "mismatched_refund": "0", "awaiting_approval": "0",
    }
    rows = table_rows(page, "result_list")
    assert [row[2] for row in rows] == ["refund failed", "stuck pending"]  # newest first; the resolved one hidden
    assert rows[0][3:6] == [paid_order.reference, f"refund #{open_cases['newer'].pk}", "declined by the bank"]
    html = page.content.decode()
    assert reverse("admin:refunds_refund_change", args=[open_cases["newer"].pk]) in html
    assert reverse("admin:refunds_order_change", args=[paid_order.pk]) in html

    resolved = client.get(ATTENTION_URL, {"status": "resolved"})
    assert [row[-1] for row in table_rows(resolved, "result_list")] == ["resolved by alice, 2026-03-04 09:00:00"]


def test_resolve_takes_a_note_and_is_audited(client, open_cases):
    client.force_login(staff_with("resolve_attentioncase", username="bob"))
    case = open_cases["failed"]

    page = post_action(client, ATTENTION_URL, "resolve_cases", [case.pk])
    assert page.status_code == 200 and "declined by the bank" in page.content.decode()
    without = post_action(client, ATTENTION_URL, "resolve_cases", [case.pk], post="yes", note="")
    assert "This field is required." in without.content.decode()
    done = post_action(client, ATTENTION_URL, "resolve_cases", [case.pk], post="yes", note="refunded by bank transfer")

    assert messages_of(done) == ["1 case resolved."]
    case.refresh_from_db()
    assert (case.resolved_by.username, case.resolution_note) == ("bob", "refunded by bank transfer")
    assert LogEntry.objects.get(object_id=str(case.pk)).get_change_message() == "Resolved: refunded by bank transfer"


def test_resolving_needs_its_permission(client, open_cases):
    client.force_login(staff_with(username="viewer"))

    changelist = client.get(ATTENTION_URL).content.decode()
    post_action(client, ATTENTION_URL, "resolve_cases", [open_cases["failed"].pk], post="yes", note="sneaky")

    assert 'value="resolve_cases"' not in changelist
    assert AttentionCase.objects.get(pk=open_cases["failed"].pk).resolved_at is None


def test_the_admin_index_shows_the_number_of_open_cases(client, back_office_user, open_cases):
    client.force_login(back_office_user)

    notice = page_of(client.get(reverse("admin:index"))).by_id("attention-notice")

    assert notice.text == "Needs attention: 2 open cases (1 refund failed, 1 stuck pending)"
    assert notice.find_all("a")[0].attrs["href"] == ATTENTION_URL


def test_a_user_who_may_not_see_cases_gets_no_notice(client, open_cases):
    client.force_login(UserFactory(username="plain", is_superuser=False))

    assert b"attention-notice" not in client.get(reverse("admin:index")).content


def test_a_dashboard_refund_case_page_links_its_order(client, back_office_user, paid_order):
    dashboard = Refund.objects.create(
        order=paid_order, amount=500, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_dash", status=RefundStatus.FAILED,
    )
    case = services.open_case(kind="refund_failed", refund=dashboard, detail="failed")
    client.force_login(back_office_user)

    page = client.get(reverse("admin:refunds_attention_change", args=[case.pk]))

    assert page.status_code == 200
    assert reverse("admin:refunds_order_change", args=[paid_order.pk]) in page.content.decode()
    assert [b.text for b in page_of(page).find_all("button", cls="oms-object-tool-button")] == ["Resolve"]
