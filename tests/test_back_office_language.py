"""Language and time zone: the Back Office in the browser's language (German complete), money
in the active language's style, times in DJANGO_TIME_ZONE."""

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.urls import reverse
from django.utils import translation

from refunds import services
from refunds.money import format_money

from .conftest import page_of

APP = Path(__file__).resolve().parent.parent / "refunds"


def test_makemessages_leaves_no_untranslated_string_in_the_german_catalogue(tmp_path):
    """Every string marked for translation in the app has a German translation, none fuzzy.
    Runs Django's makemessages (GNU gettext's xgettext) on a copy of the app."""
    if shutil.which("xgettext") is None or shutil.which("msgmerge") is None:
        pytest.fail("GNU gettext (xgettext, msgmerge) is needed: apt-get install gettext")
    copy = tmp_path / "refunds"
    shutil.copytree(APP, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # django-admin, not `python -m django`: that would put the app's folder first on sys.path,
    # where refunds/selectors.py shadows the standard library's selectors.
    subprocess.run(
        [str(Path(sys.executable).parent / "django-admin"), "makemessages", "-l", "de", "--no-obsolete"],
        cwd=copy, check=True, capture_output=True, env={
            "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "refunds_project.settings_dev",
            "PYTHONPATH": str(APP.parent),
        },
    )
    with open(copy / "locale/de/LC_MESSAGES/django.po", "rb") as po:
        catalog = read_po(po)

    messages = [message for message in catalog if message.id]
    untranslated = [
        message.id for message in messages
        if not (all(message.string) if isinstance(message.string, tuple) else message.string)
    ]
    fuzzy = [message.id for message in messages if message.fuzzy]
    assert len(messages) > 250  # the Back Office's strings were found at all
    assert untranslated == []
    assert fuzzy == []


def test_money_follows_the_active_language():
    assert format_money(123456, "eur") == "€1,234.56"
    assert format_money(120000, "jpy") == "¥120,000"
    with translation.override("de"):
        assert format_money(123456, "eur") == "€1.234,56"
        assert format_money(12840, "kwd") == "KWD\u00a012,840"


@pytest.mark.django_db
def test_the_back_office_speaks_the_browsers_german(client, back_office_user, paid_order):
    client.force_login(back_office_user)
    first, second, _ = paid_order.items.order_by("pk")
    services.request_refund(items=[first], user=back_office_user)
    german = {"HTTP_ACCEPT_LANGUAGE": "de"}

    items = page_of(client.get(reverse("admin:refunds_orderitem_changelist"), **german))
    confirmation = page_of(client.post(
        reverse("admin:refunds_orderitem_changelist"),
        {"action": "refund_items", "_selected_action": [str(first.pk), str(second.pk)]}, **german,
    ))

    states = {label.text for label in items.find_all(cls="oms-state")}
    assert {"Zahlung erfasst", "Zahlungserstattung ausstehend"} <= states
    assert "Ausgewählte Positionen erstatten" in [option.text for option in items.find_all("option")]
    assert confirmation.find_all("h1")[0].text == "Positionen erstatten"
    assert [el.attrs["value"] for el in confirmation.find_all("input") if el.attrs.get("type") == "submit"] == [
        "Ja, erstatten"
    ]
    assert confirmation.find_all(cls="oms-total")[0].text == "€20,00"
    [blocked] = confirmation.find_all("ul", cls="oms-blocked")
    assert "ihr Status ist „Zahlungserstattung ausstehend“" in blocked.text


@pytest.mark.django_db
def test_times_are_shown_in_the_configured_time_zone_to_the_second(client, back_office_user, paid_order, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    client.force_login(back_office_user)
    item = paid_order.items.order_by("pk").first()
    item.state_changed_at = dt.datetime(2026, 3, 2, 9, 30, 5, tzinfo=dt.UTC)
    type(item).objects.filter(pk=item.pk).update(state_changed_at=item.state_changed_at)

    page = page_of(client.get(reverse("admin:refunds_orderitem_changelist")))

    shown = [cell.text for cell in page.find_all("td", cls="field-state_changed_display")]
    assert "2026-03-02 10:30:05" in shown  # 09:30:05 UTC is 10:30:05 in Berlin (CET)
