"""The README's run command, end to end, as a newcomer runs it: `make run` in a fresh copy of the
repository with no virtualenv, then the Back Office over HTTP, then Ctrl-C, then once more.

Slow (it creates a virtualenv and installs requirements.txt; pip's wheel cache is reused), so
marked `slow`; CI runs it.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .conftest import free_port, port_open, service_missing

BASE_DIR = Path(__file__).resolve().parent.parent
DEMO_REFERENCES = ["DEMO-1001", "DEMO-1002", "DEMO-1003", "DEMO-1004"]
SETTLEMENT_SECONDS = 6
START_TIMEOUT = 240  # a fresh virtualenv and pip install on a cold cache
STATE_TIMEOUT = 60
STOP_TIMEOUT = 60

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The repository's tracked files, as they are in the working tree, without .venv/var/db."""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("the demo runs on its own SQLite database whatever DATABASE_URL says; the SQLite run covers it")
    if shutil.which("make") is None:
        service_missing("make")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=BASE_DIR, capture_output=True, check=True).stdout
    copy = tmp_path_factory.mktemp("fresh-clone") / "refunds-oms"
    for name in filter(None, listed.decode().split("\0")):
        source = BASE_DIR / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    assert not (copy / ".venv").exists() and (copy / "Makefile").is_file()
    return copy


def newcomer_environment(**demo) -> dict[str, str]:
    """The environment of a shell that knows nothing of this project: no settings, no virtualenv."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STRIPE_", "CELERY_", "REFUND", "DEMO_", "PYTEST", "PYTHON"))
        and key not in {"DATABASE_URL", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS"}
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update({key: str(value) for key, value in demo.items()})
    return env


class Demo:
    """`make run` in a process group of its own, as a terminal runs it; Ctrl-C is SIGINT to the group."""

    def __init__(self, copy: Path, env: dict[str, str], log: Path):
        self.copy, self.log = copy, log
        self.web = f"http://127.0.0.1:{env['DEMO_WEB_PORT']}"
        self.ports = [int(env["DEMO_WEB_PORT"]), int(env["DEMO_STRIPE_PORT"])]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                ["make", "run"], cwd=copy, env=env, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        return "\n".join(self.output().splitlines()[-60:])

    def wait_until(self, what: str, condition, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                pytest.fail(f"`make run` exited ({self.process.returncode}) before {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s:\n{self.tail()}")
            time.sleep(0.5)

    def is_ready(self) -> bool:
        """The banner is printed once seeding is done and the Back Office answers; honcho
        starts the web server before the seed, so the login page alone is not enough."""
        return "Ctrl-C stops everything." in self.output() and self.login_page_answers()

    def login_page_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.web}/admin/login/", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def press_ctrl_c(self) -> int:
        if self.process.poll() is not None:
            return self.process.returncode  # already exited; the failure that said so stands
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            pytest.fail(f"`make run` did not stop within {STOP_TIMEOUT} s of Ctrl-C:\n{self.tail()}")

    def processes_left(self) -> list[str]:
        """Every process still running from the copy (its working directory or command line)."""
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cwd = os.readlink(entry / "cwd")
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone meanwhile, or not ours to read
            if cwd.startswith(str(self.copy)) or str(self.copy) in cmdline:
                left.append(f"{entry.name}: {cmdline}")
        return left


class BackOffice:
    """A Back Office user's browser, as far as HTTP goes: cookies, CSRF tokens, form posts."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            assert response.status == 200
            return response.read().decode()

    def post(self, path: str, form: dict, *, csrf_from: str) -> tuple[str, str]:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', csrf_from).group(1)
        data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": token}, doseq=True).encode()
        with self.opener.open(self.base + path, data, timeout=30) as response:
            assert response.status == 200
            return response.url, response.read().decode()

    def log_in(self, username: str, password: str) -> None:
        page = self.get("/admin/login/?next=/admin/")
        url, _ = self.post("/admin/login/?next=/admin/", {"username": username, "password": password, "next": "/admin/"}, csrf_from=page)
        assert url.endswith("/admin/"), f"login failed, landed on {url}"


def item_state(database: Path, item_id: int) -> str:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        return connection.execute("SELECT state FROM refunds_orderitem WHERE id = ?", (item_id,)).fetchone()[0]


def item_history(database: Path, item_id: int) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        return connection.execute(
            "SELECT from_state, to_state, by, at FROM refunds_itemtransition WHERE item_id = ? ORDER BY at, id", (item_id,)
        ).fetchall()


