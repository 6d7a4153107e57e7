from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from refunds.two_factor import BackOfficeLoginForm

# The Back Office login asks users who may refund for a TOTP code when REFUND_REQUIRE_2FA is on.
admin.site.login_form = BackOfficeLoginForm
admin.site.login_template = "admin/refunds/login.html"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("refunds.urls")),
]
