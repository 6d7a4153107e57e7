from django.core.management.base import BaseCommand

from refunds import selectors, services
from refunds.conf import app_settings
from refunds.management.console import duration_text, progress_bar

PROGRESS_THRESHOLD = 20  # each refund is a Stripe call: a bar helps early


class Command(BaseCommand):
    help = (
        "Send refunds still queued after REFUND_RECONCILE_QUEUED_AFTER again, and settle refunds "
        "pending at Stripe for longer than REFUND_RECONCILE_PENDING_AFTER from Stripe's answer, "
        "as the Celery beat job does."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Show what would be repaired; call nothing.")
        parser.add_argument("--limit", type=int, default=None, help="Refunds of each kind per run (REFUND_RECONCILE_LIMIT).")

    def handle(self, *, dry_run, limit, **options):
        limit = limit or app_settings.REFUND_RECONCILE_LIMIT
        queued = selectors.stale_queued_refunds().select_related("order")
        pending = selectors.stale_pending_refunds().select_related("order")
        queued_count, pending_count = queued.count(), pending.count()
        verb = "would be" if dry_run else "will be"
        self.stdout.write(
            f"{queued_count:,} refund(s) queued for more than {duration_text(app_settings.REFUND_RECONCILE_QUEUED_AFTER)} "
            f"{verb} sent to Stripe again; {pending_count:,} refund(s) pending for more than "
            f"{duration_text(app_settings.REFUND_RECONCILE_PENDING_AFTER)} {verb} checked with Stripe (at most {limit:,} of each)."
        )
        if dry_run:
            for title, refunds in (("send again", queued), ("check with Stripe", pending)):
                for refund in refunds[:limit]:
                    self.stdout.write(
                        f"  {title}: refund #{refund.pk} of {refund.order.reference}, {refund.amount_display}, "
                        f"{refund.status} since {refund.status_changed_at:%Y-%m-%d %H:%M}, "
                        f"{refund.submit_attempts} attempt(s)"
                    )
            return

        total = min(queued_count, limit) + min(pending_count, limit)
        with progress_bar(self, total, label="reconciling", threshold=PROGRESS_THRESHOLD) as bar:
            report = services.reconcile_refunds(limit=limit, on_each=lambda repair: bar.update())
        for repair in report.repaired:
            self.stdout.write(f"  refund #{repair.refund_id}: {repair.before} → {repair.after}")
        for repair in report.errors:
            self.stdout.write(self.style.WARNING(f"  refund #{repair.refund_id}: not repaired: {repair.error}"))
        if report.cases_opened or report.alerts_sent or report.alerts_failed:
            self.stdout.write(
                f"  needs attention: {report.cases_opened} case(s) opened, {report.alerts_sent} alert(s) sent, "
                f"{report.alerts_failed} alert(s) still failing"
            )
        counts = report.as_dict()
        self.stdout.write(self.style.SUCCESS(
            f"{counts['resubmitted']} sent again, {counts['synced']} checked with Stripe, "
            f"{counts['repaired']} repaired, {counts['errors']} error(s)."
        ))
