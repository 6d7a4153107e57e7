"""Every API error as `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`,
`instance`, and for bad fields `errors` ({"items.0.amount": ["Must be above zero."]}).

DRF's exceptions (parse errors, authentication, permissions, throttling, 405, 415), ours
(`RefundError` and its family), a missing row and an unknown URL under /api/v1/ all end here;
an unexpected error is logged and answered 500 as a problem too, never an HTML page.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..exceptions import InvalidOrder, OrderConflict, RefundError

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:refunds-oms:problem:"

# slug → (status, title). The slug is the stable part of `type`; clients dispatch on it.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "The request is not valid"),
    "authentication-required": (401, "A valid API token is required"),
    "permission-denied": (403, "Permission denied"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "not-acceptable": (406, "Not acceptable"),
    "order-conflict": (409, "An order with this reference exists with other content"),
    "idempotency-key-reused": (409, "The Idempotency-Key was used with another request"),
    "payload-too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "invalid-order": (422, "The order cannot be taken in"),
    "not-refundable": (422, "The refund cannot be made"),
    "rate-limited": (429, "Too many requests"),
    "server-error": (500, "Internal error"),
}

DRF_SLUGS = {
    exceptions.ParseError: "invalid-request",
    exceptions.ValidationError: "invalid-request",
    exceptions.AuthenticationFailed: "authentication-required",
    exceptions.NotAuthenticated: "authentication-required",
    exceptions.PermissionDenied: "permission-denied",
    exceptions.NotFound: "not-found",
    exceptions.MethodNotAllowed: "method-not-allowed",
    exceptions.NotAcceptable: "not-acceptable",
    exceptions.UnsupportedMediaType: "unsupported-media-type",
    exceptions.Throttled: "rate-limited",
}


class Problem(exceptions.APIException):
    """An error of ours with its problem slug, raised by the API's own code."""

    def __init__(self, slug: str, detail: str):
        self.slug = slug
        self.status_code = PROBLEMS[slug][0]
        super().__init__(detail)


def printable(text) -> str:
    """A message that quotes what the client sent may hold a lone surrogate (JSON's "\ud800"),
    which cannot be encoded as UTF-8: it is written as its escape instead."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def problem_body(slug: str, detail: str, *, instance: str = "", status_code: int | None = None, **extra) -> dict:
    default_status, title = PROBLEMS[slug]
    detail = printable(detail)
    body = {"type": TYPE_PREFIX + slug, "title": title, "status": status_code or default_status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(slug: str, detail: str, *, request=None, headers=None, status_code=None, **extra) -> Response:
    body = problem_body(slug, detail, instance=request.path if request is not None else "", status_code=status_code, **extra)
    return Response(body, status=body["status"], headers=headers, content_type=CONTENT_TYPE)


def flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"items.0.amount": ["…"]}; top-level errors under `non_field_errors`."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            flat.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(detail, list) and any(isinstance(value, (dict, list)) for value in detail):
        flat = {}
        for index, value in enumerate(detail):
            if value:
                flat.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {printable(prefix or "non_field_errors"): [printable(message) for message in messages]}


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER for the API's views (set on the views, not globally)."""
    request = context.get("request")
    headers = {}
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait) + (0 if float(exc.wait).is_integer() else 1))
    set_rollback()

    if isinstance(exc, Problem):
        return problem_response(exc.slug, str(exc.detail), request=request, headers=headers)
    if isinstance(exc, exceptions.ValidationError):
        return problem_response(
            "invalid-request", "Some fields are missing or have the wrong type; see `errors`.",
            request=request, errors=flatten_errors(exc.detail),
        )
    if isinstance(exc, exceptions.APIException):
        slug = next((slug for cls, slug in DRF_SLUGS.items() if isinstance(exc, cls)), "invalid-request")
        # A 401 turned into 403 by DRF (no authenticate header) keeps its status.
        return problem_response(slug, str(exc.detail), request=request, headers=headers, status_code=exc.status_code)
    if isinstance(exc, InvalidOrder):
        return problem_response("invalid-order", str(exc), request=request, errors=exc.errors)
    if isinstance(exc, OrderConflict):
        return problem_response("order-conflict", str(exc), request=request)
    if isinstance(exc, RefundError):
        return problem_response("not-refundable", str(exc), request=request)
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        return problem_response("not-found", str(exc) or "Not found.", request=request)
    if isinstance(exc, DjangoPermissionDenied):
        return problem_response("permission-denied", str(exc) or "Permission denied.", request=request)
    logger.exception("API error on %s", request.path if request is not None else "?", exc_info=exc)
    return problem_response("server-error", "An internal error occurred; it is logged.", request=request)


def not_found(request, *args, **kwargs):
    """Any URL under /api/v1/ that no endpoint answers (a plain Django view: no authentication)."""
    detail = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        detail += " Every API path ends with a slash."
    body = problem_body("not-found", detail, instance=request.path)
    return JsonResponse(body, status=404, content_type=CONTENT_TYPE)
