"""The OpenAPI 3 schema of /api/v1/ and its Swagger UI page, whatever the host's settings.

drf-spectacular reads global settings; these views patch in the API's own for their request
(its `custom_settings` mechanism), so a host needs no SPECTACULAR_SETTINGS and a host's other
DRF views stay out of this schema. Swagger UI's files come from drf-spectacular-sidecar, served
as static files: the docs page works with no internet access.
"""

from __future__ import annotations

from drf_spectacular.settings import patched_settings
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

DESCRIPTION = """\
Orders in, refunds out: a shop's storefront, returns portal or customer-service tool creates paid
orders, previews and requests refunds, and reads their state.

Authentication: `Authorization: Bearer <token>`, a token from `manage.py create_api_token <username>`;
it acts with that user's Django permissions. Amounts are integers in the currency's minor unit.
Every error is `application/problem+json` (RFC 9457) with a `type` of `urn:refunds-oms:problem:<slug>`.
"""


def only_this_api(endpoints, **kwargs):
    """drf-spectacular preprocessing hook: the endpoints of refunds.api, not the host's."""
    return [endpoint for endpoint in endpoints if getattr(endpoint[3], "cls", None).__module__ == "refunds.api.views"]


API_SCHEMA_SETTINGS = {
    "TITLE": "Refunds OMS API",
    "DESCRIPTION": DESCRIPTION,
    "VERSION": "1",
    "PREPROCESSING_HOOKS": ["refunds.api.schema.only_this_api"],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


class ApiSchemaView(SpectacularAPIView):
    schema = None  # not an endpoint of the API (also for drf-spectacular's `check --deploy`)
    authentication_classes: list = []
    permission_classes = [AllowAny]
    custom_settings = API_SCHEMA_SETTINGS


class ApiDocsView(SpectacularSwaggerView):
    schema = None
    authentication_classes: list = []
    permission_classes = [AllowAny]
    title = API_SCHEMA_SETTINGS["TITLE"]
    url_name = "refunds-api:schema"

    def get(self, request, *args, **kwargs):
        with patched_settings(API_SCHEMA_SETTINGS):
            return super().get(request, *args, **kwargs)
