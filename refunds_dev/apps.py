from django.apps import AppConfig


class RefundsDevConfig(AppConfig):
    """Demo and test tooling: never installed in production (refunds_project.settings)."""

    name = "refunds_dev"
    verbose_name = "Refunds (development tools)"
