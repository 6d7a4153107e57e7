"""Dual control (DESIGN.md §9): a refund at or above its currency's threshold waits for a second
user; nothing reaches Stripe before approval; the requester cannot approve their own refund."""

import datetime as dt

import pytest
from django.contrib.auth.models import Permission

from refunds import services
from refunds.exceptions import ApprovalRefused, OverRefund, RefundError
from refunds.models import ItemState, ItemTransition, Refund, RefundOrigin, RefundStatus
from refunds.tasks import reconcile_refunds

from .concurrency import HeldCall, run_overlapping
from .conftest import skip_unless_postgres
from .factories import UserFactory, paid_order_with_items
from .webhook_scenarios import states

pytestmark = pytest.mark.django_db

CAPTURED, AWAITING, PENDING, SUCCEEDED, FAILED = (
    ItemState.PAYMENT_CAPTURED,
    ItemState.PAYMENT_REFUND_AWAITING_APPROVAL,
    ItemState.PAYMENT_REFUND_PENDING,
    ItemState.PAYMENT_REFUND_SUCCEEDED,
    ItemState.PAYMENT_REFUND_FAILED,
)


@pytest.fixture(autouse=True)
def thresholds(settings):
    # €30.00 and ¥5,000; USD not listed: never needs approval.
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 3000, "jpy": 5000}


@pytest.fixture
def approver(db):
    return UserFactory(username="bob", is_superuser=True)


def staff_with(*codenames, username):
    user = UserFactory(username=username, is_superuser=False)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="refunds", codename__in=codenames))
    return user


def held_refund(items, user) -> Refund:
    [refund] = services.request_refund(items=items, user=user)
    assert refund.status == RefundStatus.AWAITING_APPROVAL
    return refund


# --- requesting --------------------------------------------------------------------------------


def test_below_the_threshold_nothing_changes(paid_order, back_office_user, fake_stripe, django_capture_on_commit_callbacks):
    first = paid_order.items.order_by("pk").first()  # €10.00

    with django_capture_on_commit_callbacks(execute=True):
        [refund] = services.request_refund(items=[first], user=back_office_user)

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert len(fake_stripe.create_calls) == 1
    assert list(ItemTransition.objects.values_list("transition", flat=True)) == ["start_refund", "refund_succeeded"]


def test_at_the_threshold_the_refund_waits_and_nothing_reaches_stripe(
    paid_order, back_office_user, fake_stripe, django_capture_on_commit_callbacks, time_machine
):
    first, second, third = paid_order.items.order_by("pk")  # €10.00 + €20.00 = the €30.00 threshold

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        [refund] = services.request_refund(items=[first, second], user=back_office_user)

    assert callbacks == []  # no submit_refund task
    assert (refund.status, refund.amount) == (RefundStatus.AWAITING_APPROVAL, 3000)
    assert states([first, second, third]) == [AWAITING, AWAITING, CAPTURED]
    assert list(ItemTransition.objects.values_list("transition", "from_state", "to_state", "by")) == [
        ("request_approval", CAPTURED, AWAITING, "alice"), ("request_approval", CAPTURED, AWAITING, "alice"),
    ]
    # Not the submission service, not reconciliation a week later: nothing is sent.
    assert services.submit_refund(refund_id=refund.pk).status == RefundStatus.AWAITING_APPROVAL
    time_machine.move_to(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7))
    assert reconcile_refunds.delay().get() == {"resubmitted": 0, "synced": 0, "repaired": 0, "errors": 0}
    assert fake_stripe.create_calls == []
    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL


def test_a_currency_without_a_threshold_never_waits(back_office_user, fake_stripe):
    order = paid_order_with_items(900_000, currency="usd")

    [refund] = services.request_refund(items=order.items.all(), user=back_office_user)

    assert refund.status == RefundStatus.QUEUED


def test_a_zero_decimal_currency_compares_in_its_own_units(back_office_user):
    below = paid_order_with_items(4999, currency="jpy", shipping_amount=0)
    at = paid_order_with_items(5000, currency="jpy", shipping_amount=0)

    [queued] = services.request_refund(items=below.items.all(), user=back_office_user)  # ¥4,999
    [waits] = services.request_refund(items=at.items.all(), user=back_office_user)  # ¥5,000

    assert (queued.status, waits.status) == (RefundStatus.QUEUED, RefundStatus.AWAITING_APPROVAL)


