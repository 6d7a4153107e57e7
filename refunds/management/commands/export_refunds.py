import csv
import datetime as dt
import os
from argparse import ArgumentTypeError

from django.core.management.base import BaseCommand, CommandError

from refunds import services
from refunds.management.console import progress_bar


def day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a date; write it as YYYY-MM-DD") from None


class Command(BaseCommand):
    help = (
        "Write the refunds created from --since through --until (whole UTC days) as CSV for finance: "
        "one row per refund, amounts exact in major units and in minor units. Streamed: memory does "
        "not grow with the number of refunds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=day, required=True, help="First day, YYYY-MM-DD (UTC), included.")
        parser.add_argument("--until", type=day, default=None, help="Last day, YYYY-MM-DD (UTC), included; default: up to now.")
        parser.add_argument(
            "--output", default="-",
            help="CSV file to write (written aside, then renamed, so a failed export leaves no half file); default: stdout.",
        )

    def handle(self, *, since, until, output, **options):
        if until is not None and until < since:
            raise CommandError(f"--until {until} is before --since {since}.")
        refunds = services.refunds_created_between(since, until)
        total = refunds.count()
        span = f"{since} – {until}" if until else f"since {since}"
        if output == "-":
            self._write(self.stdout._out, refunds, total)
        else:
            partial = f"{output}.partial"
            try:
                with open(partial, "w", newline="", encoding="utf-8") as file:
                    self._write(file, refunds, total)
                os.replace(partial, output)
            except BaseException:
                if os.path.exists(partial):
                    os.remove(partial)
                raise
        destination = "stdout" if output == "-" else output
        self.stderr.write(self.style.SUCCESS(f"{total:,} refund(s) created {span} (UTC) exported to {destination}."))

    def _write(self, file, refunds, total: int) -> None:
        writer = csv.writer(file)
        writer.writerow(services.EXPORT_COLUMNS)
        with progress_bar(self, total, label="exporting") as bar:
            for row in services.export_rows(refunds, on_page=bar.update):
                writer.writerow(row)
