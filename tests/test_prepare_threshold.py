"""DATABASE_PREPARE_THRESHOLD (refunds_project/settings.py): on PostgreSQL psycopg prepares a
statement run 5 times by default, "off" leaves prepared statements out (transaction-mode
poolers), a number sets the threshold; SQLite gets none. The settings are read in a fresh
interpreter, since they are read from the environment once, at import."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from .conftest import skip_unless_postgres

BASE_DIR = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgres://oms:secret@db.internal.example:5432/oms"  # never connected to
READ_DATABASE = (
    "import json, refunds_project.settings as s; d = s.DATABASES['default'];"
    "print(json.dumps({'ENGINE': d['ENGINE'], 'OPTIONS': d.get('OPTIONS', {})}))"
)


def settings_run(**variables: str) -> subprocess.CompletedProcess:
    """Import the production settings with only `variables` (and a secret key) set."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_"))}
    env.update(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), **variables)
    return subprocess.run(
        [sys.executable, "-c", READ_DATABASE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def database_with(**variables: str) -> dict:
    result = settings_run(**variables)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("url", [POSTGRES_URL, POSTGRES_URL.replace("postgres://", "postgresql://", 1)])
def test_on_postgresql_statements_are_prepared_after_5_runs_by_default(url):
    database = database_with(DATABASE_URL=url)

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["OPTIONS"] == {"prepare_threshold": 5}


@pytest.mark.parametrize("value", ["off", "OFF", " off ", "none", ""])
def test_off_leaves_prepared_statements_out(value):
    database = database_with(DATABASE_URL=POSTGRES_URL, DATABASE_PREPARE_THRESHOLD=value)

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert "prepare_threshold" not in database["OPTIONS"]


@pytest.mark.parametrize(("value", "threshold"), [("1", 1), ("12", 12), (" 20 ", 20)])
def test_a_number_sets_the_threshold(value, threshold):
    database = database_with(DATABASE_URL=POSTGRES_URL, DATABASE_PREPARE_THRESHOLD=value)

    assert database["OPTIONS"]["prepare_threshold"] == threshold


def test_the_threshold_joins_options_given_in_the_url():
    database = database_with(DATABASE_URL=f"{POSTGRES_URL}?sslmode=require", DATABASE_PREPARE_THRESHOLD="7")

    assert database["OPTIONS"] == {"sslmode": "require", "prepare_threshold": 7}


def test_a_threshold_that_is_no_number_stops_startup():
    result = settings_run(DATABASE_URL=POSTGRES_URL, DATABASE_PREPARE_THRESHOLD="five")

    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_PREPARE_THRESHOLD must be a whole number" in result.stderr
    assert "'five'" in result.stderr


@pytest.mark.parametrize(
    "variables",
    [{}, {"DATABASE_URL": "sqlite:////tmp/oms.sqlite3"}, {"DATABASE_PREPARE_THRESHOLD": "12"}],
    ids=["default-database", "sqlite-url", "sqlite-with-a-threshold"],
)
def test_sqlite_gets_no_prepare_threshold(variables):
    database = database_with(**variables)

    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert "prepare_threshold" not in database["OPTIONS"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_test_databases_connection_has_the_threshold_the_settings_give():
    skip_unless_postgres()
    connection.ensure_connection()
    configured = connection.settings_dict.get("OPTIONS", {}).get("prepare_threshold")

    assert connection.connection.prepare_threshold == configured
    if os.environ.get("DATABASE_PREPARE_THRESHOLD") is None:
        assert configured == 5
