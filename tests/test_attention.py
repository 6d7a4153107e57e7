"""Needs attention: each kind of case is opened by the real path that causes it, once, however
often Stripe delivers or reconciliation runs; resolving records who and why."""

import datetime as dt
import threading
import time

import pytest
from django.core import mail
from django.db import connection, transaction

from refunds import services
from refunds.exceptions import CaseAlreadyResolved, RefundError
from refunds.models import AttentionCase, AttentionKind, ItemState, Refund, RefundStatus, StripeEvent
from refunds.services import attention, stripe_view

from .concurrency import Outcome, wait_for_a_lock_waiter
from .conftest import skip_unless_postgres
from .factories import UserFactory
from .stripe_payloads import deliver, event, refund_object, refund_object_for
from .webhook_scenarios import force_state, requested_refund, states, submitted_refund

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _stripe(fake_stripe):
    return fake_stripe


@pytest.fixture(autouse=True)
def alert_recipients(settings):
    settings.REFUND_ALERT_EMAILS = ["ops@shop.example"]
    settings.REFUND_ALERT_WEBHOOK_URL = ""


@pytest.fixture
def pending_refund(paid_order, back_office_user):
    items = list(paid_order.items.order_by("pk")[:2])
    return submitted_refund(items, back_office_user, stripe_refund_id="re_pending00001")


def cases(**filters):
    return list(AttentionCase.objects.filter(**filters).order_by("pk"))


def kinds():
    return list(AttentionCase.objects.order_by("pk").values_list("kind", flat=True))


# --- refund_failed, late_decline, possible_double_refund: where Stripe's word is recorded ------


def test_a_webhook_decline_opens_one_case_however_often_stripe_delivers_it(
    client, pending_refund, django_capture_on_commit_callbacks
):
    declined = event("refund.updated", refund_object_for(pending_refund, status="failed", failure_reason="declined"))
    again = event("refund.failed", refund_object_for(pending_refund, status="failed", failure_reason="declined"),
                  created=declined["created"] + 5)

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, declined).status_code == 200
        assert deliver(client, declined).status_code == 200  # the same event again
        assert deliver(client, again).status_code == 200  # another event saying the same

    [case] = cases()
    assert (case.kind, case.refund, case.order, case.resolved_at) == (
        AttentionKind.REFUND_FAILED, pending_refund, pending_refund.order, None,
    )
    assert f"Refund re_pending00001 (#{pending_refund.pk}) of €30.00 for order {pending_refund.order.reference}" in case.detail
    assert "failed by Stripe (declined)" in case.detail
    assert len(mail.outbox) == 1  # one alert per case


def test_a_decline_after_settlement_is_a_late_decline(client, pending_refund):
    items = list(pending_refund.items.order_by("pk"))
    for item in items:
        force_state(item, ItemState.PAYMENT_REFUNDED)
    Refund.objects.filter(pk=pending_refund.pk).update(status=RefundStatus.SUCCEEDED)

    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="failed", failure_reason="declined")))

    [case] = cases()
    assert case.kind == AttentionKind.LATE_DECLINE
    assert "after 2 items had become payment refunded" in case.detail
    assert states(items) == [ItemState.PAYMENT_REFUND_FAILED] * 2


def test_a_refund_stripe_refused_to_create_opens_a_refund_failed_case(paid_order, back_office_user, fake_stripe):
    from refunds.exceptions import StripeFinalError

    refund = requested_refund(list(paid_order.items.all()[:1]), back_office_user)
    fake_stripe.errors = [StripeFinalError("Charge has been fully refunded", code="charge_already_refunded", http_status=400)]

    services.submit_refund(refund_id=refund.pk)

    [case] = cases()
    assert (case.kind, case.refund_id) == (AttentionKind.REFUND_FAILED, refund.pk)


def test_a_superseded_refund_reported_succeeded_is_a_possible_double_refund(client, pending_refund, back_office_user):
    t0 = int(time.time())
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="failed"), created=t0))
    newer = requested_refund(list(pending_refund.items.all()), back_office_user)  # the same items, refunded again

    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=t0 + 10))

    assert kinds() == [AttentionKind.REFUND_FAILED, AttentionKind.POSSIBLE_DOUBLE_REFUND]
    double = cases(kind=AttentionKind.POSSIBLE_DOUBLE_REFUND)[0]
    assert double.refund == pending_refund
    assert f"covered by newer refund(s) #{newer.pk} (queued" in double.detail
    assert states(pending_refund.items.all()) == [ItemState.PAYMENT_REFUND_PENDING] * 2  # the newer refund's


