import os
import socket
import subprocess
import sys
import time

import pytest
from django.db import connection

from refunds import gateway
from refunds_project.celery import app as celery_app

from .factories import UserFactory, paid_order_with_items
from .fakes import FakeStripe

# In CI every server a test needs must be there: a missing one fails instead of skipping.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
TEST_WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture(autouse=True)
def _stripe_settings(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_unit"
    settings.STRIPE_WEBHOOK_SECRET = TEST_WEBHOOK_SECRET
    settings.STRIPE_API_BASE = ""


@pytest.fixture(autouse=True, scope="session")
def _eager_celery():
    """Unit tests run tasks in the caller; tests marked `redis` use a real worker instead."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield


@pytest.fixture
def fake_stripe(monkeypatch) -> FakeStripe:
    fake = FakeStripe()
    for name in ("create_refund", "retrieve_refund", "list_refunds", "find_refund"):
        monkeypatch.setattr(gateway, name, getattr(fake, name))
    return fake


@pytest.fixture
def back_office_user(db):
    return UserFactory(username="alice", is_superuser=True)


@pytest.fixture
def paid_order(db):
    """DE--1001-like order: three items (€10.00, €20.00, €5.50) and €4.95 shipping, captured in full."""
    return paid_order_with_items(1000, 2000, 550)


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def skip_unless_postgres():
    if not on_postgres():
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test")


def service_missing(what: str):
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not reachable")
    pytest.skip(f"{what} is not reachable")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory):
    """A localstripe process on 127.0.0.1 for the whole session, with a store of its own."""
    port = free_port()
    store = tmp_path_factory.mktemp("localstripe") / "store.pickle"
    process = subprocess.Popen(
        [sys.executable, "-m", "refunds_dev.emulator", "--port", str(port), "--from-scratch", "--store", str(store)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("localstripe did not start")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def localstripe(settings, localstripe_url):
    settings.STRIPE_API_BASE = localstripe_url
    settings.STRIPE_SECRET_KEY = "sk_test_localstripe"
    return localstripe_url
