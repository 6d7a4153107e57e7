"""The API's OpenAPI 3 schema and docs page (DESIGN.md §8), and problem details for the errors
no endpoint raises itself: unknown paths, wrong methods, wrong media types."""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.urls import URLPattern, URLResolver
from openapi_spec_validator import validate

from refunds.api import urls as api_urls

from .api_helpers import api_token, get, post, problem
from .conftest import page_of

pytestmark = pytest.mark.django_db
NOT_ENDPOINTS = {"schema", "docs", None}  # the schema, its page, and the catch-all 404


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def openapi_path(pattern: URLPattern) -> str:
    """`orders/<str:reference>/` → `/api/v1/orders/{reference}/`."""
    return "/api/v1/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))


def api_endpoints() -> list[URLPattern]:
    patterns = [p for p in api_urls.urlpatterns if p.name not in NOT_ENDPOINTS]
    assert all(not isinstance(p, URLResolver) for p in patterns)
    return patterns


def test_the_schema_is_valid_openapi_3(schema):
    validate(schema)
    assert schema["openapi"].startswith("3.")


def test_every_url_under_api_v1_is_in_the_schema_with_its_methods(schema):
    endpoints = api_endpoints()
    assert len(endpoints) == 5
    for pattern in endpoints:
        path = openapi_path(pattern)
        assert path in schema["paths"], (path, sorted(schema["paths"]))
        view = pattern.callback.view_class
        declared = {method for method in ("get", "post", "put", "patch", "delete") if hasattr(view, method)}
        assert set(schema["paths"][path]) - {"parameters"} == declared, path
    assert set(schema["paths"]) == {openapi_path(p) for p in endpoints}  # and nothing else (no host views)


def test_every_operation_needs_the_bearer_token_and_documents_its_errors_as_problems(schema):
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"bearerAuth": []}], (path, method)
            errors = {code: response for code, response in operation["responses"].items() if int(code) >= 400}
            assert {"401", "403", "429"} <= set(errors), (path, method)
            for code, response in errors.items():
                assert list(response["content"]) == ["application/problem+json"], (path, method, code)
                assert response["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_the_schema_names_every_field_of_design_section_8(schema):
    components = schema["components"]["schemas"]
    assert set(components["OrderRequestRequest"]["properties"]) == {
        "reference", "currency", "payment_intent", "customer_email", "shipping_amount", "amount_captured", "items",
    }
    assert set(components["ItemLineRequestRequest"]["properties"]) == {"sku", "name", "amount", "quantity"}
    assert {"id", "sku", "name", "amount", "state"} <= set(components["Item"]["properties"])
    assert {"items", "refunds", "refundable_amount"} <= set(components["Order"]["properties"])
    assert {"items", "blocked", "shipping_amount", "amount"} <= set(components["RefundPreview"]["properties"])
    assert {"items", "amount", "reason", "note"} == set(components["RefundRequestRequest"]["properties"])
    assert {"id", "order", "amount", "currency", "status", "failure_reason", "stripe_refund_id", "items", "created_at"} <= set(
        components["Refund"]["properties"]
    )
    request_refund = schema["paths"]["/api/v1/orders/{reference}/refunds/"]["post"]
    assert [(p["name"], p["in"]) for p in request_refund["parameters"] if p["in"] == "header"] == [("Idempotency-Key", "header")]
    assert {"201", "409", "422"} <= set(request_refund["responses"])


def test_the_docs_page_renders_with_assets_served_from_here(client):
    response = client.get("/api/v1/docs/")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = page_of(response)
    assets = [el.attrs.get("src") or el.attrs.get("href") for el in page.find_all() if el.tag in ("script", "link")]
    assets = [asset for asset in assets if asset]
    assert len(assets) >= 3
    for asset in assets:
        assert asset.startswith("/static/drf_spectacular_sidecar/"), asset  # no CDN: works offline
        assert finders.find(asset.removeprefix("/static/")), asset
    assert "/api/v1/schema/" in response.content.decode()


def test_an_unknown_path_under_api_v1_is_a_404_problem(client):
    token = api_token()
    for url in ("/api/v1/", "/api/v1/nothing/", "/api/v1/orders", "/api/v1/orders/X/refunds/preview/more/"):
        body = problem(get(client, url, token), 404, "not-found")
        assert body["instance"] == url
    assert "ends with a slash" in problem(post(client, "/api/v1/orders", {}, token), 404)["detail"]


def test_a_wrong_method_is_a_405_problem(client):
    token = api_token()
    for method, url in (("get", "/api/v1/orders/"), ("put", "/api/v1/orders/X/"), ("delete", "/api/v1/refunds/1/"),
                        ("get", "/api/v1/orders/X/refunds/")):
        response = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Bearer {token}")
        problem(response, 405, "method-not-allowed")


def test_an_unacceptable_accept_header_is_a_406_problem(client):
    problem(get(client, "/api/v1/orders/X/", api_token(), HTTP_ACCEPT="text/html"), 406, "not-acceptable")


def test_a_host_without_the_api_apps_is_warned(settings):
    from django.core.checks import run_checks

    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "drf_spectacular_sidecar"]
    [warning] = [message for message in run_checks() if message.id == "refunds.W030"]
    assert "drf_spectacular_sidecar" in warning.msg
