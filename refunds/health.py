"""Is the refund system alive? The database, the broker and the beat schedule.

For a load balancer (`GET /health/`, 200 or 503) and a cron check (`manage.py health`, exit
status 0 or 1). Each check answers on its own, so one broken part does not hide the others.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_celery_beat.models import PeriodicTask

BROKER_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:  # any driver error means "down", whatever its class
        return Check(False, f"{error.__class__.__name__}: {error}")
    return Check(True, connections["default"].vendor)


def check_broker(*, url: str | None = None, transport_options: dict | None = None) -> Check:
    """The Celery broker (the app's own, unless `url` is given) accepts a connection."""
    from refunds_project.celery import app

    url = app.conf.broker_url if url is None else url
    options = app.conf.broker_transport_options if transport_options is None else transport_options
    if (url or "").startswith("filesystem://"):
        # Kombu's filesystem transport "connects" to anything; what matters is the folder.
        folder = (options or {}).get("data_folder_out", "")
        if not (folder and os.path.isdir(folder) and os.access(folder, os.W_OK)):
            return Check(False, f"filesystem broker folder {folder!r} is missing or not writable")
        return Check(True, "filesystem")
    try:
        with app.connection_for_write(url) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_SECONDS)
            connection.default_channel  # a Redis channel PINGs the server
            transport = connection.transport_cls
    except Exception as error:  # Kombu raises the transport's own errors
        return Check(False, f"{error.__class__.__name__}: {error}")
    return Check(True, str(transport))


def check_beat(*, now: dt.datetime | None = None) -> Check:
    """Beat is alive when no refund job of the schedule is overdue by more than the grace.

    Beat saves a job's `last_run_at` each time it sends it (CELERY_BEAT_SYNC_EVERY = 1); a job
    it never sent counts from when it was last changed, as django_celery_beat does.
    """
    now = now or timezone.now()
    names = list(settings.CELERY_BEAT_SCHEDULE)
    tasks = {task.name: task for task in PeriodicTask.objects.filter(name__in=names).select_related(
        "interval", "crontab", "solar", "clocked"
    )}
    problems, ages = [], []
    for name in names:
        task = tasks.get(name)
        if task is None:
            problems.append(f"{name} is not in the beat schedule (run migrate)")
            continue
        if not task.enabled:
            problems.append(f"{name} is disabled")
            continue
        last = task.last_run_at or task.date_changed
        overdue = now - _next_due(task.schedule, last)
        if overdue > settings.HEALTH_BEAT_GRACE:
            problems.append(f"{name} is overdue by {_seconds(overdue)} s (last run {last.isoformat()})")
        ages.append(f"{name} last run {_seconds(now - last)} s ago" if task.last_run_at else f"{name} not run yet")
    if problems:
        return Check(False, "; ".join(problems))
    return Check(True, "; ".join(ages))


def _next_due(schedule, last: dt.datetime) -> dt.datetime:
    """When the job is due next after a run at `last`, by its own schedule."""
    if hasattr(schedule, "remaining_delta"):  # crontab
        start, ends_in, _ = schedule.remaining_delta(last)
        return start + ends_in
    if hasattr(schedule, "run_every"):  # interval
        return last + schedule.run_every
    return schedule.now() + schedule.remaining_estimate(last)


def _seconds(delta: dt.timedelta) -> int:
    return int(delta.total_seconds())


def health_report() -> dict:
    checks = {"database": check_database(), "broker": check_broker()}
    # The beat schedule lives in the database: without it there is nothing to look at.
    checks["beat"] = check_beat() if checks["database"].ok else Check(False, "database unavailable")
    return {
        "status": "ok" if all(check.ok for check in checks.values()) else "error",
        "checks": {name: asdict(check) for name, check in checks.items()},
    }


@never_cache
@require_GET
def health_view(request):
    report = health_report()
    if not settings.DEBUG:
        # Error texts can name hosts and users: a public probe only learns which part is down.
        report["checks"] = {name: {"ok": check["ok"]} for name, check in report["checks"].items()}
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