def test_a_late_success_whose_newer_refund_failed_too_is_no_double_refund(client, pending_refund, back_office_user):
    t0 = int(time.time())
    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="failed"), created=t0))
    newer = submitted_refund(list(pending_refund.items.all()), back_office_user, stripe_refund_id="re_newer000001")
    deliver(client, event("refund.updated", refund_object_for(newer, status="failed"), created=t0 + 5))

    deliver(client, event("refund.updated", refund_object_for(pending_refund, status="succeeded"), created=t0 + 10))

    assert AttentionKind.POSSIBLE_DOUBLE_REFUND not in kinds()


# --- mismatched_refund ---------------------------------------------------------------------


def test_a_stripe_refund_naming_our_refund_with_another_key_is_a_mismatch(client, pending_refund):
    foreign = refund_object_for(pending_refund, status="succeeded", id="re_foreign00001")
    foreign["metadata"]["oms_idempotency_key"] = "oms-refund-from-a-staging-copy"
    evt = event("refund.created", foreign)

    deliver(client, evt)
    deliver(client, event("refund.updated", foreign, created=evt["created"] + 1))

    [case] = cases()
    assert (case.kind, case.refund) == (AttentionKind.MISMATCHED_REFUND, pending_refund)
    assert "Stripe refund re_foreign00001 names our refund" in case.detail and "idempotency key" in case.detail
    assert states(pending_refund.items.all()) == [ItemState.PAYMENT_REFUND_PENDING] * 2


def test_a_stripe_refund_naming_a_refund_awaiting_approval_is_a_mismatch(client, paid_order, back_office_user, settings):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 100}
    held = requested_refund(list(paid_order.items.all()[:1]), back_office_user)
    assert held.status == RefundStatus.AWAITING_APPROVAL

    deliver(client, event("refund.updated", refund_object_for(held, status="succeeded", id="re_typedby0001")))

    [case] = cases()
    assert case.kind == AttentionKind.MISMATCHED_REFUND
    assert "never sent to Stripe" in case.detail
    assert Refund.objects.get(pk=held.pk).status == RefundStatus.AWAITING_APPROVAL


# --- event_error: the webhook intake ----------------------------------------------------------


def test_an_event_that_fails_to_apply_opens_one_case_which_resolves_itself_once_applied(
    client, pending_refund, monkeypatch
):
    real = stripe_view.transition_items

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(stripe_view, "transition_items", broken)
    evt = event("refund.updated", refund_object_for(pending_refund, status="succeeded"))

    assert deliver(client, evt).status_code == 500
    assert deliver(client, evt).status_code == 500  # Stripe delivers again, it fails again

    [case] = cases()
    assert (case.kind, case.event.stripe_event_id, case.refund) == (AttentionKind.EVENT_ERROR, evt["id"], pending_refund)
    assert "could not be applied: RuntimeError: database hiccup" in case.detail

    monkeypatch.setattr(stripe_view, "transition_items", real)
    assert deliver(client, evt).status_code == 200
    case.refresh_from_db()
    assert case.resolved_at is not None and case.resolved_by is None
    assert case.resolution_note.startswith("Resolved by itself")
    assert StripeEvent.objects.get(stripe_event_id=evt["id"]).processed_at is not None


# --- stuck_pending and awaiting_approval: the reconciliation job ------------------------------


def test_a_refund_pending_for_too_long_is_reported_by_reconciliation_once(
    paid_order, back_office_user, fake_stripe, time_machine
):
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
    time_machine.move_to(start, tick=False)
    fake_stripe.next_status = "pending"
    refund = services.submit_refund(refund_id=requested_refund(list(paid_order.items.all()[:1]), back_office_user).pk)
    assert refund.status == RefundStatus.PENDING

    time_machine.move_to(start + dt.timedelta(days=9, hours=23), tick=False)
    assert services.reconcile_refunds().cases_opened == 0
    time_machine.move_to(start + dt.timedelta(days=10, hours=1), tick=False)
    first = services.reconcile_refunds()
    time_machine.move_to(start + dt.timedelta(days=10, hours=3), tick=False)
    second = services.reconcile_refunds()

    assert (first.cases_opened, second.cases_opened) == (1, 0)
    [case] = cases()
    assert (case.kind, case.refund_id) == (AttentionKind.STUCK_PENDING, refund.pk)
    assert "since 2026-03-02 09:00 UTC (10 days)" in case.detail


def test_the_pending_days_come_from_settings(paid_order, back_office_user, fake_stripe, time_machine, settings):
    settings.REFUND_ATTENTION_PENDING_DAYS = 3
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
    time_machine.move_to(start, tick=False)
    fake_stripe.next_status = "pending"
    services.submit_refund(refund_id=requested_refund(list(paid_order.items.all()[:1]), back_office_user).pk)

    time_machine.move_to(start + dt.timedelta(days=3, minutes=1), tick=False)

    assert services.reconcile_refunds().cases_opened == 1


