"""Health: the database, the broker and the beat schedule, as `/health/` and `manage.py health`."""

import datetime as dt
import json
import re

import pytest
from django.core.management import call_command
from django.db import OperationalError, connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from refunds import health

from .conftest import port_open, service_missing

pytestmark = pytest.mark.django_db


@pytest.fixture
def beat_ran(settings):
    """Beat sent every refund job a minute ago."""
    names = list(settings.CELERY_BEAT_SCHEDULE)
    assert PeriodicTask.objects.filter(name__in=names).count() == len(names)  # seeded by migrate
    PeriodicTask.objects.filter(name__in=names).update(last_run_at=timezone.now() - dt.timedelta(minutes=1))
    return names


@pytest.fixture
def filesystem_broker(monkeypatch, tmp_path):
    """The app's broker is the embedded one, in a folder of this test's own."""
    folder = tmp_path / "broker"
    folder.mkdir()
    real_check_broker = health.check_broker
    monkeypatch.setattr(health, "check_broker", lambda: real_check_broker(
        url="filesystem://", transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder)}
    ))
    return folder


def run_health_command(capsys) -> tuple[int, dict]:
    try:
        call_command("health")
        code = 0
    except SystemExit as exited:
        code = exited.code
    return code, json.loads(capsys.readouterr().out)


def test_all_alive_answers_200_and_the_command_exits_0(client, beat_ran, filesystem_broker, capsys):
    response = client.get("/health/")

    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ok"
    assert {name: check["ok"] for name, check in report["checks"].items()} == {"database": True, "broker": True, "beat": True}
    assert run_health_command(capsys)[0] == 0


def test_a_beat_that_stopped_sending_the_jobs_answers_503_and_the_command_exits_1(
    client, settings, beat_ran, filesystem_broker, capsys
):
    # The refund jobs run every 15 minutes; none was sent for two hours.
    PeriodicTask.objects.filter(name="finalize-refunds").update(last_run_at=timezone.now() - dt.timedelta(hours=2))

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["checks"]["beat"] == {"ok": False}
    code, report = run_health_command(capsys)
    assert code == 1 and report["status"] == "error"
    assert re.search(r"finalize-refunds is overdue by \d+ s", report["checks"]["beat"]["detail"])
    assert report["checks"]["database"]["ok"] and report["checks"]["broker"]["ok"]


def test_a_job_just_short_of_its_grace_period_is_still_alive(settings, beat_ran):
    settings.CELERY_BEAT_SCHEDULE = {"finalize-refunds": settings.CELERY_BEAT_SCHEDULE["finalize-refunds"]}
    task = PeriodicTask.objects.get(name="finalize-refunds")
    task.last_run_at = timezone.now() - dt.timedelta(minutes=30)
    task.save()
    next_due = health._next_due(task.schedule, task.last_run_at)

    assert health.check_beat(now=next_due + settings.HEALTH_BEAT_GRACE - dt.timedelta(seconds=1)).ok
    assert not health.check_beat(now=next_due + settings.HEALTH_BEAT_GRACE + dt.timedelta(seconds=1)).ok


def test_a_disabled_or_missing_refund_job_is_reported(beat_ran):
    PeriodicTask.objects.filter(name="finalize-refunds").update(enabled=False)
    PeriodicTask.objects.filter(name="reconcile-refunds").delete()

    check = health.check_beat()

    assert not check.ok
    assert "finalize-refunds is disabled" in check.detail
    assert "reconcile-refunds is not in the beat schedule" in check.detail


def test_a_missing_broker_folder_is_reported(filesystem_broker):
    filesystem_broker.rmdir()

    check = health.check_broker()

    assert not check.ok and "missing or not writable" in check.detail


def test_an_unreachable_redis_broker_is_reported():
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    check = health.check_broker(url="redis://127.0.0.1:9/0")

    assert not check.ok


@pytest.mark.redis
def test_a_live_redis_broker_is_alive():
    if not port_open("127.0.0.1", 6379):
        service_missing("Redis at 127.0.0.1:6379")
    check = health.check_broker(url="redis://127.0.0.1:6379/15")

    assert check.ok, check.detail


def test_a_database_error_is_reported_and_beat_is_not_looked_at(monkeypatch, filesystem_broker):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", broken_cursor)

    report = health.health_report()

    assert report["status"] == "error"
    assert report["checks"]["database"] == {"ok": False, "detail": "OperationalError: connection refused"}
    assert report["checks"]["beat"] == {"ok": False, "detail": "database unavailable"}


def test_without_debug_the_endpoint_says_which_part_is_down_but_not_why(client, settings, filesystem_broker):
    settings.DEBUG = False
    filesystem_broker.rmdir()

    response = client.get("/health/")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False}
    assert str(filesystem_broker) not in response.content.decode()

