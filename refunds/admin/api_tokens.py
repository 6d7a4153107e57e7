"""API tokens in the Back Office: who has one, when it was last used, and revocation.

Tokens are created with `manage.py create_api_token` (the token is shown once there); the
admin never shows or stores more than the hash and the first characters.
"""

from django.contrib import admin, messages
from django.utils.translation import gettext, gettext_lazy as _, ngettext

from ..api.tokens import revoke_tokens
from ..models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix_display", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username"]
    readonly_fields = ["prefix_display", "user", "created_at", "last_used_at", "revoked_at"]
    fields = ["prefix_display", "user", "name", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_tokens"]

    @admin.display(description=_("token"), ordering="prefix")
    def prefix_display(self, token):
        return f"{token.prefix}…"

    def has_add_permission(self, request):
        return False  # `manage.py create_api_token`: the token is printed once, there

    @admin.action(permissions=["change"], description=_("Revoke selected tokens"))
    def revoke_tokens(self, request, queryset):
        count = revoke_tokens(queryset)
        self.message_user(
            request,
            ngettext("%d token revoked.", "%d tokens revoked.", count) % count + " "
            + gettext("Requests with a revoked token are answered 401."),
            messages.SUCCESS,
        )
