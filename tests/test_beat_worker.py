"""A real `celery worker --beat` on Redis runs the schedule from the database and settles an item."""

import os
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from redis import Redis

from refunds import services
from refunds.models import ItemState, ItemTransition

from .concurrency import database_url_for_subprocess
from .conftest import port_open, service_missing
from .factories import paid_order_with_items

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]

BROKER_URL = os.environ.get("SETTLE_TEST_BROKER_URL", "redis://127.0.0.1:6379/2")
SETTLEMENT_DAYS_FOR_THE_TEST = "0.00003"  # 2.6 seconds


def forget_queue(queue: str) -> None:
    """Remove the test queue and kombu's bindings for it from the shared Redis database."""
    redis = Redis.from_url(BROKER_URL)
    for key in redis.scan_iter(match=f"*{queue}*"):
        redis.delete(key)
    redis.close()


def test_a_worker_with_beat_finalizes_a_succeeded_item_on_schedule(back_office_user, fake_stripe, tmp_path):
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis")
    queue = f"settle-beat-{uuid.uuid4().hex}"
    order = paid_order_with_items(1000, 2000)
    [refund] = services.request_refund(items=order.items.all(), user=back_office_user)  # sent on commit
    assert set(order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUND_SUCCEEDED}
    # The seeded jobs, made to run every second on this test's own queue.
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    for task in PeriodicTask.objects.filter(name__in=["finalize-refunds", "reconcile-refunds"]):
        task.crontab, task.interval, task.queue = None, every_second, queue
        task.save()

    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "REFUNDS_VAR_DIR": str(settings.VAR_DIR),
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "REFUND_SETTLEMENT_DAYS": SETTLEMENT_DAYS_FOR_THE_TEST,
        "STRIPE_SECRET_KEY": "sk_test_unit",
        "STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "refunds_project", "worker", "--beat", "-Q", queue,
         "--pool", "solo", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.poll() is None:
            if not order.items.exclude(state=ItemState.PAYMENT_REFUNDED).exists():
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        forget_queue(queue)

    output = log.read_text()
    assert set(order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUNDED}, output[-3000:]
    assert set(ItemTransition.objects.filter(transition="confirm_refund").values_list("by", "refund_id")) == {
        ("settlement timeout", refund.pk)
    }
    assert "Scheduler: Sending due task finalize-refunds (refunds.tasks.finalize_refunds)" in output
    assert "Task refunds.tasks.finalize_refunds[" in output and "succeeded" in output
