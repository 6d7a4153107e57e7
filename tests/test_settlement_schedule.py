"""The beat schedule: a fresh database has both refund jobs, listed and editable in the admin."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from refunds.beat import SeededDatabaseScheduler, seed_periodic_tasks
from refunds_project.celery import app as celery_app

pytestmark = pytest.mark.django_db

JOBS = {"finalize-refunds": "refunds.tasks.finalize_refunds", "reconcile-refunds": "refunds.tasks.reconcile_refunds"}


def test_a_freshly_migrated_database_runs_both_jobs_every_15_minutes():
    tasks = PeriodicTask.objects.filter(name__in=JOBS).select_related("crontab")

    assert {task.name: task.task for task in tasks} == JOBS
    assert {(task.enabled, task.crontab.minute, task.crontab.hour, task.interval_id) for task in tasks} == {
        (True, "*/15", "*", None)
    }


def test_the_jobs_are_listed_and_editable_in_the_admin(admin_client):
    changelist = admin_client.get(reverse("admin:django_celery_beat_periodictask_changelist"))
    task = PeriodicTask.objects.get(name="finalize-refunds")
    change = admin_client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]))

    assert changelist.status_code == 200 and change.status_code == 200
    assert all(name in changelist.text for name in JOBS)
    assert "refunds.tasks.finalize_refunds" in change.text


def test_a_schedule_edited_in_the_admin_survives_a_beat_start(monkeypatch):
    # Beat closes stale connections between ticks; here that would close the test's transaction.
    monkeypatch.setattr("django_celery_beat.schedulers.close_old_connections", lambda: None)
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.filter(name="finalize-refunds").update(crontab=None, interval=every_5_minutes)
    PeriodicTask.objects.filter(name="reconcile-refunds").update(enabled=False)

    scheduler = SeededDatabaseScheduler(app=celery_app)

    finalize = PeriodicTask.objects.get(name="finalize-refunds")
    assert (finalize.interval_id, finalize.crontab_id) == (every_5_minutes.pk, None)
    assert not PeriodicTask.objects.get(name="reconcile-refunds").enabled
    assert "finalize-refunds" in scheduler.schedule and "reconcile-refunds" not in scheduler.schedule


def test_a_job_deleted_from_the_database_comes_back_at_the_next_migrate():
    PeriodicTask.objects.filter(name="reconcile-refunds").delete()
    out = io.StringIO()

    call_command("migrate", verbosity=1, stdout=out)

    assert PeriodicTask.objects.get(name="reconcile-refunds").task == "refunds.tasks.reconcile_refunds"
    assert "Added to the beat schedule: reconcile-refunds" in out.getvalue()


def test_seeding_adds_only_missing_jobs():
    assert seed_periodic_tasks() == []
    PeriodicTask.objects.filter(name="finalize-refunds").delete()

    assert seed_periodic_tasks() == ["finalize-refunds"]
    assert PeriodicTask.objects.filter(name__in=JOBS).count() == 2
