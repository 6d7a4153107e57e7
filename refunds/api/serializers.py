"""The API's JSON shapes (DESIGN.md §8), and so its OpenAPI schema.

Requests are checked for shape only: each field's JSON type, required fields, no unknown
fields — a wrong shape is 400. Whether the values are acceptable (a known currency, a positive
amount, an item that can be refunded) is the services' rule, answered 422. Types are strict: an
amount is a JSON integer, never `"12"`, `12.0` or `true`, which DRF's own fields would take.
"""

from __future__ import annotations

from rest_framework import serializers

from ..models import ItemState, RefundReason, RefundStatus

MAX_ITEM_LINES = 1000


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be a JSON integer (minor units), not a string, fraction or boolean."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a JSON string."}

    def __init__(self, **kwargs):
        # Blank or padded values are the services' to judge (422), like any other value.
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no database can store it
            self.fail("invalid")
        return super().to_internal_value(data)  # DRF refuses U+0000 (ProhibitNullCharactersValidator)


class ClosedSerializer(serializers.Serializer):
    """Refuses fields it does not know: a typo (`item` for `items`) must not pass silently."""

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: ["Unknown field."] for name in unknown}  # problems.printable() escapes what needs it
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            detail = error.detail if isinstance(error.detail, dict) else {"non_field_errors": error.detail}
            raise serializers.ValidationError({**detail, **errors}) from None
        if errors:
            raise serializers.ValidationError(errors)
        return value


# --- Requests ---------------------------------------------------------------------------------

class ItemLineRequest(ClosedSerializer):
    sku = StrictCharField(help_text="Up to 64 characters.")
    name = StrictCharField(help_text="Up to 255 characters.")
    amount = StrictIntegerField(help_text="Price of one unit in minor units (cents), above zero.")
    quantity = StrictIntegerField(required=False, default=1, help_text="n makes n items, one per unit. Default 1.")


class OrderRequest(ClosedSerializer):
    reference = StrictCharField(
        help_text="The shop's order reference, unique: 1–64 letters, digits, `.`, `_`, `-`. Creating is idempotent on it.",
    )
    currency = StrictCharField(help_text="Stripe's lower-case ISO code, e.g. `eur`.")
    payment_intent = StrictCharField(help_text="The Stripe PaymentIntent that paid the order, `pi_…`.")
    customer_email = StrictCharField(help_text="The customer's e-mail address.")
    shipping_amount = StrictIntegerField(help_text="Shipping expense in minor units, 0 or more.")
    amount_captured = StrictIntegerField(
        required=False, allow_null=True, default=None,
        help_text="What Stripe captured, in minor units. Default: the items plus shipping. "
        "Given explicitly it may be less (an order-level discount); refunds never exceed it.",
    )
    items = ItemLineRequest(many=True, max_length=MAX_ITEM_LINES, help_text="At least one.")


class RefundSelectionRequest(ClosedSerializer):
    items = serializers.ListField(
        child=StrictIntegerField(), required=False, max_length=MAX_ITEM_LINES,
        help_text="Ids of this order's items. Leave out for every item that can be refunded now.",
    )
    amount = StrictIntegerField(
        required=False,
        help_text="An amount (goodwill) refund in minor units, tied to no item; instead of `items`.",
    )


class RefundRequest(RefundSelectionRequest):
    reason = serializers.ChoiceField(
        choices=RefundReason.choices, required=False, allow_blank=True, default="",
        help_text="Sent to Stripe; optional.",
    )
    note = StrictCharField(
        required=False, allow_blank=True, default="", max_length=2000, help_text="Kept here, not sent to Stripe.",
    )


# --- Answers ----------------------------------------------------------------------------------

class ItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sku = serializers.CharField()
    name = serializers.CharField()
    amount = serializers.IntegerField(help_text="Minor units.")
    state = serializers.ChoiceField(choices=ItemState.choices)


class RefundSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    order = serializers.CharField(source="order.reference", help_text="The order's reference.")
    amount = serializers.IntegerField(help_text="Minor units, items plus shipping.")
    shipping_amount = serializers.IntegerField(help_text="The part of `amount` that is shipping.")
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=RefundStatus.choices)
    failure_reason = serializers.CharField(help_text="Stripe's reason when it failed; empty otherwise.")
    stripe_refund_id = serializers.CharField(allow_null=True, help_text="Null until Stripe has it.")
    items = serializers.PrimaryKeyRelatedField(many=True, read_only=True, pk_field=serializers.IntegerField(), help_text="Item ids; empty for an amount refund.")
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class OrderSerializer(serializers.Serializer):
    """Built from `services.OrderDetail`."""

    reference = serializers.CharField(source="order.reference")
    currency = serializers.CharField(source="order.currency")
    payment_intent = serializers.CharField(source="order.stripe_payment_intent_id")
    customer_email = serializers.CharField(source="order.customer_email")
    shipping_amount = serializers.IntegerField(source="order.shipping_amount")
    amount_captured = serializers.IntegerField(source="captured", help_text="What was captured, minor units.")
    created_at = serializers.DateTimeField(source="order.created_at")
    items = ItemSerializer(many=True)
    refunds = RefundSerializer(many=True)
    refundable_amount = serializers.IntegerField(
        help_text="What may still be refunded: captured minus every refund queued, at Stripe, succeeded or "
        "awaiting approval (Stripe Dashboard refunds included)."
    )


class BlockedItemSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="item.pk")
    sku = serializers.CharField(source="item.sku")
    reason = serializers.CharField(help_text="Why it cannot be refunded now.")


class RefundPreviewSerializer(serializers.Serializer):
    """Built from `services.RefundPreview`."""

    order = serializers.CharField(source="order.reference")
    currency = serializers.CharField(source="order.currency")
    items = ItemSerializer(many=True, help_text="The items the refund would take.")
    blocked = BlockedItemSerializer(many=True, help_text="Requested items that cannot be refunded, with the reason.")
    shipping_amount = serializers.IntegerField(help_text="Shipping that goes with this refund.")
    amount = serializers.IntegerField(help_text="The refund's amount, minor units.")
    available = serializers.IntegerField(help_text="What may still be refunded before this refund.")
    refundable = serializers.BooleanField(source="can_refund", help_text="Whether the request would be accepted now.")
    needs_approval = serializers.BooleanField(help_text="At or above the approval threshold: a second user approves it.")
    problems = serializers.ListField(child=serializers.CharField(), help_text="Why nothing could be refunded.")


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details; `errors` only for bad fields."""

    type = serializers.CharField(help_text="`urn:refunds-oms:problem:<slug>`; dispatch on it.")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(required=False, help_text="The request's path.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text='Field → messages, e.g. {"items.0.amount": ["Must be above zero."]}.',
    )
