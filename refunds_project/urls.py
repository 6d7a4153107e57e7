from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from refunds.health import health_view

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("health/", health_view, name="health"),
    path("", include("refunds.urls")),
]
