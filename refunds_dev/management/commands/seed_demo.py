"""`manage.py seed_demo`: the demo's orders (paid in the Stripe emulator), a Back Office user,
and the refund jobs on the configured schedule. Safe to run again: see refunds_dev/demo.py."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from refunds_dev import demo
from refunds.exceptions import StripeGatewayError


class Command(BaseCommand):
    help = "Create the demo orders, paid in the local Stripe emulator, and a Back Office superuser."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("DEMO_ADMIN_USERNAME", "admin"))
        parser.add_argument("--password", default=os.environ.get("DEMO_ADMIN_PASSWORD", "admin"))
        parser.add_argument(
            "--apply-schedule", action="store_true",
            help="write the refund jobs' schedule from settings over the database's (the demo's short interval)",
        )

    def handle(self, *args, username, password, apply_schedule, **options):
        if settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_")):
            raise CommandError("Refusing to create demo payments with a live Stripe key.")
        try:
            report = demo.seed_demo_orders()
        except StripeGatewayError as error:
            where = settings.STRIPE_API_BASE or "Stripe"
            raise CommandError(f"Could not create the demo payments at {where}: {error.message}") from error
        for reference in report.created:
            self.stdout.write(f"Created demo order {reference} (paid)")
        for reference in report.rebuilt:
            self.stdout.write(f"Rebuilt demo order {reference}: the Stripe emulator no longer knew its payment")
        if report.kept:
            self.stdout.write(f"Demo orders already there: {', '.join(report.kept)}")
        if demo.ensure_demo_admin(username=username, password=password, email=f"{username}@shop.example"):
            self.stdout.write(f"Created the Back Office user {username!r} with password {password!r}")
        else:
            self.stdout.write(f"The Back Office user {username!r} exists; its password is unchanged")
        changed = demo.apply_settings_schedule() if apply_schedule else []
        if changed:
            self.stdout.write(f"Beat schedule taken from settings for: {', '.join(changed)}")
