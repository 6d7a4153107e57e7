"""The app installed into a shop's own Django project, as the README's "Use it in your own Django
project" says (DESIGN.md §8): build the wheel, `pip install` it into a fresh virtualenv, write a
host project that sets only what it must, `migrate`, `check`, and open the Back Office.

Slow (a virtualenv and the app's dependencies from the registry; pip's cache is reused), so
marked `slow`; CI runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
INSTALL_TIMEOUT = 600  # dependencies on a cold pip cache
NOT_INSTALLED = {
    "localstripe", "aiohttp", "honcho", "pytest", "pytest-django", "playwright", "hypothesis", "factory-boy",
    "openapi-spec-validator",
}
ADMIN_PAGES = [
    "/admin/refunds/order/",
    "/admin/refunds/orderitem/",
    "/admin/refunds/refund/",
    "/admin/refunds/stripeevent/",
    "/admin/refunds/itemtransition/",
]

pytestmark = pytest.mark.slow

HOST_SETTINGS = """\
    # A shop's own project: Django's admin, django_celery_beat and the app; its settings are only
    # the ones that have no default (the Stripe secrets). Nothing of REFUND_* or CELERY_*.
    from pathlib import Path

    BASE_DIR = Path(__file__).resolve().parent.parent
    SECRET_KEY = "host-project-test-key"
    DEBUG = True
    ALLOWED_HOSTS = ["testserver"]
    INSTALLED_APPS = [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "django_celery_beat",
        "rest_framework",
        "drf_spectacular",
        "drf_spectacular_sidecar",
        "refunds",
    ]
    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    ROOT_URLCONF = "shop.urls"
    TEMPLATES = [{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": [
            "django.template.context_processors.request",
            "django.contrib.auth.context_processors.auth",
            "django.contrib.messages.context_processors.messages",
        ]},
    }]
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "shop.sqlite3"}}
    USE_TZ = True
    STATIC_URL = "static/"
    STRIPE_SECRET_KEY = "sk_test_x"
    STRIPE_WEBHOOK_SECRET = "whsec_x"
"""

HOST_URLS = """\
    from django.contrib import admin
    from django.urls import include, path

    urlpatterns = [
        path("admin/", admin.site.urls),
        path("", include("refunds.urls")),
    ]
"""

HOST_MANAGE = """\
    import os
    import sys

    if __name__ == "__main__":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
"""

# Run by the virtualenv's Python in the host project: what a shop's Back Office user would see.
PROBE = """\
    import json
    import os
    import sys

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    import django

    django.setup()
    from django.contrib.staticfiles import finders
    from django.template.loader import get_template
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django_celery_beat.models import PeriodicTask

    import refunds

    setup_test_environment()
    client = Client()
    status = {"/admin/login/": client.get("/admin/login/").status_code}
    logged_in = client.login(username="shop-admin", password="a-long-host-password")
    for url in sys.argv[1:]:
        status[url] = client.get(url).status_code
    webhook = client.post("/stripe/webhook/", b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=x")
    health = client.get("/health/")
    # The REST API as a shop's client sees it: a token from the command, an order in, read back.
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    import io

    out = io.StringIO()
    call_command("create_api_token", "shop-admin", stdout=out, stderr=io.StringIO())
    bearer = {"HTTP_AUTHORIZATION": "Bearer " + out.getvalue().strip()}
    order = {"reference": "HOST-1", "currency": "eur", "payment_intent": "pi_host1", "customer_email": "a@shop.example",
             "shipping_amount": 0, "items": [{"sku": "A", "name": "A", "amount": 1000, "quantity": 2}]}
    created = client.post("/api/v1/orders/", json.dumps(order), content_type="application/json", **bearer)
    read = client.get("/api/v1/orders/HOST-1/", **bearer)
    anonymous = client.get("/api/v1/orders/HOST-1/")
    schema = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/v1/docs/")
    print(json.dumps({
        "refunds": refunds.__file__,
        "logged_in": logged_in,
        "status": status,
        "webhook_unsigned": webhook.status_code,
        "health": [health.status_code, health.json()],
        "template": str(get_template("admin/refunds/refund_confirmation.html").origin.name),
        "static": finders.find("refunds/back_office.css"),
        "beat_jobs": sorted(PeriodicTask.objects.filter(task__startswith="refunds.").values_list("name", flat=True)),
        "api": {
            "created": created.status_code,
            "items": len(read.json()["items"]),
            "anonymous": [anonymous.status_code, anonymous["Content-Type"]],
            "schema_paths": sorted(schema.json()["paths"]),
            "docs": docs.status_code,
            "swagger_ui": finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        },
    }))
"""


def write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def stranger_environment() -> dict[str, str]:
    """No settings, no virtualenv, no path of this checkout: a shell in the shop's project."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STRIPE_", "CELERY_", "REFUND", "PYTEST", "PYTHON"))
        and key not in {"DATABASE_URL", "VIRTUAL_ENV"}
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def run(args, *, cwd: Path, env=None, timeout=INSTALL_TIMEOUT, **extra_env) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env={**(env or stranger_environment()), **extra_env},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def checkout_copy(destination: Path) -> Path:
    """The files git would commit (tracked, and new ones not ignored), so no build/ or .venv of
    this checkout leaks into the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=BASE_DIR, capture_output=True, check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = BASE_DIR / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the host project, the virtualenv's python, the wheel), the wheel installed in the virtualenv."""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("the host project has its own SQLite database whatever DATABASE_URL says; the SQLite run covers it")
    tmp = tmp_path_factory.mktemp("install")
    source = checkout_copy(tmp / "checkout")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", source], cwd=tmp)
    (wheel,) = (tmp / "dist").glob("*.whl")

    run([sys.executable, "-m", "venv", tmp / "venv"], cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel], cwd=tmp)

    project = tmp / "shop"
    write(project / "manage.py", HOST_MANAGE)
    write(project / "shop" / "__init__.py", "")
    write(project / "shop" / "settings.py", HOST_SETTINGS)
    write(project / "shop" / "urls.py", HOST_URLS)
    write(project / "probe.py", PROBE)
    return project, python, wheel


