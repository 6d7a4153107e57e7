"""Re-apply stored Stripe events: `replay_stripe_events evt_… evt_…` or `replay_stripe_events --failed`."""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from refunds.models import StripeEvent
from refunds.webhooks import process_event


class Command(BaseCommand):
    help = (
        "Re-apply stored Stripe webhook events, by event id or all that failed (an error kept, "
        "or never processed). Events older than what a refund already shows change nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("event_ids", nargs="*", metavar="evt_…", help="Stripe event ids to re-apply")
        parser.add_argument(
            "--failed", action="store_true", help="re-apply every stored event with an error or never processed"
        )

    def handle(self, *args, event_ids=(), failed=False, **options):
        if not event_ids and not failed:
            raise CommandError("Name the event ids to replay, or pass --failed.")
        events = StripeEvent.objects.none()
        if event_ids:
            events = StripeEvent.objects.filter(stripe_event_id__in=event_ids)
            missing = set(event_ids) - set(events.values_list("stripe_event_id", flat=True))
            if missing:
                raise CommandError(f"No stored Stripe event {', '.join(sorted(missing))}.")
        if failed:
            events = events | StripeEvent.objects.filter(Q(processed_at__isnull=True) | ~Q(error=""))
        # Oldest first, as Stripe created them; the ordering rule makes any order give the same result.
        events = sorted(events.distinct(), key=lambda event: (event.payload.get("created", 0), event.pk))

        errors = 0
        for event in events:
            try:
                process_event(event)
            except Exception as error:  # noqa: BLE001 — reported, kept on the event, next one goes on
                errors += 1
                self.stderr.write(f"{event.stripe_event_id} ({event.type}): failed again: {error!r}")
            else:
                self.stdout.write(f"{event.stripe_event_id} ({event.type}): applied")
        self.stdout.write(f"{len(events) - errors} of {len(events)} event(s) applied.")
        if errors:
            raise CommandError(f"{errors} event(s) failed; their errors are kept on the stored events.")
