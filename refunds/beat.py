"""The beat schedule: settings seed it, the admin owns it.

`settings.CELERY_BEAT_SCHEDULE` defines the refund jobs. After every `migrate` the missing ones
are written to django_celery_beat's tables, so a fresh database lists them under "Periodic
tasks" in the admin before beat ever ran. Existing rows are left alone: an interval changed or
a job disabled in the admin stays so. django_celery_beat's own scheduler writes the settings
over such edits at every start (`update_or_create`), hence `SeededDatabaseScheduler`.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import DEFAULT_DB_ALIAS, connections
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from .conf import app_settings

SEEDED_DESCRIPTION = "Defined in settings.CELERY_BEAT_SCHEDULE; edits made here are kept."


def seed_periodic_tasks(schedule: Mapping[str, dict] | None = None, *, app=None) -> list[str]:
    """Create a `PeriodicTask` for every entry of the schedule that has none; return their names."""
    schedule = app_settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule
    created = []
    for name, entry in schedule.items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        # ModelEntry.from_entry is django_celery_beat's public way to write a settings entry
        # (crontab/interval rows, args, options), the translation beat itself applies.
        ModelEntry.from_entry(name, app=app, **entry)
        PeriodicTask.objects.filter(name=name).update(description=SEEDED_DESCRIPTION)
        created.append(name)
    return created


def seed_after_migrate(sender, *, using=DEFAULT_DB_ALIAS, verbosity=1, stdout=None, **kwargs):
    """post_migrate receiver (connected in RefundsConfig.ready)."""
    if using != DEFAULT_DB_ALIAS:
        return
    if PeriodicTask._meta.db_table not in connections[using].introspection.table_names():
        return  # `migrate refunds` before django_celery_beat's own migrations ran
    created = seed_periodic_tasks()
    if created and verbosity >= 1 and stdout is not None:
        stdout.write(f"  Added to the beat schedule: {', '.join(created)}\n")


class SeededDatabaseScheduler(DatabaseScheduler):
    """django_celery_beat's DatabaseScheduler that adds missing settings entries and never
    overwrites the ones in the database."""

    def setup_schedule(self):
        # Before the first read of the schedule, so new rows are part of it.
        seed_periodic_tasks(self.app.conf.beat_schedule, app=self.app)
        self.install_default_entries(self.schedule)
