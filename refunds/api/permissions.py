"""One Django permission per endpoint (DESIGN.md §8); the view names it in `required_permission`."""

from rest_framework import permissions


class HasRequiredPermission(permissions.BasePermission):
    message = "Your token's user lacks the permission this endpoint needs."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = getattr(view, "required_permission", None)
        if needed is None:
            return True
        self.message = f"Your token's user lacks the permission {needed}."
        return user.has_perm(needed)
