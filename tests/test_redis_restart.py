"""A real Celery worker on a Redis server of the test's own keeps serving tasks after Redis is
restarted while the worker holds a task with a countdown, and /health/'s worker ping reports a
worker that is gone.

Celery 5.7 / kombu 5.7 workers can exit on such a restart ("Unrecoverable error: AttributeError:
'NoneType' object has no attribute 'hostname'"), and no release fixes it: the worker runs the way
the Procfiles run it, under `refunds_project.keep_running`, which starts it again.
"""

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from health_check.exceptions import ServiceUnavailable

from refunds import services
from refunds.health import CeleryWorkers
from refunds.models import ItemState

from .concurrency import database_url_for_subprocess
from .conftest import free_port, port_open, service_missing
from .factories import paid_order_with_items

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
WAIT = 90  # seconds any one step may take before the test fails


class RedisServer:
    """redis-server on 127.0.0.1:<port>, no persistence: a restart loses what it held."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder, self.process = port, folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        wait_for(lambda: port_open("127.0.0.1", self.port), "redis-server to listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # as a crash: no goodbye to the clients
            self.process.wait(timeout=10)
        wait_for(lambda: not port_open("127.0.0.1", self.port), "redis-server to stop")


def wait_for(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def due_item(user):
    """An item whose refund succeeded and whose settlement period (0 s for the worker) is over."""
    order = paid_order_with_items(1000)
    services.request_refund(items=order.items.all(), user=user)  # eager: sent to the fake Stripe at once
    item = order.items.get()
    assert item.state == ItemState.PAYMENT_REFUND_SUCCEEDED
    return item


def test_a_supervised_worker_serves_tasks_after_redis_restarts_under_a_held_countdown_task(
    back_office_user, fake_stripe, tmp_path
):
    if not os.access(REDIS_SERVER, os.X_OK):
        service_missing("redis-server")
    redis = RedisServer(free_port(), tmp_path)
    redis.start()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "REFUNDS_VAR_DIR": str(settings.VAR_DIR),
        "CELERY_BROKER_URL": redis.url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "REFUND_SETTLEMENT_SECONDS": "0",
        "STRIPE_SECRET_KEY": "sk_test_unit",
        "STRIPE_WEBHOOK_SECRET": "whsec_test_secret",
        "PYTHONUNBUFFERED": "1",
    }
    # As Procfile runs it: prefork, acks_late from the settings, under keep_running.
    worker = subprocess.Popen(
        [sys.executable, "-m", "refunds_project.keep_running", "--", sys.executable, "-m", "celery", "-A",
         "refunds_project", "worker", "--concurrency", "1", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=settings.BASE_DIR, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    sender = Celery("test-sender", broker=redis.url, set_as_current=False)
    try:
        health = CeleryWorkers(app=sender, timeout=dt.timedelta(seconds=2), limit=1)
        wait_for(lambda: "ready." in log.read_text(), "the worker to start")
        health.run()  # a live worker answers the ping

        # The worker takes a task it must hold for two minutes (unacknowledged), then Redis dies.
        sender.send_task("refunds.tasks.reconcile_refunds", countdown=120)
        wait_for(lambda: "Task refunds.tasks.reconcile_refunds[" in log.read_text(), "the worker to receive the task")
        redis.stop()
        time.sleep(2)  # the worker notices the connection is gone
        redis.start()

        item = due_item(back_office_user)
        sender.send_task("refunds.tasks.finalize_refunds")
        wait_for(lambda: type(item).objects.get(pk=item.pk).state == ItemState.PAYMENT_REFUNDED,
                 "the worker to finalize an item after the restart")
        wait_for(lambda: _answers(health), "the worker to answer a ping again")

        # A worker that is gone is reported.
        worker.terminate()
        worker.wait(timeout=60)
        with pytest.raises(ServiceUnavailable, match="no Celery worker answered a ping"):
            health.run()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 9)
            worker.wait()
        redis.stop()
        print(log.read_text()[-6000:])


def _answers(check) -> bool:
    try:
        check.run()
    except ServiceUnavailable:
        return False
    return True
