from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RefundsConfig(AppConfig):
    name = "refunds"
    verbose_name = _("Refunds")
    # The migrations' primary keys, whatever the host project's DEFAULT_AUTO_FIELD says.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from . import deploy_checks  # noqa: F401  (checks for `check --deploy`)
        from django.db.models.signals import post_migrate

        from .beat import seed_after_migrate

        name_the_back_office()
        # A freshly migrated database gets the beat schedule from settings (refunds/beat.py).
        post_migrate.connect(seed_after_migrate, sender=self, dispatch_uid="refunds.seed_beat_schedule")


def name_the_back_office():
    """The admin's header and title name the product (REFUND_SITE_HEADER, …), read at each page
    so a settings change applies; a host project that named its admin keeps its names."""
    from django.contrib import admin
    from django.contrib.admin import AdminSite
    from django.utils.functional import lazy

    from .conf import app_settings

    for attribute, setting in [
        ("site_header", "REFUND_SITE_HEADER"), ("site_title", "REFUND_SITE_TITLE"), ("index_title", "REFUND_INDEX_TITLE"),
    ]:
        if getattr(admin.site, attribute) == getattr(AdminSite, attribute):
            setattr(admin.site, attribute, lazy(lambda setting=setting: str(getattr(app_settings, setting)), str)())