def test_a_refund_awaiting_approval_counts_against_what_may_still_be_refunded(paid_order, back_office_user):
    first, second, _ = paid_order.items.order_by("pk")
    held_refund([first, second], back_office_user)  # €30.00 of €40.45

    with pytest.raises(OverRefund, match=r"€10.45 of €40.45 captured \(€30.00 refunded or in flight\)"):
        services.request_amount_refund(order=paid_order, amount=1100, user=back_office_user)


# --- approving ---------------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_refund(paid_order, back_office_user, fake_stripe):
    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)

    with pytest.raises(ApprovalRefused, match=r"You requested refund #\d+ yourself; another user must approve it"):
        services.approve_refund(refund=refund, user=back_office_user)
    with pytest.raises(ApprovalRefused, match="another user must reject it"):
        services.reject_refund(refund=refund, user=back_office_user, note="changed my mind")

    refund.refresh_from_db()
    assert (refund.status, refund.approved_by) == (RefundStatus.AWAITING_APPROVAL, None)
    assert set(refund.items.values_list("state", flat=True)) == {AWAITING}
    assert fake_stripe.create_calls == []


def test_a_user_without_the_approve_permission_cannot_approve(paid_order, back_office_user):
    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)
    refunder = staff_with("refund_orderitem", username="carol")

    with pytest.raises(ApprovalRefused, match="permission refunds.approve_refund"):
        services.approve_refund(refund=refund, user=refunder)

    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL


def test_another_user_approves_and_the_refund_goes_to_stripe(
    paid_order, back_office_user, fake_stripe, django_capture_on_commit_callbacks
):
    first, second, _ = paid_order.items.order_by("pk")
    refund = held_refund([first, second], back_office_user)
    approver = staff_with("approve_refund", username="bob")

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_refund(refund=refund.pk, user=approver, note="customer called, checked")

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert (refund.created_by.username, refund.approved_by.username) == ("alice", "bob")
    assert refund.decision_note == "customer called, checked" and refund.decided_at is not None
    assert [call["amount"] for call in fake_stripe.create_calls] == [3000]
    assert states([first, second]) == [SUCCEEDED, SUCCEEDED]
    # The audit log names the requester and the approver.
    log = list(ItemTransition.objects.filter(item=first).values_list("transition", "by"))
    assert log == [
        ("request_approval", "alice"), ("approve_refund", "bob"), ("refund_succeeded", "Stripe API response"),
    ]


def test_an_approved_refund_whose_task_was_lost_is_sent_by_reconciliation(
    paid_order, back_office_user, approver, fake_stripe, time_machine
):
    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc), tick=False)
    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)
    time_machine.move_to(dt.datetime(2026, 3, 4, 9, 0, tzinfo=dt.timezone.utc), tick=False)
    services.approve_refund(refund=refund, user=approver)  # on_commit not run: the task is lost

    time_machine.move_to(dt.datetime(2026, 3, 4, 9, 4, tzinfo=dt.timezone.utc), tick=False)
    assert reconcile_refunds.delay().get()["resubmitted"] == 0  # counted from the approval, not the request
    time_machine.move_to(dt.datetime(2026, 3, 4, 9, 6, tzinfo=dt.timezone.utc), tick=False)
    assert reconcile_refunds.delay().get()["resubmitted"] == 1

    assert len(fake_stripe.create_calls) == 1


def test_a_refund_is_decided_once(paid_order, back_office_user, approver):
    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)
    services.approve_refund(refund=refund, user=approver)

    with pytest.raises(RefundError, match=r"is not awaiting approval: its status is “queued .*” \(approved by bob\)"):
        services.approve_refund(refund=refund, user=UserFactory(username="dora", is_superuser=True))
    with pytest.raises(RefundError, match=r"\(approved by bob\)"):
        services.reject_refund(refund=refund, user=UserFactory(username="dora"), note="too late")