def order_count(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        return connection.execute("SELECT COUNT(*) FROM refunds_order").fetchone()[0]


def test_make_run_from_a_fresh_copy_refunds_an_item_through_the_back_office_and_settles_it(fresh_copy):
    password = "e2e-password"
    env = newcomer_environment(
        DEMO_WEB_PORT=free_port(), DEMO_STRIPE_PORT=free_port(), DEMO_ADMIN_PASSWORD=password,
        DEMO_SETTLEMENT_SECONDS=SETTLEMENT_SECONDS, DEMO_JOBS_EVERY_SECONDS=1,
    )
    database = fresh_copy / "db.sqlite3"

    # --- First run: from nothing to a working Back Office ----------------------------------
    demo = Demo(fresh_copy, env, fresh_copy.parent / "make-run-1.log")
    try:
        demo.wait_until("the banner and the admin login page answering 200", demo.is_ready, START_TIMEOUT)
        assert (fresh_copy / ".venv" / "bin" / "python").exists()
        assert f"Created the Back Office user 'admin' with password '{password}'" in demo.output()

        back_office = BackOffice(demo.web)
        back_office.log_in("admin", password)
        orders_page = back_office.get("/admin/refunds/order/")
        assert all(reference in orders_page for reference in DEMO_REFERENCES)

        items_page = back_office.get("/admin/refunds/orderitem/?q=TOTE-CNV")
        item_id = int(re.search(r'name="_selected_action" value="(\d+)"', items_page).group(1))
        assert item_state(database, item_id) == "payment_captured"
        # As a user: the action shows the confirmation page, "Yes, refund" posts its fingerprint.
        _, confirmation = back_office.post(
            "/admin/refunds/orderitem/", {"action": "refund_items", "_selected_action": [item_id]}, csrf_from=items_page,
        )
        fingerprint = re.search(r'name="confirmed" value="([0-9a-f]+)"', confirmation).group(1)
        back_office.post(
            "/admin/refunds/orderitem/",
            {"action": "refund_items", "_selected_action": [item_id], "post": "yes", "confirmed": fingerprint},
            csrf_from=confirmation,
        )

        demo.wait_until("payment refund succeeded", lambda: item_state(database, item_id) in ("payment_refund_succeeded", "payment_refunded"), STATE_TIMEOUT)
        demo.wait_until("payment refunded", lambda: item_state(database, item_id) == "payment_refunded", STATE_TIMEOUT)
        history = item_history(database, item_id)
        assert [(source, target, by) for source, target, by, _ in history] == [
            ("payment_captured", "payment_refund_pending", "admin"),
            ("payment_refund_pending", "payment_refund_succeeded", "Stripe API response"),
            ("payment_refund_succeeded", "payment_refunded", "settlement timeout"),
        ]
        succeeded_at, refunded_at = (dt.datetime.fromisoformat(at) for *_, at in history[1:])
        assert refunded_at - succeeded_at >= dt.timedelta(seconds=SETTLEMENT_SECONDS)  # not before the period

        health = json.loads(back_office.get("/health/"))
        assert set(health) >= {"Database", "FilesystemBroker", "BeatSchedule"}, health
        assert set(health.values()) == {"OK"}, health
    finally:
        exit_code = demo.press_ctrl_c()
    assert "run_demo: stopped" in demo.output(), demo.tail()
    assert demo.processes_left() == []
    assert not any(port_open("127.0.0.1", port) for port in demo.ports)
    assert exit_code in (0, -signal.SIGINT)  # make dies of the SIGINT it got, after its child stopped

    # --- Second run: same database and emulator store, no duplicate seed, no port clash ------
    demo = Demo(fresh_copy, env, fresh_copy.parent / "make-run-2.log")
    try:
        demo.wait_until("the banner and the admin login page answering 200 again", demo.is_ready, START_TIMEOUT)
        assert f"Demo orders already there: {', '.join(DEMO_REFERENCES)}" in demo.output()
        assert "The Back Office user 'admin' exists; its password is unchanged" in demo.output()
        assert order_count(database) == len(DEMO_REFERENCES)
        assert item_state(database, item_id) == "payment_refunded"
    finally:
        demo.press_ctrl_c()
    assert demo.processes_left() == []
    assert not any(port_open("127.0.0.1", port) for port in demo.ports)


def test_a_busy_port_is_named_and_nothing_is_started(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(BASE_DIR / "scripts" / "run_demo.py")],
            env={**os.environ, "DEMO_WEB_PORT": str(port), "DEMO_STRIPE_PORT": str(free_port())},
            capture_output=True, text=True, timeout=60,
        )

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use; choose another with DEMO_WEB_PORT" in result.stderr
    assert "migrate" not in result.stdout
