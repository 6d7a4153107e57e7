"""Settings for the refunds OMS service, configured from the environment (django-environ).

Every variable has an embedded default so a fresh clone runs on SQLite with no broker
server; production sets them (README, "Production"). The demo and the tests use
`refunds_project.settings_dev`, which adds the development app on top of these.
"""

from datetime import timedelta
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from refunds.conf import amounts_by_currency

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

VAR_DIR = Path(env.str("REFUNDS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Fails closed: DEBUG only when asked for (the demo and the tests, refunds_project.settings_dev),
# and with DEBUG off no public development key: a missing DJANGO_SECRET_KEY stops startup.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
DEVELOPMENT_SECRET_KEY = "insecure-dev-key-change-me-in-production"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. With DJANGO_DEBUG off (production) it is required: set it to 50 or "
        "more random characters, e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`. For development, use "
        "DJANGO_SETTINGS_MODULE=refunds_project.settings_dev (make run, make test) or set DJANGO_DEBUG=1."
    )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "health_check",  # `manage.py health_check health --no-http` for cron
    "axes",  # Back Office logins throttled after repeated failures
    "django_otp",  # a second factor (TOTP) for users who may refund, with REFUND_REQUIRE_2FA
    "django_otp.plugins.otp_totp",
    "rest_framework",  # the REST API (refunds/api)
    "drf_spectacular",  # its OpenAPI schema
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally
    "refunds",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The Back Office in the user's browser language (Accept-Language), among LANGUAGES.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): logged in with a second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: answers a locked-out login
]

# --- Back Office logins ---------------------------------------------------------------------
# django-axes watches every login (its backend first) and refuses a user name after
# AXES_FAILURE_LIMIT failures in a row, for AXES_COOLOFF_TIME. Counted per user name: behind a
# load balancer every client may share one address, and a password guesser can change his.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes.W006 asks for the client address in the lockout parameters; behind a proxy it is the
# proxy's for every client (one guesser would lock everybody out), and a user name cannot be
# rotated the way an address or a user agent can.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Users who may refund or approve log in with a TOTP code too (refunds.two_factor); the
# production recipe sets it, the demo does not.
REFUND_REQUIRE_2FA = env.bool("REFUND_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Refunds Back Office")

ROOT_URLCONF = "refunds_project.urls"
WSGI_APPLICATION = "refunds_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own pages (site branding, error pages); the app's are in its package.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # psycopg's prepared statements: a statement run this many times on a connection is planned
    # once for it, not at every run (psycopg's own default, 5). Django leaves them off, for
    # transaction-mode connection poolers (PgBouncer before 1.21, or without
    # max_prepared_statements): set DATABASE_PREPARE_THRESHOLD=off behind one. Planning is most
    # of the database's work for a webhook event (bench/webhook.py --gunicorn: 3.4–4.0 ms of
    # backend CPU per event unprepared, 1.2–1.9 ms prepared).
    _prepare = env.str("DATABASE_PREPARE_THRESHOLD", default="5").strip().lower()
    if _prepare not in ("off", "none", ""):
        if not _prepare.isdigit():
            raise ImproperlyConfigured(
                f"DATABASE_PREPARE_THRESHOLD must be a whole number of runs or 'off', not {_prepare!r}"
            )
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = int(_prepare)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not ":memory:", so a Celery worker started by a test sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # BEGIN IMMEDIATE: a transaction takes SQLite's write lock when it starts, so the
    # read-check-write of a refund request is serialized (SQLite ignores select_for_update).
    # Writers wait for each other instead of failing at once with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(transaction_mode="IMMEDIATE", timeout=20)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The Back Office speaks English and German (refunds/locale); a browser asking for neither gets
# LANGUAGE_CODE. Times are shown in TIME_ZONE and stored in UTC.
LANGUAGE_CODE = env.str("DJANGO_LANGUAGE_CODE", default="en-us")
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
FORMAT_MODULE_PATH = ["refunds_project.formats"]  # times to the second
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # The handler sits on the root logger only: a Celery worker replaces the root's handlers
    # with its own, so each line is printed once there too.
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"refunds": {"level": env.str("REFUNDS_LOG_LEVEL", default="INFO")}},
}

# --- Stripe -------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Base URL of a Stripe emulator such as localstripe ("http://127.0.0.1:8420"); empty for Stripe.
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Pinned so a Stripe account upgrade cannot change the shape of what we read.
STRIPE_API_VERSION = env.str("STRIPE_API_VERSION", default="2026-10-28.endive")
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=30.0)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
# localstripe answers 400 to `reason`; the demo turns this off. The reason is kept on our row either way.
STRIPE_SEND_REFUND_REASON = env.bool("STRIPE_SEND_REFUND_REASON", default=True)

# --- Refund process -----------------------------------------------------------------------
REFUND_SETTLEMENT_DAYS = env.float("REFUND_SETTLEMENT_DAYS", default=7.0)
REFUND_SETTLEMENT_PERIOD = timedelta(days=REFUND_SETTLEMENT_DAYS)
if env.str("REFUND_SETTLEMENT_SECONDS", default=""):
    # The demo (`make run`) settles in seconds, so the whole refund process can be watched.
    REFUND_SETTLEMENT_PERIOD = timedelta(seconds=env.float("REFUND_SETTLEMENT_SECONDS"))
