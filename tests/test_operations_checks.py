"""Configuration of dual control and alerts fails loudly: a typo must not send a large refund
without approval, or lose every alert."""

import pytest
from django.core.checks import Error, Warning

from refunds.checks import check_operations_settings


def ids(problems):
    return sorted(problem.id for problem in problems)


def test_well_formed_settings_pass(settings):
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 50000, "jpy": 50000}
    settings.REFUND_ALERT_EMAILS = ["ops@shop.example"]
    settings.REFUND_ALERT_WEBHOOK_URL = "https://hooks.slack.com/services/T/B/X"

    assert check_operations_settings(None) == []


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"euro": 50000}, "REFUND_APPROVAL_THRESHOLDS names an unknown currency 'euro'."),
        ({"eur": 0}, "REFUND_APPROVAL_THRESHOLDS['eur'] is 0, not a positive whole amount in minor units."),
        ({"eur": "500.00"}, "REFUND_APPROVAL_THRESHOLDS['eur'] is '500.00', not a positive whole amount in minor units."),
        ("eur=50000", "REFUND_APPROVAL_THRESHOLDS is not a mapping of currency to amount."),
    ],
)
def test_a_malformed_threshold_stops_production(settings, thresholds, message):
    settings.DEBUG = False
    settings.REFUND_APPROVAL_THRESHOLDS = thresholds

    [problem] = check_operations_settings(None)

    assert isinstance(problem, Error) and problem.msg == message


def test_bad_alert_settings_are_reported(settings):
    settings.DEBUG = True
    settings.REFUND_ALERT_EMAILS = ["ops@shop.example", "not an address"]
    settings.REFUND_ALERT_WEBHOOK_URL = "hooks.slack.com/services/T/B/X"

    problems = check_operations_settings(None)

    assert ids(problems) == ["refunds.W022", "refunds.W023"]
    assert all(isinstance(problem, Warning) for problem in problems)


def test_the_environment_format_of_thresholds(settings):
    """REFUND_APPROVAL_THRESHOLDS=eur=50000,USD=20000,jpy=5k as settings.py reads it: the bad one is kept
    as text for the check to name."""
    from refunds.conf import amounts_by_currency

    parsed = amounts_by_currency(" eur=50000, USD=20000,jpy=5k,")

    assert parsed == {"eur": 50000, "usd": 20000, "jpy": "5k"}
    settings.DEBUG = True
    settings.REFUND_APPROVAL_THRESHOLDS = parsed
    assert [problem.id for problem in check_operations_settings(None)] == ["refunds.W021"]
