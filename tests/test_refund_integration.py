"""Refunds against real servers: PostgreSQL row locks, localstripe over HTTP, a Celery worker on Redis."""

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from refunds import gateway, services
from refunds_dev import stripe_tools
from refunds.exceptions import RefundError
from refunds.models import ItemState, Refund, RefundStatus
from refunds.services import refund_requests
from refunds.tasks import submit_refund
from refunds_project.celery import app as celery_app

from .concurrency import HeldCall, database_url_for_subprocess, run_overlapping
from .conftest import port_open, service_missing, skip_unless_postgres
from .factories import UserFactory, paid_order_with_items


@pytest.mark.django_db(transaction=True)
def test_two_back_office_users_refunding_the_same_item_produce_one_refund_and_one_stripe_call(fake_stripe, monkeypatch):
    skip_unless_postgres()
    order = paid_order_with_items(1000, 2000)
    item = order.items.order_by("pk").first()
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    # Alice's request waits with the order and its items locked, before it plans the refund,
    # until Bob's request is seen waiting for her locks: the two really overlap.
    held = HeldCall(refund_requests.plan_refunds)
    monkeypatch.setattr(refund_requests, "plan_refunds", held)

    alices, bobs = run_overlapping(
        lambda: services.request_refund(items=[item.pk], user=alice),
        lambda: services.request_refund(items=[item.pk], user=bob),
        held=held,
    )

    assert isinstance(alices, list) and isinstance(bobs, RefundError), (alices, bobs)
    assert "cannot be refunded: its state is “payment refund pending”" in str(bobs)
    assert Refund.objects.get().created_by == alice
    assert len(fake_stripe.create_calls) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_submitting_the_same_refund_call_stripe_once(fake_stripe, back_office_user, monkeypatch):
    skip_unless_postgres()
    fake_stripe.honours_idempotency_keys = False
    order = paid_order_with_items(1000)
    refund = Refund.objects.create(order=order, amount=1495, currency="eur")
    refund.items.set(order.items.all())
    # The first worker is inside its Stripe call, the refund's row locked, until the second
    # is seen waiting for that lock.
    held = HeldCall(gateway.create_refund)
    monkeypatch.setattr(gateway, "create_refund", held)

    results = run_overlapping(
        lambda: services.submit_refund(refund_id=refund.pk),
        lambda: services.submit_refund(refund_id=refund.pk),
        held=held,
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(fake_stripe.create_calls) == 1
    assert Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCEEDED


@pytest.fixture
def localstripe_order(localstripe, db):
    intent = stripe_tools.create_paid_payment_intent(amount=4045, currency="eur")
    return paid_order_with_items(1000, 2000, 550, stripe_payment_intent_id=intent)


@pytest.mark.django_db
def test_a_refund_reaches_localstripe_and_reads_back(
    localstripe_order, back_office_user, django_capture_on_commit_callbacks, settings
):
    settings.STRIPE_SEND_REFUND_REASON = False  # localstripe answers 400 to `reason`
    items = list(localstripe_order.items.order_by("pk")[:2])

    with django_capture_on_commit_callbacks(execute=True):
        [refund] = services.request_refund(items=items, user=back_office_user, reason="requested_by_customer")

    refund.refresh_from_db()
    assert refund.reason == "requested_by_customer"
    at_stripe = gateway.retrieve_refund(refund.stripe_refund_id)
    assert (at_stripe.amount, at_stripe.status, at_stripe.payment_intent) == (3000, "succeeded", localstripe_order.stripe_payment_intent_id)
    assert at_stripe.metadata["oms_refund_id"] == str(refund.pk)
    assert refund.status == RefundStatus.SUCCEEDED
    assert set(refund.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUND_SUCCEEDED}


@pytest.mark.django_db
def test_a_crash_after_localstripe_answered_then_a_retry_leaves_one_refund_there(
    localstripe_order, back_office_user, django_capture_on_commit_callbacks, monkeypatch
):
    # localstripe ignores idempotency keys: only our own lookup by metadata prevents a double refund.
    with django_capture_on_commit_callbacks(execute=False):
        [refund] = services.request_refund(items=localstripe_order.items.all(), user=back_office_user)
    real_create = gateway.create_refund

    def create_then_die(**kwargs):
        real_create(**kwargs)
        raise SystemExit("worker killed after Stripe answered")

    monkeypatch.setattr(gateway, "create_refund", create_then_die)
    with pytest.raises(SystemExit):
        submit_refund.delay(refund.pk)
    monkeypatch.setattr(gateway, "create_refund", real_create)

    submit_refund.delay(refund.pk)

    at_stripe = gateway.list_refunds(payment_intent=localstripe_order.stripe_payment_intent_id)
    refund.refresh_from_db()
    assert [r.id for r in at_stripe] == [refund.stripe_refund_id]
    assert refund.status == RefundStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_on_redis_submits_the_refund(localstripe, back_office_user, monkeypatch, tmp_path):
    broker = os.environ.get("CELERY_TEST_BROKER_URL", "redis://127.0.0.1:6379/1")
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis at 127.0.0.1:6379")
    queue = f"test-submit-{os.getpid()}-{time.monotonic_ns()}"
    intent = stripe_tools.create_paid_payment_intent(amount=1495, currency="eur")
    order = paid_order_with_items(1000, stripe_payment_intent_id=intent)
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "CELERY_BROKER_URL": broker,
        "STRIPE_SECRET_KEY": settings.STRIPE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
        "STRIPE_API_BASE": settings.STRIPE_API_BASE,
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "refunds_project", "worker", "-Q", queue,
         "--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        monkeypatch.setattr(submit_refund, "delay", lambda refund_id: None)  # we send it ourselves, below
        [refund] = services.request_refund(items=order.items.all(), user=back_office_user)
        celery_app.conf.task_always_eager = False
        try:
            with celery_app.connection_for_write(broker) as conn:
                submit_refund.apply_async(args=[refund.pk], connection=conn, queue=queue)
        finally:
            celery_app.conf.task_always_eager = True

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            refund.refresh_from_db()
            if refund.status != RefundStatus.QUEUED or worker.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    assert refund.status == RefundStatus.SUCCEEDED, log.read_text()[-3000:]
    assert gateway.retrieve_refund(refund.stripe_refund_id).amount == 1495
    assert set(order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    assert "refunds.tasks.submit_refund" in log.read_text()
