"""`manage.py check --deploy`: what production needs beyond Django's own security checks.

The embedded defaults that make a fresh clone run (SQLite, a broker in files, a Stripe
emulator, development host names) are warnings here, so a deploy with one left over fails
`check --deploy --fail-level WARNING` instead of losing refunds quietly.
"""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from .conf import app_settings

DEVELOPMENT_HOSTS = {"localhost", "127.0.0.1", "[::1]", "testserver"}


@register(Tags.security, deploy=True)
def check_production_services(app_configs, **kwargs):
    problems = []
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append(Warning(
            "The database is SQLite.",
            hint="Set DATABASE_URL to PostgreSQL (postgres://user:password@host:5432/name): "
                 "refund requests rely on row locks that SQLite only imitates with one writer.",
            id="refunds.W101",
        ))
    if app_settings.CELERY_BROKER_URL.startswith("filesystem://"):
        problems.append(Warning(
            "The Celery broker is the embedded filesystem transport.",
            hint="Set CELERY_BROKER_URL to Redis (redis://host:6379/0); the filesystem broker "
                 "only works when every process shares one disk.",
            id="refunds.W102",
        ))
    if settings.ALLOWED_HOSTS and set(settings.ALLOWED_HOSTS) <= DEVELOPMENT_HOSTS:
        problems.append(Warning(
            "ALLOWED_HOSTS only lists development host names.",
            hint="Set DJANGO_ALLOWED_HOSTS to the public host name(s), comma-separated.",
            id="refunds.W103",
        ))
    if app_settings.STRIPE_API_BASE:
        problems.append(Warning(
            "Stripe requests go to STRIPE_API_BASE, not to Stripe.",
            hint=f"STRIPE_API_BASE is {app_settings.STRIPE_API_BASE!r}; unset it in production.",
            id="refunds.W104",
        ))
    if not app_settings.REFUND_REQUIRE_2FA:
        problems.append(Warning(
            "Users who may refund log in with a password alone.",
            hint="Set REFUND_REQUIRE_2FA=1 and give each of them a TOTP device "
                 "(manage.py add_totp_device <username>).",
            id="refunds.W105",
        ))
    return problems
