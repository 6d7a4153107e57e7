"""One lock order on PostgreSQL: paths that lock the same refund, order and items at the same
time never deadlock (refunds/services/__init__.py documents the order).

"Confirm refund now" holds items and writes audit rows naming a refund; at COMMIT PostgreSQL's
foreign-key check takes FOR KEY SHARE on that refund. A webhook about the same refund held it
FOR UPDATE and waited for the items: a deadlock, 7 times in 60 trials. Refunds are now locked
FOR NO KEY UPDATE, which the foreign-key check does not wait for.
"""

import datetime as dt
import time

import pytest
from django.test import Client
from django.utils import timezone

from refunds import services
from refunds.exceptions import RefundError
from refunds.gateway import StripeRefund
from refunds.models import ItemState, OrderItem, Refund, RefundStatus
from refunds.services import Actor, locked_rows, stripe_view

from .concurrency import HeldCall, Outcome, lock_waiters, run_in_threads, run_overlapping
from .conftest import skip_unless_postgres
from .factories import paid_order_with_items
from .stripe_payloads import deliver, event, refund_object_for
from .webhook_scenarios import requested_refund, submitted_refund

pytestmark = pytest.mark.django_db(transaction=True)

TRIALS = 10  # per pair; each trial is a fresh order


@pytest.fixture(autouse=True)
def _postgres_only():
    skip_unless_postgres()


@pytest.fixture(autouse=True)
def _no_submission_task(monkeypatch):
    from refunds.tasks import submit_refund

    monkeypatch.setattr(submit_refund, "delay", lambda *args, **kwargs: None)


class Scenario:
    """An order of three items: refund A (items 1, 2) succeeded at Stripe, its settlement period
    over, and Stripe now says it failed; refund B (item 3) queued, not sent yet."""

    def __init__(self, user, fake_stripe, number: int):
        self.user = user
        self.order = paid_order_with_items(1000, 2000, 550)
        first, second, third = self.order.items.order_by("pk")
        self.a_items = [first, second]
        self.a = submitted_refund(self.a_items, user, stripe_refund_id=f"re_lock_a{number}", status=RefundStatus.SUCCEEDED)
        OrderItem.objects.filter(pk__in=[first.pk, second.pk]).update(
            state=ItemState.PAYMENT_REFUND_SUCCEEDED, state_changed_at=timezone.now() - dt.timedelta(days=8)
        )
        self.b = requested_refund([third], user)
        fake_stripe.refunds[self.a.stripe_refund_id] = StripeRefund.from_stripe(
            refund_object_for(self.a, status="failed", failure_reason="declined")
        )
        self.created = int(time.time())

    # --- the paths that lock refunds, orders and items -------------------------------------
    def webhook_a(self):
        return deliver(Client(), event("refund.updated", refund_object_for(self.a, status="failed"), created=self.created)).status_code

    def webhook_b(self):
        obj = refund_object_for(self.b, id=f"re_lock_b{self.a.pk}", status="succeeded")
        return deliver(Client(), event("refund.updated", obj, created=self.created)).status_code

    def confirm(self):
        return services.confirm_refund_now(items=self.a_items, user=self.user)

    def sync(self):
        return services.sync_refund_from_stripe(refund_id=self.a.pk, by=Actor.reconciliation())

    def settle(self):
        return services.finalize_due_refunds()

    def submit_b(self):
        return services.submit_refund(refund_id=self.b.pk)

    def back_office_refund(self):
        """Item 3 again (it is part of B, so refused) or, once B failed, refunded: either is fine."""
        return services.request_refund(items=[self.order.items.order_by("pk").last()], user=self.user)


def take_the_general_path(monkeypatch) -> None:
    """Webhooks skip the hot path (services.locked_rows): the event is inserted without locking
    its refund, which the general path ("Check status with Stripe", reconciliation, events about
    refunds without items) then locks itself."""
    insert_and_lock = locked_rows.insert_and_lock
    monkeypatch.setattr(
        locked_rows, "insert_and_lock",
        lambda sql, params, stripe_refund_id, **found: insert_and_lock(sql, params, None, **found),
    )


PAIRS = [
    ("confirm", "webhook_a"),
    ("confirm", "sync"),
    ("settle", "webhook_a"),
    ("settle", "sync"),
    ("back_office_refund", "webhook_a"),
    ("back_office_refund", "webhook_b"),
    ("submit_b", "webhook_b"),
    ("submit_b", "confirm"),
]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_paths_on_the_same_refund_at_once_never_deadlock(back_office_user, fake_stripe, first, second):
    for number in range(TRIALS):
        scenario = Scenario(back_office_user, fake_stripe, number)
        outcomes = run_in_threads(getattr(scenario, first), getattr(scenario, second))
        for name, outcome in zip((first, second), outcomes):
            # A business refusal ("it is payment refund failed") is fine; a database error is not.
            assert not isinstance(outcome, BaseException) or isinstance(outcome, RefundError), (
                f"trial {number}: {name} raised {outcome!r}"
            )
            assert outcome != 500, f"trial {number}: {name} answered 500"


