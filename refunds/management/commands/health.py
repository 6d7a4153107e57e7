"""`manage.py health`: the database, broker and beat schedule checks as JSON; exit status 1 when
any is down (for cron, a container HEALTHCHECK or a monitoring agent)."""

import json

from django.core.management.base import BaseCommand

from refunds.health import health_report


class Command(BaseCommand):
    help = "Check the database, the Celery broker and the beat schedule; print JSON, exit 1 if any is down."
    requires_system_checks = []  # a health probe must answer even when a setting is wrong

    def handle(self, *args, **options):
        report = health_report()
        self.stdout.write(json.dumps(report, indent=2))
        if report["status"] != "ok":
            raise SystemExit(1)
