"""Catch-up: a backlog of refunds whose webhooks were lost is read from Stripe's list, 100 a
request, and recorded through the one Stripe-view function; the newest view wins."""

import datetime as dt
import io
from dataclasses import replace

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from refunds import gateway, services
from refunds.conf import app_settings
from refunds.models import ItemState, OrderItem, Refund, RefundStatus

from .factories import paid_order_with_items
from .stripe_payloads import deliver, event, refund_object_for

pytestmark = pytest.mark.django_db


def pending_refunds(count: int, *, user, fake_stripe) -> list[Refund]:
    """`count` one-item refunds Stripe accepted as pending; no webhook has come since."""
    fake_stripe.next_status = "pending"
    refunds = []
    for _ in range(count):
        order = paid_order_with_items(1000)
        (refund,) = services.request_refund(items=list(order.items.all()), user=user)
        refunds.append(services.submit_refund(refund_id=refund.pk))
    return refunds


def item_states(refunds) -> set[str]:
    return set(OrderItem.objects.filter(refunds__in=refunds).values_list("state", flat=True))


def test_a_backlog_is_settled_from_pages_of_the_list(back_office_user, fake_stripe):
    refunds = pending_refunds(130, user=back_office_user, fake_stripe=fake_stripe)
    for refund in refunds:
        fake_stripe.set_status(refund.stripe_refund_id, "succeeded")

    report = services.catch_up_refunds(since=timezone.now() - dt.timedelta(hours=1))

    assert fake_stripe.list_calls == 2  # 130 refunds, 100 a page
    assert report.requests == 2 and report.fetched == 0
    assert report.listed == 130 and report.changed == 130
    assert set(Refund.objects.filter(pk__in=[r.pk for r in refunds]).values_list("status", flat=True)) == {"succeeded"}
    assert item_states(refunds) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_an_event_newer_than_the_listing_wins_over_it(back_office_user, fake_stripe, monkeypatch):
    """Stripe's list says succeeded as of the page's request; while the page is being applied, an
    event created after that request (a decline) arrives and is applied. The listing must not
    put the refund back to succeeded."""
    (refund,) = pending_refunds(1, user=back_office_user, fake_stripe=fake_stripe)
    fake_stripe.set_status(refund.stripe_refund_id, "succeeded")
    listing = fake_stripe.list_refunds_created

    def list_then_an_event_arrives(**kwargs):
        page = listing(**kwargs)
        later = int(timezone.now().timestamp()) + 2  # created after the page was asked for
        declined = refund_object_for(refund, status="failed", failure_reason="declined", id=refund.stripe_refund_id)
        assert deliver(Client(), event("refund.failed", declined, created=later)).status_code == 200
        return page

    monkeypatch.setattr(gateway, "list_refunds_created", list_then_an_event_arrives)

    report = services.catch_up_refunds(since=timezone.now() - dt.timedelta(hours=1))

    refund.refresh_from_db()
    assert report.listed == 1 and report.changed == 0
    assert refund.status == RefundStatus.FAILED
    assert item_states([refund]) == {ItemState.PAYMENT_REFUND_FAILED}


def test_the_listing_applies_when_it_is_the_newest_view(back_office_user, fake_stripe):
    """An event older than the listing was applied before (pending); the listing's failed wins."""
    (refund,) = pending_refunds(1, user=back_office_user, fake_stripe=fake_stripe)
    Refund.objects.filter(pk=refund.pk).update(stripe_event_created_at=timezone.now() - dt.timedelta(minutes=5))
    fake_stripe.set_status(refund.stripe_refund_id, "failed", failure_reason="expired_or_canceled_card")

    services.catch_up_refunds(since=timezone.now() - dt.timedelta(hours=1))

    refund.refresh_from_db()
    assert refund.status == RefundStatus.FAILED
    assert refund.failure_reason == "expired_or_canceled_card"
    assert item_states([refund]) == {ItemState.PAYMENT_REFUND_FAILED}


def test_our_pending_refunds_the_list_does_not_show_are_fetched_one_by_one(back_office_user, fake_stripe):
    listed, unlisted = pending_refunds(2, user=back_office_user, fake_stripe=fake_stripe)
    for refund in (listed, unlisted):
        fake_stripe.set_status(refund.stripe_refund_id, "succeeded")
    # Created at Stripe before the window (a clock apart): the list does not show it.
    since = timezone.now() - dt.timedelta(hours=1)
    fake_stripe.refunds[unlisted.stripe_refund_id] = replace(
        fake_stripe.refunds[unlisted.stripe_refund_id], created=since - dt.timedelta(minutes=1)
    )

    report = services.catch_up_refunds(since=since)

    assert report.listed == 1 and report.fetched == 1 and report.requests == 2
    assert item_states([listed, unlisted]) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_reconciliation_reads_a_backlog_from_the_list_beyond_its_limit(back_office_user, fake_stripe):
    refunds = pending_refunds(30, user=back_office_user, fake_stripe=fake_stripe)
    long_ago = timezone.now() - app_settings.REFUND_RECONCILE_PENDING_AFTER - dt.timedelta(minutes=1)
    Refund.objects.filter(pk__in=[r.pk for r in refunds]).update(status_changed_at=long_ago, created_at=long_ago)
    for refund in refunds:
        fake_stripe.set_status(refund.stripe_refund_id, "succeeded")

    report = services.reconcile_refunds(limit=5)

    assert report.caught_up is not None and report.caught_up.changed == 30
    assert fake_stripe.list_calls == 1
    assert report.synced == []  # nothing left for the one-by-one fetches
    assert item_states(refunds) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_a_few_stale_refunds_are_still_fetched_one_by_one(back_office_user, fake_stripe):
    refunds = pending_refunds(3, user=back_office_user, fake_stripe=fake_stripe)
    long_ago = timezone.now() - app_settings.REFUND_RECONCILE_PENDING_AFTER - dt.timedelta(minutes=1)
    Refund.objects.filter(pk__in=[r.pk for r in refunds]).update(status_changed_at=long_ago)

    report = services.reconcile_refunds()

    assert report.caught_up is None and fake_stripe.list_calls == 0
    assert len(report.synced) == 3


def test_the_command_reports_what_it_did(back_office_user, fake_stripe):
    refunds = pending_refunds(3, user=back_office_user, fake_stripe=fake_stripe)
    fake_stripe.set_status(refunds[0].stripe_refund_id, "succeeded")
    out = io.StringIO()

    call_command("catch_up_refunds", "--since", (timezone.now() - dt.timedelta(days=1)).date().isoformat(), stdout=out)

    assert "3 listed, 1 changed here, 2 unchanged, 0 fetched one by one; 1 request(s) to Stripe" in out.getvalue()
    assert item_states(refunds[:1]) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


def test_the_command_refuses_a_window_that_ends_before_it_starts(db):
    with pytest.raises(Exception, match="before --since"):
        call_command("catch_up_refunds", "--since", "2026-11-20", "--until", "2026-11-19")
