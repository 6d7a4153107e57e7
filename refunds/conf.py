"""The settings this app reads, each with its default, in one place.

A host project sets only what it changes (README, "Use it in your own Django project"); the two
Stripe secrets have no usable default, and `refunds/checks.py` reports them missing. Values are
read from `django.conf.settings` at each use, not at import, so `override_settings` and a
settings change in a test take effect.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab
from django.conf import settings

# The refund jobs (refunds.tasks), every 15 minutes. `migrate` writes them to django_celery_beat's
# tables (refunds/beat.py) unless the host's own CELERY_BEAT_SCHEDULE says otherwise.
REFUND_JOBS = {
    "finalize-refunds": {"task": "refunds.tasks.finalize_refunds", "schedule": crontab(minute="*/15")},
    "reconcile-refunds": {"task": "refunds.tasks.reconcile_refunds", "schedule": crontab(minute="*/15")},
}

DEFAULTS: dict[str, Any] = {
    # --- Stripe
    "STRIPE_SECRET_KEY": "",
    "STRIPE_WEBHOOK_SECRET": "",
    "STRIPE_API_BASE": "",  # an emulator's base URL; empty for Stripe itself
    # Pinned so a Stripe account upgrade cannot change the shape of what we read.
    "STRIPE_API_VERSION": "2026-10-28.endive",
    "STRIPE_TIMEOUT_SECONDS": 30.0,
    "STRIPE_WEBHOOK_TOLERANCE_SECONDS": 300,
    "STRIPE_SEND_REFUND_REASON": True,
    # --- The refund process
    "REFUND_SETTLEMENT_PERIOD": timedelta(days=7),
    "REFUND_SETTLEMENT_BATCH_SIZE": 1000,
    "REFUND_RECONCILE_QUEUED_AFTER": timedelta(minutes=5),
    "REFUND_RECONCILE_PENDING_AFTER": timedelta(minutes=60),
    "REFUND_RECONCILE_LIMIT": 100,
    # --- Back Office security
    # Users who may refund or approve must log in with a second factor (django-otp's TOTP).
    "REFUND_REQUIRE_2FA": False,
    # --- Celery and health (the host's Celery settings, read with the CELERY_ namespace)
    "CELERY_BEAT_SCHEDULE": REFUND_JOBS,
    "CELERY_BROKER_URL": "",  # unknown: /health/ then checks no broker
    "CELERY_BROKER_TRANSPORT_OPTIONS": {},
    "HEALTH_BEAT_GRACE": timedelta(seconds=300),
    # /health/ pings the Celery workers (a worker that is gone answers 500); off where no
    # worker is expected, such as a test run with eager tasks.
    "HEALTH_CHECK_WORKERS": True,
    "HEALTH_WORKER_TIMEOUT": timedelta(seconds=2),
}


class AppSettings:
    """`app_settings.REFUND_SETTLEMENT_PERIOD`: the project's setting, or the default above."""

    def __getattr__(self, name: str) -> Any:
        try:
            default = DEFAULTS[name]
        except KeyError:
            raise AttributeError(f"{name} is not a setting of the refunds app") from None
        return getattr(settings, name, default)


app_settings = AppSettings()
