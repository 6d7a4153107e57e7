"""manage.py catch_up_refunds --since 2026-11-20 [--until 2026-11-27T12:00]: read Stripe's refunds
of a time window in pages of 100 and record each (refunds.services.catch_up)."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from refunds import services
from refunds.management.console import progress_bar
from refunds.models import Refund


def moment(text: str, *, end_of_day: bool) -> dt.datetime:
    """`2026-11-20` (a whole UTC day: its start, or its end for --until) or an ISO date-time (UTC
    unless it says otherwise)."""
    day = parse_date(text)
    if day is not None:
        start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
        return start + dt.timedelta(days=1, seconds=-1) if end_of_day else start
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise CommandError(f"{text!r} is neither a date (YYYY-MM-DD) nor an ISO date-time")
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.timezone.utc)


class Command(BaseCommand):
    help = (
        "Read Stripe's refunds created in a time window, 100 a request, and record what Stripe says "
        "about each (the newest view wins); then fetch our refunds of the window still pending that "
        "the list did not show. For webhooks lost for hours: minutes instead of a day of reconciliation."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="YYYY-MM-DD or an ISO date-time (UTC)")
        parser.add_argument("--until", default=None, help="YYYY-MM-DD (the whole day) or an ISO date-time; default now")

    def handle(self, *, since, until, **options):
        start = moment(since, end_of_day=False)
        end = moment(until, end_of_day=True) if until else timezone.now()
        if end < start:
            raise CommandError("--until is before --since")
        # Stripe gives no total; our refunds of the window are the estimate the bar counts to.
        expected = Refund.objects.filter(created_at__gte=start, created_at__lte=end).count()
        self.stdout.write(f"Reading Stripe's refunds created {start:%Y-%m-%d %H:%M:%S} … {end:%Y-%m-%d %H:%M:%S} UTC "
                          f"({expected:,} of ours in the window).")
        with progress_bar(self, expected, label="Stripe refunds", threshold=200) as bar:
            report = services.catch_up_refunds(since=start, until=end, on_page=bar.update)
        for error in report.errors:
            self.stdout.write(self.style.WARNING(f"  not recorded: {error}"))
        self.stdout.write(self.style.SUCCESS(
            f"{report.listed:,} listed, {report.changed:,} changed here, {report.unchanged:,} unchanged, "
            f"{report.fetched:,} fetched one by one; {report.requests:,} request(s) to Stripe, "
            f"{len(report.errors)} error(s)."
        ))
