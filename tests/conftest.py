import os
import re
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser

import pytest
from django.core.cache import cache
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
    # Tasks run eagerly here: no worker answers /health/'s ping (tests/test_redis_restart.py pings a real one).
    settings.HEALTH_CHECK_WORKERS = False


@pytest.fixture(autouse=True)
def _empty_cache():
    """The API's per-token throttle counts in the cache, which outlives a test; token ids repeat
    from test to test, so each test starts with no requests counted."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True, scope="session")
def _eager_celery():
    """Unit tests run tasks in the caller; tests marked `redis` use a real worker instead."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield


@pytest.fixture
def fake_stripe(monkeypatch) -> FakeStripe:
    """Stripe's refund endpoints, faked at the gateway; the gateway's own logic over them
    (`find_refund`) runs for real."""
    fake = FakeStripe()
    for name in ("create_refund", "retrieve_refund", "list_refunds", "list_refunds_created"):
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


# --- Reading admin pages: the element a feature renders, not a word anywhere on the page ------


class PageElement:
    def __init__(self, tag: str, attrs: list[tuple[str, str | None]], parent: "PageElement | None"):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children: list["PageElement | str"] = []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        """The visible text, spaces collapsed."""
        parts = [child if isinstance(child, str) else child.text for child in self.children]
        return re.sub(r"\s+", " ", " ".join(parts)).strip()

    def iter(self):
        for child in self.children:
            if isinstance(child, PageElement):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, *, cls: str | None = None) -> list["PageElement"]:
        return [el for el in self.iter() if (tag is None or el.tag == tag) and (cls is None or cls in el.classes)]

    def by_id(self, element_id: str) -> "PageElement":
        found = [el for el in self.iter() if el.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]


class _PageParser(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = PageElement("#document", [], None)

    def handle_starttag(self, tag, attrs):
        element = PageElement(tag, attrs, self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(PageElement(tag, attrs, self.current))

    def handle_endtag(self, tag):
        open_element = self.current
        while open_element is not self.root and open_element.tag != tag:
            open_element = open_element.parent
        if open_element is not self.root:
            self.current = open_element.parent

    def handle_data(self, data):
        if self.current.tag not in ("script", "style"):
            self.current.children.append(data)


def page_of(response) -> PageElement:
    parser = _PageParser()
    parser.feed(response.content.decode())
    parser.close()
    return parser.root


def table_rows(response, container_id: str) -> list[list[str]]:
    """The text of each cell, row by row, of the table rows (with a `td`) inside #container_id."""
    container = page_of(response).by_id(container_id)
    return [
        [cell.text for cell in row.children if isinstance(cell, PageElement) and cell.tag in ("th", "td")]
        for row in container.find_all("tr")
        if row.find_all("td")
    ]


def inline_rows(response, group_id: str) -> list[dict[str, str]]:
    """A tabular inline's rows (#group_id, e.g. "transitions-group") as {field name: text}."""
    return [
        {cls.removeprefix("field-"): cell.text for cell in row.find_all("td") for cls in cell.classes
         if cls.startswith("field-")}
        for row in page_of(response).by_id(group_id).find_all("tr", cls="form-row")
        if "empty-form" not in row.classes
    ]


def readonly_field(response, name: str) -> str:
    """The text of a change form's read-only field `name`."""
    [row] = page_of(response).find_all(cls=f"field-{name}")
    [value] = row.find_all(cls="readonly")
    return value.text


# --- The refund confirmation page, as a user goes through it ---------------------------------


def fingerprint_on(response) -> str:
    """The fingerprint of what a refund confirmation page showed (its hidden `confirmed` field)."""
    [field] = [el for el in page_of(response).find_all("input") if el.attrs.get("name") == "confirmed"]
    return field.attrs["value"]


def post_confirmed(client, url, data: dict):
    """POST a refund as a user does: open the confirmation page, then "Yes, refund" with the
    fingerprint it showed. `data` carries `post="yes"` and the form's fields."""
    if data.get("post") == "yes" and "confirmed" not in data:
        shown = client.post(url, {key: value for key, value in data.items() if key not in ("post", "reason", "note")})
        assert shown.status_code == 200, shown.status_code
        data = {**data, "confirmed": fingerprint_on(shown)}
    return client.post(url, data)
