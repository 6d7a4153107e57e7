from django.core.management.base import BaseCommand
from django.db.models import Count, Sum

from refunds import selectors, services
from refunds.conf import app_settings
from refunds.management.console import duration_text, progress_bar
from refunds.money import format_money

SHOWN = 20


class Command(BaseCommand):
    help = (
        "Move items in 'payment refund succeeded' for longer than the settlement period "
        "(REFUND_SETTLEMENT_DAYS) to 'payment refunded', as the Celery beat job does."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Show what would move; change nothing.")
        parser.add_argument("--batch-size", type=int, default=None, help="Items per transaction (REFUND_SETTLEMENT_BATCH_SIZE).")

    def handle(self, *, dry_run, batch_size, **options):
        cutoff = selectors.settlement_cutoff()
        due = selectors.items_due_for_settlement(cutoff=cutoff)
        total = due.count()
        self.stdout.write(
            f"{total:,} item(s) in payment refund succeeded since before {cutoff:%Y-%m-%d %H:%M %Z} "
            f"(settlement period {duration_text(app_settings.REFUND_SETTLEMENT_PERIOD)})"
            + (" would move to payment refunded." if dry_run else ".")
        )
        if dry_run:
            self._describe(due, total)
            return
        with progress_bar(self, total, label="finalizing") as bar:
            moved = services.finalize_due_refunds(batch_size=batch_size, on_batch=bar.update)
        self.stdout.write(self.style.SUCCESS(f"{moved:,} item(s) moved to payment refunded."))

    def _describe(self, due, total):
        by_currency = due.values("order__currency").annotate(items=Count("pk"), amount=Sum("amount")).order_by("order__currency")
        for row in by_currency:
            self.stdout.write(f"  {row['items']:,} item(s), {format_money(row['amount'], row['order__currency'])}")
        for item in due.select_related("order").order_by("state_changed_at", "pk")[:SHOWN]:
            self.stdout.write(
                f"  {item.order.reference} / {item.sku}: {item.order.money(item.amount)}, "
                f"succeeded {item.state_changed_at:%Y-%m-%d %H:%M}"
            )
        if total > SHOWN:
            self.stdout.write(f"  … and {total - SHOWN:,} more")
