"""The app's URLs for a host project: `path("", include("refunds.urls"))` (DESIGN.md §8)."""

from django.urls import path

from . import views
from .health import HealthView

urlpatterns: list = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe-webhook"),
    path("health/", HealthView.as_view(), name="health"),
]
