"""The Back Office's ready-made roles: Django groups holding exactly the permissions a job needs.
`manage.py create_refund_roles` writes them; running it again gives the same groups."""

from __future__ import annotations

from django.db import transaction

VIEW = [
    "view_order", "view_orderitem", "view_refund", "view_stripeevent", "view_itemtransition", "view_attentioncase",
]

ROLES: dict[str, list[str]] = {
    # Sees every page of the Back Office, changes nothing.
    "Refund viewer": VIEW,
    # Refunds items, orders and amounts, and asks Stripe for a refund's status.
    "Refund clerk": [*VIEW, "refund_orderitem"],
    # Approves or rejects other users' refunds awaiting approval (dual control); refunds nothing itself.
    "Refund approver": [*VIEW, "approve_refund"],
    # Keeps the process running: reprocesses Stripe events, confirms refunds by hand before the
    # settlement period ends, resolves needs-attention cases.
    "Refund operator": [*VIEW, "reprocess_stripeevent", "confirm_refund_orderitem", "resolve_attentioncase"],
}


def create_refund_roles() -> dict[str, bool]:
    """Create or update the four groups; each ends with exactly its role's permissions.
    Returns group name → True when the group was created by this call."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    # The permissions exist after `migrate`; made here too, so the command works right after it.
    create_permissions(apps.get_app_config("refunds"), verbosity=0)
    created = {}
    with transaction.atomic():
        for name, codenames in ROLES.items():
            permissions = list(Permission.objects.filter(content_type__app_label="refunds", codename__in=codenames))
            missing = set(codenames) - {permission.codename for permission in permissions}
            if missing:
                raise LookupError(f"permissions missing: {', '.join(sorted(missing))}; run `manage.py migrate` first")
            group, created[name] = Group.objects.get_or_create(name=name)
            group.permissions.set(permissions)
    return created
