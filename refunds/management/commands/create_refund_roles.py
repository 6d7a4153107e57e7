"""manage.py create_refund_roles: the Back Office's four groups (refunds/roles.py)."""

from django.core.management.base import BaseCommand, CommandError

from ...roles import ROLES, create_refund_roles


class Command(BaseCommand):
    help = (
        "Create or update the groups Refund viewer, Refund clerk, Refund approver and Refund operator, each "
        "with exactly its permissions. Safe to run again. Add staff users to a group in the admin (Users)."
    )

    def handle(self, *args, **options):
        try:
            created = create_refund_roles()
        except LookupError as error:
            raise CommandError(str(error)) from None
        for name, codenames in ROLES.items():
            verb = "created" if created[name] else "updated"
            self.stdout.write(f"{name}: {verb}, {len(codenames)} permissions ({', '.join(codenames)})")
