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
from django.utils.translation import gettext_lazy as _

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
    # --- The Back Office's name: the admin's header and the browser tab's title (Django's
    # own, "Django administration", stays only where a host project set its own names).
    "REFUND_SITE_HEADER": _("Refunds Back Office"),
    "REFUND_SITE_TITLE": _("Refunds Back Office"),
    "REFUND_INDEX_TITLE": _("Orders, refunds and Stripe events"),
    # --- Back Office security
    # Users who may refund or approve must log in with a second factor (django-otp's TOTP).
    "REFUND_REQUIRE_2FA": False,
    # --- Operations (DESIGN.md §9)
    # Currency → minor units at or above which a refund waits for a second user; {} = never.
    "REFUND_APPROVAL_THRESHOLDS": {},
    "REFUND_ATTENTION_PENDING_DAYS": 10,  # pending at Stripe this long: a stuck_pending case
    "REFUND_ATTENTION_APPROVAL_AFTER": timedelta(days=1),  # awaiting approval this long: a case
    "REFUND_ALERT_EMAILS": [],  # addresses a new case is mailed to
    "REFUND_ALERT_WEBHOOK_URL": "",  # a Slack-compatible incoming webhook, optional
    "REFUND_ALERT_TIMEOUT_SECONDS": 10.0,
    "REFUND_BACK_OFFICE_URL": "",  # e.g. "https://oms.shop.example": alerts then link the Back Office
    # --- REST API (refunds/api, DESIGN.md §8)
    # Requests per token, DRF's rate syntax ("600/minute", "20/second"); beyond it 429 with
    # Retry-After. Counted in Django's default cache: set CACHES to a shared cache (Redis) when
    # several processes serve the API, or each counts alone.
    "REFUND_API_THROTTLE_RATE": "600/minute",
    # A larger request body is refused with 413 before it is read.
    "REFUND_API_MAX_BODY_BYTES": 1024 * 1024,
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


def amounts_by_currency(text: str) -> dict[str, int | str]:
    """`"eur=50000,USD=20000"` (as in an environment variable) → `{"eur": 50000, "usd": 20000}`.

    A value that is not a whole number is kept as text, so that the system check names it
    (refunds.E021) instead of the settings failing to import.
    """
    amounts: dict[str, int | str] = {}
    for pair in filter(None, (part.strip() for part in (text or "").split(","))):
        code, _, amount = pair.partition("=")
        amount = amount.strip()
        amounts[code.strip().lower()] = int(amount) if amount.isdigit() else amount
    return amounts


class AppSettings:
    """`app_settings.REFUND_SETTLEMENT_PERIOD`: the project's setting, or the default above."""

    def __getattr__(self, name: str) -> Any:
        try:
            default = DEFAULTS[name]
        except KeyError:
            raise AttributeError(f"{name} is not a setting of the refunds app") from None
        return getattr(settings, name, default)


app_settings = AppSettings()
