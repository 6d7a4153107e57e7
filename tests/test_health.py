"""Health: the database, the broker and the beat schedule, as `/health/` and
`manage.py health_check health --no-http` (django-health-check with our broker and beat checks)."""

import asyncio
import datetime as dt
import os
import subprocess
import sys

import pytest
import time_machine
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from health_check.exceptions import ServiceUnavailable

from refunds.health import BeatSchedule

from .conftest import port_open, service_missing

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def beat_ran(settings, db):
    """Beat sent every refund job a minute ago."""
    names = list(settings.CELERY_BEAT_SCHEDULE)
    assert PeriodicTask.objects.filter(name__in=names).count() == len(names)  # seeded by migrate
    PeriodicTask.objects.filter(name__in=names).update(last_run_at=timezone.now() - dt.timedelta(minutes=1))
    return names


@pytest.fixture
def filesystem_broker(settings, tmp_path):
    """The app's broker is the embedded one, in a folder of this test's own."""
    folder = tmp_path / "broker"
    folder.mkdir()
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    return folder


def checks_of(response) -> dict[str, str]:
    """{"Database": "OK", "FilesystemBroker": "Unavailable: …", …}"""
    return response.json()


def run_health_command(capsys) -> tuple[int, str]:
    try:
        call_command("health_check", "health", "--no-http")
        code = 0
    except SystemExit as exited:
        code = exited.code
    finally:
        # The command runs its checks under asyncio; BeatSchedule's query runs on asgiref's
        # shared thread, whose connection would outlive the test (a process of its own, as cron
        # runs it, ends with it). Left open, it keeps the test database from being dropped.
        asyncio.run(sync_to_async(connections.close_all)())
    return code, capsys.readouterr().out


def test_all_alive_answers_200(client, beat_ran, filesystem_broker):
    response = client.get("/health/")

    assert response.status_code == 200
    assert checks_of(response) == {"Database": "OK", "FilesystemBroker": "OK", "BeatSchedule": "OK"}


def test_html_clients_get_json_too(client, beat_ran, filesystem_broker):
    response = client.get("/health/", HTTP_ACCEPT="text/html")

    assert response["Content-Type"] == "application/json"
    assert checks_of(response)["Database"] == "OK"


def test_a_beat_that_stopped_sending_the_jobs_answers_500(client, beat_ran, filesystem_broker):
    # The refund jobs run every 15 minutes; none was sent for two hours.
    PeriodicTask.objects.filter(name="finalize-refunds").update(last_run_at=timezone.now() - dt.timedelta(hours=2))

    response = client.get("/health/")

    assert response.status_code == 500
    checks = checks_of(response)
    assert checks["BeatSchedule"].startswith("Unavailable: finalize-refunds is overdue by ")
    assert checks["Database"] == "OK" and checks["FilesystemBroker"] == "OK"


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_0_when_alive_and_1_when_beat_is_overdue(beat_ran, filesystem_broker, capsys):
    code, out = run_health_command(capsys)
    assert code == 0, out
    assert "BeatSchedule(): OK" in out

    PeriodicTask.objects.filter(name="reconcile-refunds").update(last_run_at=timezone.now() - dt.timedelta(hours=2))
    code, out = run_health_command(capsys)
    assert code == 1
    assert "reconcile-refunds is overdue by" in out


@time_machine.travel(dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.timezone.utc), tick=False)
def test_a_job_is_overdue_only_past_its_next_run_plus_the_grace(settings, beat_ran):
    # Every 15 minutes (*/15): last run at 11:50 → next run due at 12:00; grace 5 minutes.
    settings.HEALTH_BEAT_GRACE = dt.timedelta(minutes=5)
    settings.CELERY_BEAT_SCHEDULE = {"finalize-refunds": settings.CELERY_BEAT_SCHEDULE["finalize-refunds"]}
    PeriodicTask.objects.filter(name="finalize-refunds").update(
        last_run_at=dt.datetime(2026, 11, 27, 11, 50, 0, tzinfo=dt.timezone.utc)
    )
    check = BeatSchedule()

    assert "finalize-refunds last run 899 s ago" in check.check(now=timezone.now() + dt.timedelta(minutes=4, seconds=59))
    with pytest.raises(ServiceUnavailable, match=r"finalize-refunds is overdue by 301 s"):
        check.check(now=timezone.now() + dt.timedelta(minutes=5, seconds=1))


def test_a_disabled_or_missing_refund_job_is_reported(beat_ran):
    PeriodicTask.objects.filter(name="finalize-refunds").update(enabled=False)
    PeriodicTask.objects.filter(name="reconcile-refunds").delete()

    with pytest.raises(ServiceUnavailable) as raised:
        BeatSchedule().check()

    assert "finalize-refunds is disabled" in raised.value.message
    assert "reconcile-refunds is not in the beat schedule" in raised.value.message


def test_a_missing_broker_folder_is_reported_without_naming_the_folder(client, beat_ran, filesystem_broker):
    filesystem_broker.rmdir()

    response = client.get("/health/")

    assert response.status_code == 500
    assert checks_of(response)["FilesystemBroker"] == "Unavailable: the filesystem broker's folder is missing or not writable"
    assert str(filesystem_broker) not in response.content.decode()


def test_an_unreachable_redis_broker_is_reported(client, settings, beat_ran):
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"

    response = client.get("/health/")

    assert response.status_code == 500
    assert checks_of(response)["Redis"].startswith("Unavailable: Unable to connect to Redis")


@pytest.mark.redis
def test_a_live_redis_broker_is_alive(client, settings, beat_ran):
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis at 127.0.0.1:6379")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"

    response = client.get("/health/")

    assert response.status_code == 200, response.content
    assert checks_of(response)["Redis"] == "OK"


def test_an_unreachable_database_is_reported_by_the_command(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "refunds_project.settings_dev",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:9/nothing",  # nothing listens on port 9
        "REFUNDS_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "health_check", "health", "--no-http"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Database(alias='default'): Unavailable" in result.stdout
    assert "BeatSchedule(): Unavailable: the beat schedule cannot be read: database unavailable" in result.stdout
