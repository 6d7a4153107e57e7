"""Production settings: `manage.py check --deploy` is clean with the environment the README's
"Production" section sets, and loud when a development default is left over.

Each test runs the project in a fresh interpreter, since settings are read from the
environment once, at import.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

# What the README's "Production" section sets. Nothing here is connected to: `check` reads
# settings only, and the database/broker hosts below do not exist.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "oms.shop.example",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://oms.shop.example",
    "DATABASE_URL": "postgres://oms:secret@db.internal.example:5432/oms",
    "CELERY_BROKER_URL": "redis://redis.internal.example:6379/0",
    "STRIPE_SECRET_KEY": "sk_live_" + "x" * 24,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "y" * 32,
    "REFUND_REQUIRE_2FA": "1",
}


def run_in_production(args, *, env_overrides=None, unset=()):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "STRIPE_", "CELERY_", "REFUND_"))}
    env.pop("DATABASE_URL", None)
    env.update(PRODUCTION_ENV)
    env.update(env_overrides or {})
    for key in unset:
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_production_environment():
    result = run_in_production(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (1 silenced)." in result.stdout  # axes.W006, see settings.py


def test_production_settings_have_secure_cookies_hsts_no_debug_and_hosts_from_the_environment():
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'DEBUG': s.DEBUG, 'ALLOWED_HOSTS': s.ALLOWED_HOSTS, 'SESSION_COOKIE_SECURE': s.SESSION_COOKIE_SECURE,"
        "'CSRF_COOKIE_SECURE': s.CSRF_COOKIE_SECURE, 'SECURE_SSL_REDIRECT': s.SECURE_SSL_REDIRECT,"
        "'SECURE_HSTS_SECONDS': s.SECURE_HSTS_SECONDS, 'ENGINE': s.DATABASES['default']['ENGINE'],"
        "'STATICFILES': s.STORAGES['staticfiles']['BACKEND'], 'whitenoise': 'whitenoise.middleware.WhiteNoiseMiddleware' in s.MIDDLEWARE}))"
    )
    result = run_in_production(["-c", script], env_overrides={"DJANGO_SETTINGS_MODULE": "refunds_project.settings"})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["oms.shop.example"],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "ENGINE": "django.db.backends.postgresql",
        "STATICFILES": "whitenoise.storage.CompressedManifestStaticFilesStorage",
        "whitenoise": True,
    }


def test_development_defaults_left_in_production_fail_check_deploy():
    result = run_in_production(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env_overrides={"STRIPE_API_BASE": "http://127.0.0.1:8420", "DJANGO_SECRET_KEY": "too-short-a-key"},
        unset=("DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "REFUND_REQUIRE_2FA"),
    )

    assert result.returncode != 0
    for check_id in ("security.W009", "refunds.W101", "refunds.W102", "refunds.W103", "refunds.W104", "refunds.W105"):
        assert check_id in result.stderr, check_id


def test_check_deploy_fails_with_the_development_settings():
    # What `make run` and the tests use: DEBUG on, the public development key.
    result = run_in_production(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env_overrides={"DJANGO_SETTINGS_MODULE": "refunds_project.settings_dev"},
        unset=("DJANGO_DEBUG", "DJANGO_SECRET_KEY"),
    )

    assert result.returncode != 0
    for check_id in ("security.W018", "security.W009"):  # DEBUG on; the public key
        assert check_id in result.stderr, check_id


@pytest.mark.parametrize("debug", ["unset", "0"])
@pytest.mark.parametrize("command", [["manage.py", "check"], ["manage.py", "migrate", "--plan"], ["-c", "import refunds_project.wsgi"]])
def test_production_settings_without_a_secret_key_refuse_to_start(debug, command):
    result = run_in_production(
        command,
        env_overrides={"DJANGO_SETTINGS_MODULE": "refunds_project.settings"} | ({"DJANGO_DEBUG": debug} if debug != "unset" else {}),
        unset=("DJANGO_SECRET_KEY",) + (("DJANGO_DEBUG",) if debug == "unset" else ()),
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set." in result.stderr, result.stderr[-2000:]


def test_without_django_debug_a_bad_host_gets_a_plain_400_that_names_no_secret():
    # DEBUG used to default to on: Django's debug page then printed the settings, the broker's
    # password in CELERY_BROKER_URL among them.
    script = (
        "import django; django.setup(); from django.conf import settings; from django.test import Client;"
        "r = Client().get('/admin/login/', HTTP_HOST='attacker.example', secure=True);"
        "print(settings.DEBUG); print(r.status_code); print(r.content.decode())"
    )
    result = run_in_production(
        ["-c", script],
        env_overrides={"DJANGO_SETTINGS_MODULE": "refunds_project.settings",
                       "CELERY_BROKER_URL": "redis://:broker-password@redis.internal.example:6379/0"},
        unset=("DJANGO_DEBUG",),
    )

    assert result.returncode == 0, result.stderr
    debug, code, body = result.stdout.split("\n", 2)
    assert (debug, code) == ("False", "400")
    assert "broker-password" not in body and "CELERY_BROKER_URL" not in body and "Traceback" not in body


def test_the_release_step_runs_check_deploy_before_migrate():
    release = next(line for line in (BASE_DIR / "Procfile").read_text().splitlines() if line.startswith("release:"))
    assert release.index("check --deploy --fail-level WARNING") < release.index("migrate")
    assert "&&" in release  # a failing check stops the release


def test_missing_stripe_settings_stop_production():
    result = run_in_production(["manage.py", "check"], unset=("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"))

    assert result.returncode != 0
    assert "refunds.E001" in result.stderr and "refunds.E003" in result.stderr


@pytest.mark.parametrize(("path", "status"), [("/health/", 500), ("/admin/login/", 301)])
def test_in_production_only_the_health_probe_is_answered_over_plain_http(path, status):
    # The load balancer probes over HTTP; every other page redirects to HTTPS. The database
    # is unreachable here, so the probe answers 500, without saying why.
    script = (
        "import django; django.setup(); from django.test import Client;"
        f"r = Client().get({path!r}, HTTP_HOST='oms.shop.example'); print(r.status_code); print(r.content.decode())"
    )
    result = run_in_production(
        ["-c", script],
        env_overrides={
            "DJANGO_SETTINGS_MODULE": "refunds_project.settings",
            "DATABASE_URL": "postgres://oms@127.0.0.1:9/oms",  # nothing listens on port 9
        },
    )

    assert result.returncode == 0, result.stderr
    code, _, body = result.stdout.partition("\n")
    assert int(code) == status
    if path == "/health/":
        assert "127.0.0.1" not in body and "redis.internal.example" not in body
        assert '"Database": "Unavailable: connection failed"' in body
