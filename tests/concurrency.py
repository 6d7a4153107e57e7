"""Work at the same time as other work: threads on connections of their own, PostgreSQL lock
waits, and worker processes opening the test database.

A race test must fail if the lock it guards were removed, so it does not rely on luck or sleeps:
`run_overlapping` holds the first caller inside its transaction, after it took its locks,
starts the second and releases the first only once PostgreSQL shows the second waiting for a
lock (`pg_stat_activity`). Without the lock the second never waits and the test fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from django.db import connection, connections

TIMEOUT = 30  # seconds any one step may take before the test fails instead of hanging


class Outcome:
    """A callable running in a thread of its own: what it returned, or what it raised."""

    def __init__(self, target: Callable[[], Any], *, barrier: threading.Barrier | None = None):
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target, barrier), daemon=True)
        self.thread.start()

    def _run(self, target, barrier):
        try:
            if barrier is not None:
                barrier.wait(TIMEOUT)
            self.value = target()
        except BaseException as error:  # noqa: BLE001 — the test inspects it
            self.error = error
        finally:
            connections.close_all()  # this thread's own connections

    def join(self, timeout: float = 2 * TIMEOUT) -> Outcome:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout} s"
        return self

    @property
    def returned_or_raised(self) -> Any:
        return self.error if self.error is not None else self.value

    def result(self) -> Any:
        """What the target returned; re-raises what it raised."""
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def in_thread(target: Callable[[], Any]) -> Outcome:
    return Outcome(target)


def run_in_threads(*targets: Callable[[], Any]) -> list[Any]:
    """Start every target at the same moment; return what each returned or raised.

    A start at the same moment is no proof that the two overlapped: where a lock is what the
    test guards, use `run_overlapping`.
    """
    barrier = threading.Barrier(len(targets))
    outcomes = [Outcome(target, barrier=barrier) for target in targets]
    return [outcome.join().returned_or_raised for outcome in outcomes]


class HeldCall:
    """Stands in for `real`: once armed, the first call waits (before running `real`) until released.

    Patch it over a function the code under test calls after it took its locks, so the first
    caller sits inside its transaction, locks held, for as long as the test wants.
    """

    def __init__(self, real: Callable[..., Any]):
        self.real = real
        self.calls: list[tuple[tuple, dict]] = []
        self.entered, self.released = threading.Event(), threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def arm(self) -> None:
        self._armed = True

    def release(self) -> None:
        self.released.set()

    def __call__(self, *args, **kwargs):
        if self._armed:
            with self._lock:
                self.calls.append((args, kwargs))
                first = len(self.calls) == 1
            if first:
                self.entered.set()
                assert self.released.wait(TIMEOUT), "the held call was never released"
        return self.real(*args, **kwargs)


def lock_waiters() -> int:
    """Connections to the test database waiting for a lock right now (PostgreSQL only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_for_a_lock_waiter(what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while lock_waiters() < 1:
        assert time.monotonic() < deadline, f"{what} never waited for a lock"
        time.sleep(0.01)


def run_overlapping(first: Callable[[], Any], second: Callable[[], Any], *, held: HeldCall) -> list[Any]:
    """Run `first` until it is inside `held`, then `second`; release `first` only once
    PostgreSQL shows a connection waiting for a lock. Returns what each returned or raised."""
    held.arm()
    outcomes = [Outcome(first)]
    try:
        assert held.entered.wait(TIMEOUT), "the first call never reached the held point"
        outcomes.append(Outcome(second))
        wait_for_a_lock_waiter("the second call")
    finally:
        held.release()
        for outcome in outcomes:
            outcome.join()
    return [outcome.returned_or_raised for outcome in outcomes]


def database_url_for_subprocess() -> str:
    """The test database (SQLite file or test_<name> on PostgreSQL) as a URL another process opens."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    password = f":{quote(params['PASSWORD'], safe='')}" if params.get("PASSWORD") else ""
    host, port = params["HOST"] or "127.0.0.1", params["PORT"] or 5432
    return f"postgres://{params['USER']}{password}@{host}:{port}/{params['NAME']}"