# A refund still "queued" this long after its creation is submitted again by reconcile_refunds.
REFUND_RECONCILE_QUEUED_AFTER = timedelta(minutes=env.float("REFUND_RECONCILE_QUEUED_AFTER_MINUTES", default=5.0))
# A refund "pending" at Stripe this long is fetched from Stripe by reconcile_refunds.
REFUND_RECONCILE_PENDING_AFTER = timedelta(minutes=env.float("REFUND_RECONCILE_PENDING_AFTER_MINUTES", default=60.0))
# Stripe keeps an idempotency key for 24 hours; older ones are looked up by metadata first.
STRIPE_IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
# At most this many refunds of each kind (stale queued, stale pending) per reconcile_refunds run.
REFUND_RECONCILE_LIMIT = env.int("REFUND_RECONCILE_LIMIT", default=100)
# Items finalized per transaction (and per row-lock batch) by finalize_refunds.
REFUND_SETTLEMENT_BATCH_SIZE = env.int("REFUND_SETTLEMENT_BATCH_SIZE", default=1000)

# --- Operations: dual control, needs attention, alerts (DESIGN.md §9) -----------------------------
# "eur=50000,usd=50000,jpy=50000": a refund at or above its currency's amount (minor units) waits
# for a second user's approval. Unset, or a currency not listed: no approval.
REFUND_APPROVAL_THRESHOLDS = amounts_by_currency(env.str("REFUND_APPROVAL_THRESHOLDS", default=""))
# A refund pending at Stripe this many days becomes a "stuck pending" case.
REFUND_ATTENTION_PENDING_DAYS = env.int("REFUND_ATTENTION_PENDING_DAYS", default=10)
# Who gets an e-mail for each new case (comma-separated), and an optional Slack-compatible webhook.
REFUND_ALERT_EMAILS = env.list("REFUND_ALERT_EMAILS", default=[])
REFUND_ALERT_WEBHOOK_URL = env.str("REFUND_ALERT_WEBHOOK_URL", default="")
# The Back Office's address, for links in alerts ("https://oms.shop.example").
REFUND_BACK_OFFICE_URL = env.str("REFUND_BACK_OFFICE_URL", default="")

# --- REST API (refunds/api) ------------------------------------------------------------------
# Requests per API token ("600/minute"); beyond it 429 with Retry-After. The counts live in the
# cache: with several web processes, CACHE_URL must be a shared one (rediscache://redis:6379/1).
REFUND_API_THROTTLE_RATE = env.str("REFUND_API_THROTTLE_RATE", default="600/minute")
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- E-mail (alerts) ------------------------------------------------------------------------
# EMAIL_URL (django-environ: "smtp+tls://user:password@smtp.example.com:587") or the usual
# EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS / EMAIL_USE_SSL.
# Without either, mail goes to the console in development and to localhost:25 in production.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env.str(
        "EMAIL_BACKEND",
        default="django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
    )
    EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
    EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="refunds@localhost")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)

# --- Celery -------------------------------------------------------------------------------
# Embedded default: Kombu's filesystem transport, a broker that needs no server.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery-broker"
    _queue_dir.mkdir(parents=True, exist_ok=True)  # Kombu writes into it but never creates it
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "store_processed": False,
        # Remote control (worker ping, shutdown) exchanges; Kombu's default is "control" in the cwd.
        "control_folder": str(VAR_DIR / "celery-control"),
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
# A task is acknowledged after it ran, so a worker that dies mid-task hands it to another.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
# django_celery_beat's DatabaseScheduler, except that settings only add missing jobs and never
# overwrite what was edited in the admin (refunds/beat.py).
CELERY_BEAT_SCHEDULER = "refunds.beat:SeededDatabaseScheduler"
REFUND_JOBS_EVERY_MINUTES = env.int("REFUND_JOBS_EVERY_MINUTES", default=15)
_refund_jobs_schedule = crontab(minute=f"*/{REFUND_JOBS_EVERY_MINUTES}")
if env.str("REFUND_JOBS_EVERY_SECONDS", default=""):
    # The demo runs the jobs every few seconds (an interval, not a crontab).
    _refund_jobs_schedule = timedelta(seconds=env.float("REFUND_JOBS_EVERY_SECONDS"))
CELERY_BEAT_SCHEDULE = {
    "finalize-refunds": {
        "task": "refunds.tasks.finalize_refunds",
        "schedule": _refund_jobs_schedule,
    },
    "reconcile-refunds": {
        "task": "refunds.tasks.reconcile_refunds",
        "schedule": _refund_jobs_schedule,
    },
}
# Beat writes each job's last_run_at after every run (not every 3 minutes), so the health
# check (refunds/health.py) can tell a live beat from a dead one.
CELERY_BEAT_SYNC_EVERY = 1
# Beat is dead when a refund job is this much overdue (beat wakes every 5 s at most).
HEALTH_BEAT_GRACE = timedelta(seconds=env.float("HEALTH_BEAT_GRACE_SECONDS", default=300.0))
# /health/ pings the Celery workers: a worker that is gone (or stuck) makes it answer 500.
HEALTH_CHECK_WORKERS = env.bool("HEALTH_CHECK_WORKERS", default=True)

# --- Production hardening (on when DJANGO_DEBUG is off) --------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # A load balancer probes over plain HTTP inside the network: answer it, do not redirect.
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]
    # Admin CSS/JS served by gunicorn itself (WhiteNoise), from `collectstatic`'s STATIC_ROOT.
    MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
                      "whitenoise.middleware.WhiteNoiseMiddleware")
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
