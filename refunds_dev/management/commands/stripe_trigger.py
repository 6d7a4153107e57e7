"""`manage.py stripe_trigger failed --failure-reason declined`: send the running webhook
endpoint the signed event Stripe would send for one of our refunds (see refunds_dev/trigger.py).

The endpoint URL and signing secret default to those of a running `make run` (it writes them to
var/demo.json), else to http://127.0.0.1:8000/stripe/webhook/ and STRIPE_WEBHOOK_SECRET.
"""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from refunds_dev import trigger

DEMO_STATE_FILE = settings.BASE_DIR / "var" / "demo.json"
DEFAULT_URL = "http://127.0.0.1:8000/stripe/webhook/"


def running_demo() -> dict:
    try:
        return json.loads(DEMO_STATE_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


class Command(BaseCommand):
    help = "Send a signed Stripe refund event (succeeded, failed or canceled) for one of our refunds to the webhook."
    # The demo's Stripe settings live in its own processes; a warning about this shell's is noise.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("status", choices=trigger.TRIGGER_STATUSES, help="the refund status Stripe reports")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--refund", default="", help="our refund id or Stripe's re_… (default: the latest sent to Stripe)")
        which.add_argument("--item", type=int, help="the latest refund of this order item id")
        parser.add_argument(
            "--failure-reason", default="", choices=trigger.FAILURE_REASONS,
            help="Stripe's failure_reason for a failed refund (default: declined)",
        )
        parser.add_argument("--type", dest="event_type", default="refund.updated", choices=trigger.EVENT_TYPES)
        parser.add_argument("--url", default="", help=f"the webhook endpoint (default: the running demo's, else {DEFAULT_URL})")
        parser.add_argument("--secret", default="", help="the endpoint's signing secret whsec_… (default: the running demo's, else STRIPE_WEBHOOK_SECRET)")

    def handle(self, *args, status, refund, item, failure_reason, event_type, url, secret, **options):
        demo = running_demo()
        url = url or demo.get("webhook_url") or DEFAULT_URL
        secret = secret or demo.get("webhook_secret") or settings.STRIPE_WEBHOOK_SECRET
        if not secret:
            raise CommandError("No signing secret: pass --secret whsec_… or set STRIPE_WEBHOOK_SECRET.")
        try:
            chosen = trigger.choose_refund(refund=refund, item=item)
            event = trigger.refund_event(
                refund=chosen, status=status, failure_reason=failure_reason, event_type=event_type
            )
            code, body = trigger.send_event(url=url, event=event, secret=secret)
        except trigger.TriggerError as error:
            raise CommandError(str(error)) from error
        reason = event["data"]["object"].get("failure_reason")
        self.stdout.write(
            f"{event_type} {event['id']} for {chosen.stripe_refund_id} (refund #{chosen.pk}, order "
            f"{chosen.order.reference}): status {status}{f' ({reason})' if reason else ''} → {url} answered {code}"
        )
        if not 200 <= code < 300:
            raise CommandError(f"The endpoint refused the event ({code}): {body[:500]}")
