"""The Back Office's ready-made roles (`manage.py create_refund_roles`): the same groups however
often it runs, and each role can do exactly what its name says, no more."""

from io import StringIO

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from refunds import services
from refunds.models import AttentionCase, ItemState, OrderItem, Refund, StripeEvent

from .conftest import page_of, post_confirmed
from .factories import UserFactory, paid_order_with_items

pytestmark = pytest.mark.django_db

ROLES = ["Refund viewer", "Refund clerk", "Refund approver", "Refund operator"]

# What each role may do in the Back Office; every other action must be refused.
MAY = {
    "Refund viewer": {"see"},
    "Refund clerk": {"see", "refund", "refund an amount", "check status with Stripe"},
    "Refund approver": {"see", "approve"},
    "Refund operator": {"see", "confirm by hand", "reprocess events", "resolve cases"},
}
EVERY_ACTION = {
    "see", "refund", "refund an amount", "check status with Stripe", "approve", "confirm by hand",
    "reprocess events", "resolve cases",
}


def groups_snapshot():
    return {
        group.name: sorted(group.permissions.values_list("codename", flat=True))
        for group in Group.objects.filter(name__in=ROLES).order_by("name")
    }


def test_running_the_command_twice_gives_the_same_groups():
    out = StringIO()
    call_command("create_refund_roles", stdout=out)
    first = groups_snapshot()
    call_command("create_refund_roles", stdout=out)

    assert groups_snapshot() == first
    assert sorted(first) == sorted(ROLES)
    assert Group.objects.filter(name__in=ROLES).count() == 4
    assert "Refund clerk: created" in out.getvalue() and "Refund clerk: updated" in out.getvalue()


def test_a_group_edited_by_hand_is_put_back_to_its_role():
    call_command("create_refund_roles", stdout=StringIO())
    viewer = Group.objects.get(name="Refund viewer")
    viewer.permissions.add(*Group.objects.get(name="Refund clerk").permissions.all())

    call_command("create_refund_roles", stdout=StringIO())

    assert "refund_orderitem" not in viewer.permissions.values_list("codename", flat=True)


@pytest.fixture
def back_office_data(fake_stripe, settings):
    """Something for every action to work on: an order, a succeeded item, a refund awaiting
    someone else's approval, a Stripe event, an open case."""
    requester = UserFactory(username="requester", is_superuser=True)
    order = paid_order_with_items(1000, 2000, 3000)
    first, second, third = order.items.order_by("pk")
    fake_stripe.next_status = "succeeded"
    (done,) = services.request_refund(items=[first], user=requester)
    services.submit_refund(refund_id=done.pk)
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 2000}
    (waiting,) = services.request_refund(items=[second], user=requester)
    StripeEvent.objects.create(stripe_event_id="evt_1Qroles", type="refund.updated", payload={})
    services.open_case(kind="refund_failed", refund=done, detail="declined by the bank")
    return {"order": order, "succeeded_item": first, "refundable_item": third, "waiting": waiting}


def actions_on(client, url) -> set[str]:
    page = page_of(client.get(url))
    return {option.attrs.get("value") for option in page.find_all("option") if option.attrs.get("value")}


def what_the_user_can_do(client, data) -> set[str]:
    order = data["order"]
    can = set()
    changelists = [
        reverse(f"admin:refunds_{name}_changelist")
        for name in ("order", "orderitem", "refund", "stripeevent", "itemtransition", "attention")
    ]
    if all(client.get(url).status_code == 200 for url in changelists):
        can.add("see")
    item_actions = actions_on(client, reverse("admin:refunds_orderitem_changelist"))
    refund_actions = actions_on(client, reverse("admin:refunds_refund_changelist"))
    refund_page = client.get(reverse("admin:refunds_order_refund", args=[order.pk]))
    if "refund_items" in item_actions and refund_page.status_code == 200:
        can.add("refund")
    if client.get(reverse("admin:refunds_order_refund_amount", args=[order.pk])).status_code == 200:
        can.add("refund an amount")
    if "check_status_with_stripe" in refund_actions:
        can.add("check status with Stripe")
    if "approve_refunds" in refund_actions and "reject_refunds" in refund_actions:
        can.add("approve")
    if "confirm_refund_now" in item_actions:
        can.add("confirm by hand")
    if "reprocess" in actions_on(client, reverse("admin:refunds_stripeevent_changelist")):
        can.add("reprocess events")
    if "resolve_cases" in actions_on(client, reverse("admin:refunds_attention_changelist")):
        can.add("resolve cases")
    return can


@pytest.mark.parametrize("role", ROLES)
def test_each_role_can_do_exactly_what_its_name_says(client, back_office_data, role):
    call_command("create_refund_roles", stdout=StringIO())
    user = UserFactory(username=role.lower().replace(" ", "-"), is_superuser=False)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)

    assert what_the_user_can_do(client, back_office_data) == MAY[role]
    assert MAY[role] <= EVERY_ACTION

    # And a forged POST does nothing for a role that may not: the item refund and the approval.
    item = back_office_data["refundable_item"]
    refund_post = {"action": "refund_items", ACTION_CHECKBOX_NAME: [str(item.pk)], "post": "yes"}
    if "refund" in MAY[role]:
        post_confirmed(client, reverse("admin:refunds_orderitem_changelist"), refund_post)
    else:  # forged: the admin drops an action the user may not run
        client.post(reverse("admin:refunds_orderitem_changelist"), refund_post)
    refunded = OrderItem.objects.get(pk=item.pk).state != ItemState.PAYMENT_CAPTURED
    assert refunded == ("refund" in MAY[role])

    waiting = back_office_data["waiting"]
    client.post(reverse("admin:refunds_refund_changelist"), {
        "action": "approve_refunds", ACTION_CHECKBOX_NAME: [str(waiting.pk)], "post": "yes", "note": "",
    })
    assert (Refund.objects.get(pk=waiting.pk).approved_by_id == user.pk) == ("approve" in MAY[role])

    case = AttentionCase.objects.get()
    client.post(reverse("admin:refunds_attention_changelist"), {
        "action": "resolve_cases", ACTION_CHECKBOX_NAME: [str(case.pk)], "post": "yes", "note": "handled",
    })
    assert (AttentionCase.objects.get(pk=case.pk).resolved_by_id == user.pk) == ("resolve cases" in MAY[role])
