"""What the PostgreSQL benchmarks share: their own database, created and migrated on first use."""

import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def setup_django(database_url: str, *, random_page_cost: float | None = None) -> None:
    """Point Django at `database_url` (created if missing), migrate it, and turn DEBUG off
    (Django keeps every query in memory under DEBUG)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refunds_project.settings_dev")
    os.environ.setdefault("REFUNDS_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(BASE_DIR))
    import django
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
        if random_page_cost is not None:
            conn.execute(f'ALTER DATABASE "{name}" SET random_page_cost = {float(random_page_cost)}')
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.DEBUG = False
    call_command("migrate", verbosity=0)
