"""Configuration fails loudly: Django system checks for the Stripe settings."""

from django.core.checks import Error, Warning

from refunds.checks import check_stripe_settings


def ids(problems):
    return {problem.id for problem in problems}


def test_configured_stripe_settings_pass(settings):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = "sk_test_123", "whsec_123"
    assert check_stripe_settings(None) == []


def test_missing_key_and_secret_are_errors_in_production(settings):
    settings.DEBUG = False
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""

    problems = check_stripe_settings(None)

    assert ids(problems) == {"refunds.E001", "refunds.E003"}
    assert all(isinstance(problem, Error) for problem in problems)
    assert "STRIPE_SECRET_KEY is not set." in [problem.msg for problem in problems]


def test_missing_settings_only_warn_while_developing(settings):
    settings.DEBUG = True
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""

    problems = check_stripe_settings(None)

    assert ids(problems) == {"refunds.W001", "refunds.W003"}
    assert all(isinstance(problem, Warning) for problem in problems)


def test_a_publishable_key_is_refused(settings):
    settings.DEBUG = False
    settings.STRIPE_SECRET_KEY = "pk_live_abc"
    assert ids(check_stripe_settings(None)) == {"refunds.E002"}


def test_a_live_key_sent_to_an_emulator_is_flagged(settings):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE = "sk_live_abc", "http://127.0.0.1:8420"
    assert ids(check_stripe_settings(None)) == {"refunds.W010"}