def test_the_wheel_holds_the_refunds_package_only(host):
    *_, wheel = host
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"refunds", "django_stripe_refunds_oms-0.1.0.dist-info"}, top_level  # no refunds_dev, tests…
    for packaged in (
        "refunds/migrations/0001_initial.py",
        "refunds/migrations/0005_api_tokens.py",
        "refunds/api/views.py",
        "refunds/management/commands/create_api_token.py",
        "refunds/templatetags/refunds_admin.py",
        "refunds/management/commands/finalize_refunds.py",
        "refunds/templates/admin/refunds/refund_confirmation.html",
        "refunds/static/refunds/back_office.css",
        "refunds/static/refunds/submit_once.js",
        "refunds/locale/de/LC_MESSAGES/django.mo",  # the German Back Office, compiled
        "refunds/management/commands/create_refund_roles.py",
    ):
        assert packaged in names


def test_the_virtualenv_has_the_runtime_dependencies_only(host):
    _, python, _ = host
    installed = {
        package["name"].lower().replace("_", "-")
        for package in json.loads(run([python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"], cwd=python.parent).stdout)
    }
    assert {"django", "django-fsm-2", "stripe", "celery", "redis", "django-celery-beat", "django-health-check", "tqdm",
            "djangorestframework", "drf-spectacular", "drf-spectacular-sidecar"} <= installed
    assert installed.isdisjoint(NOT_INSTALLED | {"gunicorn", "whitenoise", "django-environ"}), installed & NOT_INSTALLED


def test_a_host_project_migrates_checks_and_shows_the_back_office(host):
    project, python, _ = host
    migrate = run([python, "manage.py", "migrate", "--no-input"], cwd=project).stdout
    assert "Applying refunds.0001_initial... OK" in migrate
    check = run([python, "manage.py", "check", "--fail-level", "WARNING"], cwd=project).stdout
    assert "System check identified no issues" in check
    # The app's models and migrations agree under the host's own DEFAULT_AUTO_FIELD.
    run([python, "manage.py", "makemigrations", "--check", "--dry-run", "refunds"], cwd=project)
    run([python, "manage.py", "createsuperuser", "--no-input", "--username", "shop-admin", "--email", "admin@shop.example"],
        cwd=project, DJANGO_SUPERUSER_PASSWORD="a-long-host-password")

    seen = json.loads(run([python, "probe.py", *ADMIN_PAGES], cwd=project).stdout)

    site_packages = str(python.parent.parent)
    assert seen["refunds"].startswith(site_packages), seen["refunds"]  # the installed app, not this checkout
    assert seen["logged_in"]
    assert seen["status"] == {url: 200 for url in ["/admin/login/", *ADMIN_PAGES]}
    assert seen["webhook_unsigned"] == 400  # the webhook is routed and checks the signature
    assert seen["health"] == [200, {"Database": "OK", "BeatSchedule": "OK"}]
    assert seen["template"].startswith(site_packages) and seen["static"].startswith(site_packages)
    assert seen["beat_jobs"] == ["finalize-refunds", "reconcile-refunds"]  # seeded by migrate, from the defaults
    api = seen["api"]
    assert (api["created"], api["items"], api["docs"]) == (201, 2, 200)
    assert api["anonymous"] == [401, "application/problem+json"]
    assert api["schema_paths"] == [
        "/api/v1/orders/", "/api/v1/orders/{reference}/", "/api/v1/orders/{reference}/refunds/",
        "/api/v1/orders/{reference}/refunds/preview/", "/api/v1/refunds/{refund_id}/",
    ]
    assert api["swagger_ui"].startswith(site_packages)  # the docs page's assets, installed locally


def test_the_refund_jobs_run_in_a_host_project_that_sets_none_of_their_settings(host):
    project, python, _ = host
    run([python, "manage.py", "migrate", "--no-input"], cwd=project)
    finalize = run([python, "manage.py", "finalize_refunds"], cwd=project).stdout
    assert "(settlement period 7 days)" in finalize and "0 item(s) moved to payment refunded." in finalize
    reconcile = run([python, "manage.py", "reconcile_refunds"], cwd=project).stdout
    assert "queued for more than 5 minutes" in reconcile and "0 sent again, 0 checked with Stripe" in reconcile