def test_a_refund_left_awaiting_approval_for_a_day_is_reported_by_reconciliation(
    paid_order, back_office_user, settings, time_machine
):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 100}
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
    time_machine.move_to(start, tick=False)
    held = requested_refund(list(paid_order.items.all()[:1]), back_office_user)

    time_machine.move_to(start + dt.timedelta(hours=23), tick=False)
    assert services.reconcile_refunds().cases_opened == 0
    time_machine.move_to(start + dt.timedelta(hours=25), tick=False)
    assert services.reconcile_refunds().cases_opened == 1
    assert services.reconcile_refunds().cases_opened == 0

    [case] = cases()
    assert (case.kind, case.refund) == (AttentionKind.AWAITING_APPROVAL, held)
    assert "requested by alice on 2026-03-02 09:00 UTC, is still awaiting approval" in case.detail


# --- once, also at the same moment -------------------------------------------------------------


def test_open_case_returns_none_for_the_same_case(pending_refund):
    first = services.open_case(kind="refund_failed", refund=pending_refund, detail="first")
    second = services.open_case(kind="refund_failed", refund=pending_refund, detail="second")
    other_kind = services.open_case(kind="stuck_pending", refund=pending_refund)
    by_key = services.open_case(kind="mismatched_refund", refund=pending_refund, key="re_other")

    assert first is not None and second is None and other_kind is not None and by_key is not None
    assert AttentionCase.objects.get(kind="refund_failed").detail == "first"
    with pytest.raises(ValueError, match="unknown attention kind"):
        services.open_case(kind="something_else", refund=pending_refund)


def test_a_duplicate_inside_a_transaction_leaves_it_usable(pending_refund):
    with transaction.atomic():
        services.open_case(kind="refund_failed", refund=pending_refund)
        assert services.open_case(kind="refund_failed", refund=pending_refund) is None
        Refund.objects.filter(pk=pending_refund.pk).update(note="still writable")  # PostgreSQL: not aborted

    assert Refund.objects.get(pk=pending_refund.pk).note == "still writable"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_opening_the_same_case_at_once_make_one(paid_order, back_office_user):
    """The first holds its new case uncommitted; the second's insert waits on the unique key
    (PostgreSQL shows it waiting) and, once the first commits, records nothing."""
    skip_unless_postgres()
    refund = requested_refund(list(paid_order.items.all()[:1]), back_office_user)
    opened, release = threading.Event(), threading.Event()

    def first():
        with transaction.atomic():
            case = attention.open_case(kind="stuck_pending", refund=Refund.objects.get(pk=refund.pk), detail="first")
            opened.set()
            assert release.wait(30)
        return case

    one = Outcome(first)
    assert opened.wait(30)
    two = Outcome(lambda: attention.open_case(kind="stuck_pending", refund=Refund.objects.get(pk=refund.pk), detail="second"))
    try:
        wait_for_a_lock_waiter("the second open_case")
    finally:
        release.set()

    assert isinstance(one.result(), AttentionCase)
    assert two.result() is None
    assert list(AttentionCase.objects.values_list("detail", flat=True)) == ["first"]
    assert connection.vendor == "postgresql"


# --- resolving ---------------------------------------------------------------------------------


def test_resolving_records_who_and_why(pending_refund):
    case = services.open_case(kind="refund_failed", refund=pending_refund, detail="declined")
    bob = UserFactory(username="bob")

    services.resolve_case(case=case, user=bob, note="Refunded again by bank transfer.")

    case.refresh_from_db()
    assert (case.resolved_by, case.resolution_note) == (bob, "Refunded again by bank transfer.")
    assert case.resolved_at is not None
    with pytest.raises(CaseAlreadyResolved, match=r"was resolved already, by bob on"):
        services.resolve_case(case=case, user=UserFactory(username="carol"), note="me too")


def test_resolving_needs_a_note(pending_refund):
    case = services.open_case(kind="refund_failed", refund=pending_refund)

    with pytest.raises(RefundError, match="a note is required"):
        services.resolve_case(case=case, user=UserFactory(username="bob"), note=" ")
    assert AttentionCase.objects.get().resolved_at is None


def test_a_resolved_case_is_not_opened_again(pending_refund):
    case = services.open_case(kind="refund_failed", refund=pending_refund)
    services.resolve_case(case=case, user=UserFactory(username="bob"), note="handled")

    assert services.open_case(kind="refund_failed", refund=pending_refund) is None


def test_an_unknown_refund_named_by_stripe_opens_nothing(client, paid_order):
    # Not ours and no order of ours: only logged (DESIGN.md §3).
    deliver(client, event("refund.updated", refund_object(status="failed", payment_intent="pi_unknown")))

    assert not AttentionCase.objects.exists()
