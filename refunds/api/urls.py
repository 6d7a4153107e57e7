"""/api/v1/ (DESIGN.md §8), included by refunds.urls."""

from django.urls import path, re_path

from . import views
from .problems import not_found
from .schema import ApiDocsView, ApiSchemaView

app_name = "refunds-api"

urlpatterns = [
    path("orders/", views.OrdersView.as_view(), name="orders"),
    path("orders/<str:reference>/", views.OrderView.as_view(), name="order"),
    path("orders/<str:reference>/refunds/", views.OrderRefundsView.as_view(), name="order-refunds"),
    path("orders/<str:reference>/refunds/preview/", views.RefundPreviewView.as_view(), name="refund-preview"),
    path("refunds/<str:refund_id>/", views.RefundView.as_view(), name="refund"),
    path("schema/", ApiSchemaView.as_view(), name="schema"),
    path("docs/", ApiDocsView.as_view(), name="docs"),
    # Anything else under /api/v1/ is a 404 problem, not Django's HTML page (nor a slash redirect).
    re_path(r"^.*$", not_found),
]