def test_confirm_refund_now_does_not_wait_for_a_webhook_holding_the_refund(back_office_user, fake_stripe, monkeypatch):
    """The interleaving that deadlocked, forced: the webhook holds refund A's row lock and is
    about to lock A's items when "Confirm refund now" locks those items and commits.

    The webhook's own fast path (services.locked_rows) locks the refund and its items in one
    statement, so this interleaving is forced on the general path, which "Check status with
    Stripe", reconciliation and events about refunds without items still take."""
    take_the_general_path(monkeypatch)
    scenario = Scenario(back_office_user, fake_stripe, 0)
    held = HeldCall(stripe_view.apply_refund_status)  # called with the refund locked, before the items
    monkeypatch.setattr(stripe_view, "apply_refund_status", held)
    held.arm()
    webhook = Outcome(scenario.webhook_a)
    try:
        assert held.entered.wait(30), "the webhook never reached its refund lock"
        confirm = Outcome(scenario.confirm)
        deadline = time.monotonic() + 30
        while confirm.thread.is_alive() and lock_waiters() == 0:
            assert time.monotonic() < deadline, "neither finished nor waited"
            time.sleep(0.01)
        # Before the fix, confirm's COMMIT waited here for the webhook's FOR UPDATE on refund A.
        assert lock_waiters() == 0 and confirm.join().error is None, "Confirm refund now waited for the webhook"
    finally:
        held.release()
    assert webhook.result() == 200
    # Confirmed first (payment refunded), then Stripe's decline arrived: a late decline.
    assert set(OrderItem.objects.filter(pk__in=[i.pk for i in scenario.a_items]).values_list("state", flat=True)) == {
        ItemState.PAYMENT_REFUND_FAILED
    }
    assert Refund.objects.get(pk=scenario.a.pk).status == RefundStatus.FAILED


def test_a_webhook_locking_refund_and_items_at_once_makes_confirm_wait_then_both_finish(
    back_office_user, fake_stripe, monkeypatch,
):
    """The webhook's fast path holds refund A and its items (one statement) when "Confirm refund
    now" asks for the items: Confirm waits for the webhook's commit (no deadlock), then finds
    the items failed and confirms nothing."""
    scenario = Scenario(back_office_user, fake_stripe, 0)
    held = HeldCall(stripe_view.apply_refund_status)  # called with refund and items locked
    monkeypatch.setattr(stripe_view, "apply_refund_status", held)
    held.arm()
    webhook = Outcome(scenario.webhook_a)
    try:
        assert held.entered.wait(30), "the webhook never reached its locks"
        confirm = Outcome(scenario.confirm)
        deadline = time.monotonic() + 30
        while lock_waiters() == 0:
            assert time.monotonic() < deadline, "Confirm refund now did not wait for the items the webhook holds"
            time.sleep(0.01)
    finally:
        held.release()
    assert webhook.result() == 200
    assert isinstance(confirm.join().error, RefundError)
    assert set(OrderItem.objects.filter(pk__in=[i.pk for i in scenario.a_items]).values_list("state", flat=True)) == {
        ItemState.PAYMENT_REFUND_FAILED
    }
    assert Refund.objects.get(pk=scenario.a.pk).status == RefundStatus.FAILED


@pytest.mark.parametrize("path", ["hot path", "general path"])
def test_a_late_success_waiting_for_items_a_newer_refund_took_sees_the_newer_refund(
    back_office_user, fake_stripe, monkeypatch, path,
):
    """Refund A failed and its items are being refunded again (B) when Stripe says A succeeded
    after all. The webhook waits for the items B holds; when B commits, PostgreSQL hands the
    webhook the items as B left them, but a subquery in the same statement still sees the links
    as they were before B: A would look like the items' latest refund and move them. The latest
    refund is read again once the items are locked, so nothing moves and the possible double
    refund is flagged."""
    from refunds.models import AttentionCase, AttentionKind
    from refunds.services import refund_requests

    if path == "general path":
        take_the_general_path(monkeypatch)
    order = paid_order_with_items(1000, 2000)
    items = list(order.items.order_by("pk"))
    a = submitted_refund(items, back_office_user, stripe_refund_id="re_late_a", status=RefundStatus.FAILED)
    OrderItem.objects.filter(pk__in=[i.pk for i in items]).update(state=ItemState.PAYMENT_REFUND_FAILED)
    held = HeldCall(refund_requests.submit_after_commit)  # B's items moved and linked, not committed
    monkeypatch.setattr(refund_requests, "submit_after_commit", held)

    def late_success():
        return deliver(Client(), event("refund.updated", refund_object_for(a, status="succeeded"))).status_code

    b_outcome, webhook = run_overlapping(
        lambda: services.request_refund(items=items, user=back_office_user), late_success, held=held
    )

    assert webhook == 200
    [b] = b_outcome
    assert set(OrderItem.objects.filter(pk__in=[i.pk for i in items]).values_list("state", flat=True)) == {
        ItemState.PAYMENT_REFUND_PENDING  # B's, untouched by A's word
    }
    a.refresh_from_db()
    assert a.status == RefundStatus.SUCCEEDED and f"#{b.pk}" in a.warning
    assert AttentionCase.objects.filter(kind=AttentionKind.POSSIBLE_DOUBLE_REFUND, refund=a).count() == 1
