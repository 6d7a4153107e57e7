from django.apps import AppConfig


class RefundsConfig(AppConfig):
    name = "refunds"
    verbose_name = "Refunds"
    # The migrations' primary keys, whatever the host project's DEFAULT_AUTO_FIELD says.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from . import deploy_checks  # noqa: F401  (checks for `check --deploy`)
        from django.db.models.signals import post_migrate

        from .beat import seed_after_migrate

        # A freshly migrated database gets the beat schedule from settings (refunds/beat.py).
        post_migrate.connect(seed_after_migrate, sender=self, dispatch_uid="refunds.seed_beat_schedule")
