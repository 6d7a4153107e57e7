"""The newest Stripe view of a refund wins, on every path (DESIGN.md §10).

The case reproduced in the issue "The house by concern": a refund is submitted (pending),
Stripe fails it, we learn so — from the API's answer, an event, "Check status with Stripe" or
the reconciliation job — and then a `refund.updated` "succeeded" that Stripe created *before*
we learned it arrives late. It must change nothing, whichever path told us first.
"""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from refunds import gateway, services
from refunds.models import ItemState, Refund, RefundStatus

from .stripe_payloads import deliver, event, refund_object_for
from .webhook_scenarios import states

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 11, 20, 9, 0, 0, tzinfo=dt.timezone.utc)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(T0, tick=False)

    def move_to(moment: dt.datetime) -> None:
        time_machine.move_to(moment, tick=False)

    return move_to


def pending_refund(order, user, fake_stripe) -> Refund:
    """Requested and submitted at T0; Stripe answered pending."""
    fake_stripe.next_status = "pending"
    [refund] = services.request_refund(items=order.items.all(), user=user)
    services.submit_refund(refund_id=refund.pk)  # the on-commit task, run here
    refund.refresh_from_db()
    assert refund.status == RefundStatus.PENDING
    return refund


def late_success(client, refund: Refund, *, created: dt.datetime):
    """A `refund.updated` saying succeeded, created by Stripe at `created`, delivered now."""
    evt = event("refund.updated", refund_object_for(refund, status="succeeded"), created=int(created.timestamp()))
    response = deliver(client, evt)
    assert response.status_code == 200, response.content
    return response


def assert_still_failed(refund: Refund) -> None:
    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert set(states(refund.items.all())) == {ItemState.PAYMENT_REFUND_FAILED}


def test_after_check_status_with_stripe_an_older_event_changes_nothing(
    client, clock, paid_order, back_office_user, fake_stripe
):
    refund = pending_refund(paid_order, back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "failed", "declined")
    clock(at(60))
    client.force_login(back_office_user)

    client.post(reverse("admin:refunds_refund_check_status", args=[refund.pk]))
    assert_still_failed(refund)

    late_success(client, refund, created=at(30))

    assert_still_failed(refund)


def test_after_reconciliation_an_older_event_changes_nothing(client, clock, paid_order, back_office_user, fake_stripe):
    refund = pending_refund(paid_order, back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "failed", "declined")
    clock(at(2 * 3600))  # pending for longer than REFUND_RECONCILE_PENDING_AFTER (1 h)

    report = services.reconcile_refunds()
    assert [repair.refund_id for repair in report.synced] == [refund.pk]
    assert_still_failed(refund)

    late_success(client, refund, created=at(3600))

    assert_still_failed(refund)


def test_after_the_api_answer_an_older_event_changes_nothing(client, clock, paid_order, back_office_user, fake_stripe):
    # The refund is requested at T0, but its task only runs a minute later; Stripe answers failed.
    fake_stripe.next_status = "failed"
    fake_stripe.next_failure_reason = "declined"
    [refund] = services.request_refund(items=paid_order.items.all(), user=back_office_user)
    clock(at(60))
    services.submit_refund(refund_id=refund.pk)
    assert_still_failed(refund)

    late_success(client, refund, created=at(30))

    assert_still_failed(refund)


def test_after_an_event_an_older_event_changes_nothing(client, clock, paid_order, back_office_user, fake_stripe):
    refund = pending_refund(paid_order, back_office_user, fake_stripe)
    clock(at(60))
    failed = event("refund.updated", refund_object_for(refund, status="failed", failure_reason="declined"),
                   created=int(at(60).timestamp()))
    assert deliver(client, failed).status_code == 200
    assert_still_failed(refund)

    late_success(client, refund, created=at(30))

    assert_still_failed(refund)


def test_an_event_created_after_a_fetch_is_applied(client, clock, paid_order, back_office_user, fake_stripe):
    refund = pending_refund(paid_order, back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "failed", "declined")
    clock(at(60))
    services.sync_refund_from_stripe(refund_id=refund.pk, by=services.Actor.reconciliation())
    assert_still_failed(refund)

    clock(at(90))
    late_success(client, refund, created=at(61))  # Stripe changed its mind after our fetch

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert set(states(refund.items.all())) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_an_event_of_the_same_second_as_a_fetch_is_settled_by_fetching_again(
    client, clock, paid_order, back_office_user, fake_stripe, monkeypatch
):
    retrieved = []
    real_retrieve = gateway.retrieve_refund
    monkeypatch.setattr(gateway, "retrieve_refund", lambda stripe_id: retrieved.append(stripe_id) or real_retrieve(stripe_id))
    refund = pending_refund(paid_order, back_office_user, fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "failed", "declined")
    clock(at(60) + dt.timedelta(milliseconds=200))
    services.sync_refund_from_stripe(refund_id=refund.pk, by=services.Actor.reconciliation())
    refund.refresh_from_db()
    assert refund.stripe_event_created_at == at(60)  # a view is kept in whole seconds, as Stripe's `created`
    retrieved_before = len(retrieved)

    clock(at(60) + dt.timedelta(milliseconds=700))
    late_success(client, refund, created=at(60))  # cannot be ordered by `created`: Stripe is asked

    assert retrieved[retrieved_before:] == [refund.stripe_refund_id]
    assert_still_failed(refund)  # what Stripe says now


def test_the_mark_of_the_newest_view_never_moves_back(clock, paid_order, back_office_user, fake_stripe):
    refund = pending_refund(paid_order, back_office_user, fake_stripe)
    refund.refresh_from_db()
    assert refund.stripe_event_created_at == T0
    clock(at(120))
    services.sync_refund_from_stripe(refund_id=refund.pk, by=services.Actor.reconciliation())
    refund.refresh_from_db()
    assert refund.stripe_event_created_at == at(120)
    assert refund.stripe_event_created_at <= timezone.now()
