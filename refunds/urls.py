"""The app's URLs for a host project: `path("", include("refunds.urls"))` (DESIGN.md §8):
the Stripe webhook, /health/ and the REST API under api/v1/."""

from django.urls import include, path

from . import views
from .health import HealthView

urlpatterns: list = [
    path("stripe/webhook/", views.stripe_webhook, name="stripe-webhook"),
    path("health/", HealthView.as_view(), name="health"),
    path("api/v1/", include("refunds.api.urls")),
]
