"""System checks: a missing Stripe setting fails loudly at startup, not at the first refund.

In production (DEBUG off) a missing or malformed setting is an Error that stops every
management command and the server; in development it is a warning printed by each command,
so `migrate` still works on a fresh clone before Stripe is configured.
"""

from django.conf import settings
from django.core.checks import Error, Warning, register

from .conf import app_settings


@register("refunds")
def check_stripe_settings(app_configs, **kwargs):
    Problem = Warning if settings.DEBUG else Error
    problems = []
    key = app_settings.STRIPE_SECRET_KEY
    if not key:
        problems.append(Problem(
            "STRIPE_SECRET_KEY is not set.",
            hint="Set the STRIPE_SECRET_KEY environment variable to your Stripe secret key "
                 "(sk_test_… or sk_live_…, or a restricted rk_… key).",
            id=f"refunds.{Problem.__name__[0]}001",
        ))
    elif not key.startswith(("sk_", "rk_")):
        problems.append(Problem(
            "STRIPE_SECRET_KEY does not look like a Stripe secret key.",
            hint="Secret keys start with sk_test_, sk_live_, rk_test_ or rk_live_; publishable keys (pk_…) cannot refund.",
            id=f"refunds.{Problem.__name__[0]}002",
        ))
    if not app_settings.STRIPE_WEBHOOK_SECRET:
        problems.append(Problem(
            "STRIPE_WEBHOOK_SECRET is not set.",
            hint="Set STRIPE_WEBHOOK_SECRET to the signing secret (whsec_…) of the webhook "
                 "endpoint that points at /stripe/webhook/.",
            id=f"refunds.{Problem.__name__[0]}003",
        ))
    if key.startswith(("sk_live_", "rk_live_")) and app_settings.STRIPE_API_BASE:
        problems.append(Warning(
            "A live Stripe key is sent to STRIPE_API_BASE instead of Stripe.",
            hint=f"STRIPE_API_BASE is {app_settings.STRIPE_API_BASE!r}; unset it in production.",
            id="refunds.W010",
        ))
    return problems


@register("refunds")
def check_second_factor(app_configs, **kwargs):
    """REFUND_REQUIRE_2FA needs django-otp's middleware, or nobody who may refund could."""
    if not app_settings.REFUND_REQUIRE_2FA:
        return []
    if "django_otp.middleware.OTPMiddleware" not in settings.MIDDLEWARE:
        return [Error(
            "REFUND_REQUIRE_2FA is on, but django-otp's OTPMiddleware is not in MIDDLEWARE.",
            hint='Add "django_otp", "django_otp.plugins.otp_totp" to INSTALLED_APPS and '
                 '"django_otp.middleware.OTPMiddleware" after AuthenticationMiddleware (README, '
                 '"Two-factor login"); without it no user counts as verified and nobody may refund.',
            id="refunds.E004",
        )]
    return []


@register("refunds")
def check_operations_settings(app_configs, **kwargs):
    """Dual control and alerts (DESIGN.md §9): a typo here would silently send a large refund
    without approval, or lose every alert."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    from .money import is_known_currency

    Problem = Warning if settings.DEBUG else Error
    problems = []
    thresholds = app_settings.REFUND_APPROVAL_THRESHOLDS
    if not isinstance(thresholds, dict):
        problems.append(Problem(
            "REFUND_APPROVAL_THRESHOLDS is not a mapping of currency to amount.",
            hint='Set it like REFUND_APPROVAL_THRESHOLDS=eur=50000,usd=50000 (amounts in minor units).',
            id=f"refunds.{Problem.__name__[0]}020",
        ))
    else:
        for currency, amount in thresholds.items():
            if not is_known_currency(str(currency).lower()):
                problems.append(Problem(
                    f"REFUND_APPROVAL_THRESHOLDS names an unknown currency {currency!r}.",
                    hint="Use Stripe's lower-case ISO codes (eur, usd, jpy, …).",
                    id=f"refunds.{Problem.__name__[0]}021",
                ))
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                problems.append(Problem(
                    f"REFUND_APPROVAL_THRESHOLDS[{currency!r}] is {amount!r}, not a positive whole amount in minor units.",
                    hint="50000 means €500.00 for eur and ¥50,000 for jpy.",
                    id=f"refunds.{Problem.__name__[0]}021",
                ))
    for address in app_settings.REFUND_ALERT_EMAILS or []:
        try:
            validate_email(address)
        except ValidationError:
            problems.append(Problem(
                f"REFUND_ALERT_EMAILS holds {address!r}, which is not an e-mail address.",
                hint="A comma-separated list: ops@shop.example,finance@shop.example",
                id=f"refunds.{Problem.__name__[0]}022",
            ))
    url = app_settings.REFUND_ALERT_WEBHOOK_URL
    if url and not url.startswith(("https://", "http://")):
        problems.append(Problem(
            "REFUND_ALERT_WEBHOOK_URL is not an http(s) URL.",
            hint="A Slack-compatible incoming webhook, e.g. https://hooks.slack.com/services/…",
            id=f"refunds.{Problem.__name__[0]}023",
        ))
    return problems


API_APPS = ("rest_framework", "drf_spectacular", "drf_spectacular_sidecar")


@register("refunds")
def check_api_apps(app_configs, **kwargs):
    """The REST API's docs page needs drf-spectacular's templates and the sidecar's static files."""
    from django.apps import apps

    missing = [name for name in API_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    return [Warning(
        f"The REST API under /api/v1/ needs {', '.join(missing)} in INSTALLED_APPS.",
        hint='Add "rest_framework", "drf_spectacular", "drf_spectacular_sidecar" before "refunds" (README, '
             '"Use it in your own Django project"); without them /api/v1/docs/ cannot render.',
        id="refunds.W030",
    )]