def test_approval_is_refused_when_a_dashboard_refund_took_the_money_meanwhile(
    paid_order, back_office_user, approver, fake_stripe
):
    first, second, _ = paid_order.items.order_by("pk")
    refund = held_refund([first, second], back_office_user)  # €30.00 of €40.45
    Refund.objects.create(
        order=paid_order, amount=2000, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_dashboard", status=RefundStatus.SUCCEEDED,
    )

    with pytest.raises(OverRefund, match=r"can no longer be approved: €20.45 of €40.45 captured remains"):
        services.approve_refund(refund=refund, user=approver)

    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.AWAITING_APPROVAL
    assert states([first, second]) == [AWAITING, AWAITING]
    assert fake_stripe.create_calls == []


# --- rejecting ---------------------------------------------------------------------------------


def test_a_rejection_puts_each_item_back_where_it_was(back_office_user, approver, fake_stripe):
    order = paid_order_with_items(2000, 2000, 500, shipping_amount=0)
    earlier, fresh, other = order.items.order_by("pk")
    fake_stripe.next_status = "failed"
    [failed] = services.request_refund(items=[earlier], user=back_office_user)  # €20.00, below €30.00
    services.submit_refund(refund_id=failed.pk)
    assert states([earlier]) == [FAILED]

    refund = held_refund([earlier, fresh], back_office_user)  # €40.00
    services.reject_refund(refund=refund, user=approver, note="no return received yet")

    refund.refresh_from_db()
    assert (refund.status, refund.rejected_by, refund.decision_note) == (
        RefundStatus.REJECTED, approver, "no return received yet",
    )
    assert states([earlier, fresh, other]) == [FAILED, CAPTURED, CAPTURED]
    rejections = ItemTransition.objects.filter(transition="reject_refund").order_by("item_id")
    assert list(rejections.values_list("from_state", "to_state", "by")) == [(AWAITING, FAILED, "bob"), (AWAITING, CAPTURED, "bob")]
    # Nothing went to Stripe, and a rejected refund no longer counts: the items can be refunded again.
    assert [call["idempotency_key"] for call in fake_stripe.create_calls] == [failed.idempotency_key]
    [again] = services.request_refund(items=[fresh], user=back_office_user)
    assert again.status == RefundStatus.QUEUED


def test_a_rejection_needs_a_note(paid_order, back_office_user, approver):
    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)

    with pytest.raises(RefundError, match="a note is required"):
        services.reject_refund(refund=refund, user=approver, note="  ")

    assert Refund.objects.get().status == RefundStatus.AWAITING_APPROVAL


# --- two approvers at once ---------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_once_make_one_stripe_refund(paid_order, back_office_user, fake_stripe, monkeypatch):
    """The first approver holds the refund's row lock while moving the items; the second waits for
    it (PostgreSQL shows it waiting), then finds the refund queued and is refused."""
    skip_unless_postgres()
    from refunds.services import approvals

    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)
    bob, carol = UserFactory(username="bob", is_superuser=True), UserFactory(username="carol", is_superuser=True)
    held = HeldCall(approvals.transition_items)
    monkeypatch.setattr(approvals, "transition_items", held)

    first, second = run_overlapping(
        lambda: services.approve_refund(refund=refund.pk, user=bob),
        lambda: services.approve_refund(refund=refund.pk, user=carol),
        held=held,
    )

    assert isinstance(first, Refund) and first.approved_by == bob
    assert isinstance(second, RefundError) and "not awaiting approval" in str(second)
    assert len(fake_stripe.create_calls) == 1
    assert ItemTransition.objects.filter(transition="approve_refund").count() == 2  # two items, once each
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCEEDED


def test_check_status_with_stripe_leaves_a_refund_awaiting_approval_alone(paid_order, back_office_user, fake_stripe, monkeypatch):
    from refunds import gateway

    refund = held_refund(list(paid_order.items.order_by("pk")[:2]), back_office_user)
    asked = []
    monkeypatch.setattr(gateway, "find_refund", lambda **kwargs: asked.append(kwargs))

    services.sync_refund_from_stripe(refund_id=refund.pk, by=services.Actor.of_user(back_office_user))

    assert asked == []
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.AWAITING_APPROVAL
