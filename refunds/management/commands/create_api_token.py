"""`manage.py create_api_token <username>`: a REST API token for a user, printed once (DESIGN.md §8).

Only its SHA-256 hash is stored; revoke it in the admin (API tokens → "Revoke selected tokens").
The token acts with the user's Django permissions, so give an integration its own user with
only what it needs (e.g. `refunds.add_order`, `refunds.view_order`, `refunds.view_refund`).
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from refunds.api.tokens import create_api_token


class Command(BaseCommand):
    help = "Create a REST API token for a user and print it once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What will use it, e.g. 'returns portal'.")

    def handle(self, *args, username, name, **options):
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not user.is_active:
            raise CommandError(f"{username} is not active; a token of theirs would be refused.")
        token, raw = create_api_token(user=user, name=name)
        self.stdout.write(raw)
        self.stderr.write(
            f"API token {token.prefix}… for {username} created. It is shown once and stored only as a hash; "
            "send it as `Authorization: Bearer <token>`."
        )
