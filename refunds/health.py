"""Is the refund system alive? django-health-check's view over the database, the Celery broker,
the Celery workers and the beat schedule.

`GET /health/` (refunds.urls) answers JSON, 200 when every check passes and 500 otherwise, for a
load balancer; `manage.py health_check health --no-http` runs the same checks for cron and
exits 1 when one fails. The database and Redis checks are the library's, and so is the worker
ping (`health_check.contrib.celery.Ping`, wrapped to name no host); the embedded filesystem
broker and the beat schedule are checks of ours, written as its plugins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import JsonResponse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.celery import Ping
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

from .conf import app_settings


@dataclasses.dataclass
class FilesystemBroker(HealthCheck):
    """Kombu's filesystem transport "connects" to anything; what matters is its folder."""

    folder: str = dataclasses.field(default="", repr=False)

    def run(self):
        if not (self.folder and os.path.isdir(self.folder) and os.access(self.folder, os.W_OK)):
            raise ServiceUnavailable("the filesystem broker's folder is missing or not writable")


@dataclasses.dataclass
class BeatSchedule(HealthCheck):
    """Beat is alive when no refund job of the schedule is overdue by more than the grace.

    Beat saves a job's `last_run_at` each time it sends it (CELERY_BEAT_SYNC_EVERY = 1); a job
    it never sent counts from when it was last changed, as django_celery_beat does.
    """

    async def run(self):
        # On the request's own thread and database connection, like the rest of the request.
        await sync_to_async(self.check)()

    def check(self, now: dt.datetime | None = None) -> str:
        """Raise ServiceUnavailable naming each overdue, disabled or missing job; else say how
        long ago each ran."""
        now = now or timezone.now()
        # The refund jobs only: a host project's own jobs are its business.
        names = [name for name, entry in app_settings.CELERY_BEAT_SCHEDULE.items()
                 if str(entry.get("task", "")).startswith("refunds.")]
        try:
            tasks = {task.name: task for task in PeriodicTask.objects.filter(name__in=names).select_related(
                "interval", "crontab", "solar", "clocked"
            )}
        except DatabaseError as error:
            raise ServiceUnavailable("the beat schedule cannot be read: database unavailable") from error
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
            # When the job is due next after its last run, by its own schedule (celery's API).
            next_due = task.schedule.now() + task.schedule.remaining_estimate(last)
            overdue = now - next_due
            if overdue > app_settings.HEALTH_BEAT_GRACE:
                problems.append(f"{name} is overdue by {int(overdue.total_seconds())} s (last run {last.isoformat()})")
            ages.append(f"{name} last run {int((now - last).total_seconds())} s ago" if task.last_run_at else f"{name} not run yet")
        if problems:
            raise ServiceUnavailable("; ".join(problems))
        return "; ".join(ages)


@dataclasses.dataclass
class CeleryWorkers(Ping):
    """At least one Celery worker answers a ping and consumes the default queue: a worker that
    exited (a Redis restart can stop one, README "Workers and a Redis restart") or hangs is
    reported, so the platform or an operator restarts it. Messages name no worker host."""

    def run(self):
        try:
            super().run()
        except ServiceUnavailable as error:
            text = str(error)
            if "response was incorrect" in text:
                raise ServiceUnavailable("a Celery worker answered the ping wrongly") from error
            if text.startswith("No worker for Celery task queue"):
                raise ServiceUnavailable("no Celery worker consumes the refund tasks' queue") from error
            raise ServiceUnavailable("no Celery worker answered a ping") from error
        except Exception as error:  # kombu's OperationalError: the broker itself is gone
            raise ServiceUnavailable("the Celery workers cannot be pinged: broker unreachable") from error


def worker_check() -> tuple[type[HealthCheck], dict] | None:
    """The worker ping, where a broker is configured and workers are expected."""
    if not (app_settings.HEALTH_CHECK_WORKERS and app_settings.CELERY_BROKER_URL):
        return None
    # limit=1: answered as soon as one worker replies, not after the whole timeout.
    return CeleryWorkers, {"timeout": app_settings.HEALTH_WORKER_TIMEOUT, "limit": 1}


def broker_check() -> tuple[type[HealthCheck], dict] | None:
    """The check for the configured Celery broker: the library's Redis check, or ours for the
    embedded filesystem transport."""
    url = app_settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        options = app_settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}
        return FilesystemBroker, {"folder": options.get("data_folder_out", "")}
    if url.startswith(("redis://", "rediss://", "unix://")):
        from health_check.contrib.redis import Redis
        from redis.asyncio import Redis as RedisClient

        return Redis, {"client_factory": functools.partial(RedisClient.from_url, url, socket_connect_timeout=3)}
    return None


class HealthView(HealthCheckView):
    """The checks of this app; JSON whatever the client accepts, so a host project needs no
    `health_check` templates. Checks are named by their class only: the library's names carry
    host names and ports, which a public probe must not learn."""

    def get_checks(self):
        checks = [(Database, {}), broker_check(), worker_check(), (BeatSchedule, {})]
        self.checks = [check for check in checks if check is not None]
        return super().get_checks()

    def render_to_response(self, context, **response_kwargs):
        return self.render_to_response_json(response_kwargs.get("status", 200))

    def render_to_response_json(self, status):
        return JsonResponse(
            {type(result.check).__name__: "OK" if not result.error else str(result.error) for result in self.results},
            status=status,
        )
