"""`manage.py add_totp_device <username>`: a TOTP device (django-otp) for a Back Office user,
printed once as the key and the otpauth:// URL an authenticator app reads."""

from base64 import b32encode

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a TOTP second factor for a Back Office user and print its key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator app", help="A name for the device (default: %(default)s).")
        parser.add_argument(
            "--replace", action="store_true", help="Delete the user's existing TOTP devices first (a lost phone)."
        )

    def handle(self, *args, username, name, replace, **options):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        existing = TOTPDevice.objects.filter(user=user)
        if existing.exists() and not replace:
            raise CommandError(
                f"{username} already has a TOTP device; run again with --replace to give them a new one."
            )
        existing.delete()
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        self.stdout.write(f"TOTP device for {username} created.")
        self.stdout.write(f"Key (type into the authenticator app): {b32encode(device.bin_key).decode()}")
        self.stdout.write(f"otpauth URL (or make a QR code of it): {device.config_url}")
        self.stdout.write("Shown once; it is not printed again.")
