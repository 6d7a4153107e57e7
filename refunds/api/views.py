"""The REST API's endpoints (DESIGN.md §8). Each parses its input, calls one service and shapes
the answer; the rules, and every refusal's wording, are the services' (`refunds.services`)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..conf import app_settings
from ..models import Order, Refund
from . import idempotency
from .authentication import BearerTokenAuthentication
from .permissions import HasRequiredPermission
from .problems import CONTENT_TYPE, Problem, exception_handler
from .serializers import (
    OrderRequest,
    OrderSerializer,
    ProblemSerializer,
    RefundPreviewSerializer,
    RefundRequest,
    RefundSelectionRequest,
    RefundSerializer,
)
from .throttling import PerTokenRateThrottle

MAX_ID = 2**63 - 1  # a bigint: a larger id in a URL is simply not one of ours


class ApiJSONParser(JSONParser):
    """DRF's JSON parser, except that JSON nested deeper than Python's recursion limit (a few
    hundred bytes of `[[[[…`) is a 400 like any other malformed body, not a RecursionError (500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


def problems(*statuses: int) -> dict:
    descriptions = {
        400: "Malformed JSON, a wrong type, a missing or unknown field.",
        401: "No token, or an unknown or revoked one.",
        403: "The token's user lacks the permission.",
        404: "No such order or refund.",
        405: "Method not allowed.",
        406: "The `Accept` header asks for something other than JSON.",
        409: "A conflict (see the endpoint).",
        413: "The body is larger than REFUND_API_MAX_BODY_BYTES.",
        415: "The body is not `application/json`.",
        422: "Well-formed but not acceptable; `detail` says why.",
        429: "Over the token's rate; see `Retry-After`.",
    }
    return {
        (code, CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description=descriptions[code]) for code in statuses
    }


def documented(**schema):
    """drf-spectacular's `extend_schema` on a view method, based on drf-spectacular's AutoSchema
    whatever the host's REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] says."""

    def decorator(method):
        method.schema = AutoSchema
        return extend_schema(**schema)(method)

    return decorator


COMMON = (401, 403, 405, 406, 429)
WITH_BODY = (400, 413, 415)


class ApiView(APIView):
    """Bearer tokens, one permission per endpoint, a rate per token, JSON in and out, problem
    details for every error — set here rather than in the host's REST_FRAMEWORK settings, so the
    API behaves the same in any project."""

    authentication_classes = [BearerTokenAuthentication]
    permission_classes = [HasRequiredPermission]
    throttle_classes = [PerTokenRateThrottle]
    parser_classes = [ApiJSONParser]
    renderer_classes = [JSONRenderer]
    schema = AutoSchema()
    required_permission: str | None = None

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        # Refused on Content-Length, before the body is read or parsed.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise Problem("invalid-request", "Content-Length is not a number.") from None
        limit = app_settings.REFUND_API_MAX_BODY_BYTES
        if length > limit:
            raise Problem("payload-too-large", f"The body has {length} bytes; at most {limit} are accepted.")
        super().initial(request, *args, **kwargs)

    def parsed(self, serializer_class, request):
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def order_or_404(reference: str) -> Order:
    try:
        return services.order_by_reference(reference)
    except Order.DoesNotExist:
        raise Problem("not-found", f"No order with reference {reference!r}.") from None


def order_answer(detail: services.OrderDetail, *, status_code: int) -> Response:
    response = Response(OrderSerializer(detail).data, status=status_code)
    response["Location"] = reverse("refunds-api:order", args=[detail.order.reference])
    return response


class OrdersView(ApiView):
    required_permission = "refunds.add_order"

    @documented(
        operation_id="create_order",
        summary="Create a paid order",
        description="Idempotent on `reference`: the same order again answers 200 with the stored order; "
        "other content under a stored reference answers 409. `quantity` n makes n items, one per unit.",
        request=OrderRequest,
        responses={
            201: OrderSerializer, 200: OpenApiResponse(OrderSerializer, description="The same order, already stored."),
            **problems(*WITH_BODY, *COMMON, 409, 422),
        },
        examples=[OpenApiExample("An order", request_only=True, value={
            "reference": "DE-1001", "currency": "eur", "payment_intent": "pi_3Q0abc", "customer_email": "mia@example.com",
            "shipping_amount": 495, "items": [{"sku": "SHIRT-M", "name": "Linen shirt, M", "amount": 4990, "quantity": 2}],
        })],
        tags=["orders"],
    )
    def post(self, request):
        data = self.parsed(OrderRequest, request)
        order, created = services.create_order(**data)
        return order_answer(
            services.order_detail(order), status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class OrderView(ApiView):
    required_permission = "refunds.view_order"

    @documented(
        operation_id="get_order",
        summary="An order, its items and refunds, and what may still be refunded",
        responses={200: OrderSerializer, **problems(*COMMON, 404)},
        tags=["orders"],
    )
    def get(self, request, reference):
        try:
            detail = services.order_detail(reference)
        except Order.DoesNotExist:
            raise Problem("not-found", f"No order with reference {reference!r}.") from None
        return order_answer(detail, status_code=status.HTTP_200_OK)


class RefundPreviewView(ApiView):
    required_permission = "refunds.view_order"

    @documented(
        operation_id="preview_refund",
        summary="What a refund would do, writing nothing",
        description="The same rules as the Back Office's confirmation page: which items, which cannot be refunded "
        "and why, the shipping that goes with it, the amount, and whether it needs approval.",
        request=RefundSelectionRequest,
        responses={200: RefundPreviewSerializer, **problems(*WITH_BODY, *COMMON, 404, 422)},
        tags=["refunds"],
    )
    def post(self, request, reference):
        order = order_or_404(reference)
        data = self.parsed(RefundSelectionRequest, request)
        preview = services.preview_order_refund(order=order, items=data.get("items"), amount=data.get("amount"))
        return Response(RefundPreviewSerializer(preview).data)


class OrderRefundsView(ApiView):
    required_permission = "refunds.refund_orderitem"

    @documented(
        operation_id="request_refund",
        summary="Refund items of an order, or an amount",
        description="`items` (ids; left out: every item that can be refunded now) or `amount` (a goodwill refund "
        "tied to no item). The refund is queued for Stripe, or awaits a second user's approval at or above the "
        "currency's threshold. Nothing is written when the answer is an error.",
        request=RefundRequest,
        parameters=[OpenApiParameter(
            idempotency.HEADER, str, OpenApiParameter.HEADER, required=False,
            description="Any unique string (a UUID): the same key with the same request answers the first answer "
            "again (header `Idempotent-Replayed: true`) and makes no second refund; with another request, 409. "
            "Keys are per token.",
        )],
        responses={201: RefundSerializer, **problems(*WITH_BODY, *COMMON, 404, 409, 422)},
        tags=["refunds"],
    )
    def post(self, request, reference):
        order = order_or_404(reference)
        data = self.parsed(RefundRequest, request)
        key = request.headers.get(idempotency.HEADER)

        def answer() -> Response:
            refund = services.refund_order(
                order=order, user=request.user, items=data.get("items"), amount=data.get("amount"),
                reason=data["reason"], note=data["note"],
            )
            return Response(RefundSerializer(refund).data, status=status.HTTP_201_CREATED)

        if key is None:
            response = answer()
        else:
            response = idempotency.answer_once(
                token=request.auth, key=idempotency.check_key(key), fingerprint=idempotency.request_hash(request),
                answer=answer, refund_of=lambda answered: answered.data["id"],
            )
        response["Location"] = reverse("refunds-api:refund", args=[response.data["id"]])
        return response


class RefundView(ApiView):
    required_permission = "refunds.view_refund"

    @documented(
        operation_id="get_refund",
        summary="One refund and where it stands",
        responses={200: RefundSerializer, **problems(*COMMON, 404)},
        tags=["refunds"],
    )
    def get(self, request, refund_id: str):
        pk = int(refund_id) if refund_id.isascii() and refund_id.isdigit() and len(refund_id) < 20 else None
        refund = None
        if pk is not None and pk <= MAX_ID:
            refund = Refund.objects.select_related("order").prefetch_related("items").filter(pk=pk).first()
        if refund is None:
            raise Problem("not-found", f"No refund {refund_id!r}.")
        return Response(RefundSerializer(refund).data)
