"""Orders coming in from the shop (DESIGN.md §8): paid orders, validated, one item per unit.

`create_order` is the one way an order enters this system: the REST API, the demo's seeding and
the tests all use it. It is idempotent on `reference`: the same order again returns the stored
one; a different order under a stored reference is a conflict, never an update — an order's
items and amounts are what refunds are checked against.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from .. import selectors
from ..exceptions import InvalidOrder, OrderConflict
from ..models import Order, OrderItem, Refund
from ..money import is_known_currency
from .planning import captured_amount, still_refundable

# A reference is a path segment of the API (`/api/v1/orders/<reference>/`): no slashes, no spaces.
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Stripe's PaymentIntent ids: `pi_` and letters and digits (https://docs.stripe.com/api/payment_intents/object).
PAYMENT_INTENT = re.compile(r"pi_[A-Za-z0-9]{1,252}")
# Stripe's own ceiling for one charge is 99,999,999 minor units in most currencies, higher in a
# few (IDR); anything beyond this is a typo or an attack, and would overflow a bigint once summed.
MAX_AMOUNT = 10**12
# One item row per unit (as an OMS splits them); an order of more units than this is refused.
MAX_UNITS = 1000


@dataclass(frozen=True)
class ItemLine:
    sku: str
    name: str
    amount: int
    quantity: int = 1


@dataclass
class OrderDetail:
    """An order as the API shows it: its items, its refunds and what may still be refunded."""

    order: Order
    items: list[OrderItem]
    refunds: list[Refund]
    captured: int
    refundable_amount: int


def create_order(
    *,
    reference: str,
    currency: str,
    payment_intent: str,
    customer_email: str,
    shipping_amount: int,
    items: Iterable[ItemLine | Mapping[str, Any]],
    amount_captured: int | None = None,
) -> tuple[Order, bool]:
    """Take in a paid order; returns `(order, created)`.

    Raises `InvalidOrder` (every field's problems at once) and writes nothing for bad input;
    `OrderConflict` if `reference` is stored with other content. `amount_captured` defaults to
    the items plus shipping; given explicitly it may be below that (an order-level discount),
    and refunds are then capped at it.
    """
    lines = [line if isinstance(line, ItemLine) else _line(line) for line in items]
    errors = _validate(
        reference=reference, currency=currency, payment_intent=payment_intent, customer_email=customer_email,
        shipping_amount=shipping_amount, lines=lines, amount_captured=amount_captured,
    )
    if errors:
        raise InvalidOrder(errors)
    currency = currency.lower()
    wanted = dict(
        currency=currency, stripe_payment_intent_id=payment_intent, customer_email=customer_email,
        shipping_amount=shipping_amount, amount_captured=amount_captured,
    )
    units = [(line.sku, line.name, line.amount) for line in lines for _ in range(line.quantity)]

    existing = Order.objects.filter(reference=reference).first()
    if existing is not None:
        return _same_or_conflict(existing, wanted, units), False
    try:
        with transaction.atomic():
            order = Order.objects.create(reference=reference, **wanted)
            OrderItem.objects.bulk_create(
                [OrderItem(order=order, sku=sku, name=name, amount=amount) for sku, name, amount in units],
                batch_size=500,
            )
    except IntegrityError:
        # The same reference committed by another request meanwhile (the unique index decided).
        existing = Order.objects.filter(reference=reference).first()
        if existing is None:
            raise
        return _same_or_conflict(existing, wanted, units), False
    return order, True


def _line(data: Mapping[str, Any]) -> ItemLine:
    return ItemLine(
        sku=data.get("sku"), name=data.get("name"), amount=data.get("amount"), quantity=data.get("quantity", 1)
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount_problem(value, *, allow_zero: bool = False) -> str:
    if not _is_int(value):
        return "Must be a whole number of minor units (cents), not a fraction or text."
    if value < 0 or (value == 0 and not allow_zero):
        return "Must be zero or more." if allow_zero else "Must be above zero."
    if value > MAX_AMOUNT:
        return f"Must be at most {MAX_AMOUNT}."
    return ""


def _text_problem(value, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        return "Required."
    if len(value) > max_length:
        return f"At most {max_length} characters."
    return _unstorable(value)


def _unstorable(value: str) -> str:
    # PostgreSQL's text holds neither U+0000 nor a lone surrogate; say so instead of a 500.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Contains a character that cannot be stored (a lone surrogate)."
    if "\x00" in value:
        return "Contains a character that cannot be stored (U+0000)."
    return ""


def _validate(*, reference, currency, payment_intent, customer_email, shipping_amount, lines, amount_captured) -> dict:
    errors: dict[str, list[str]] = {}

    def add(field: str, problem: str):
        if problem:
            errors.setdefault(field, []).append(problem)

    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        add("reference", "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    if not isinstance(currency, str) or not is_known_currency(currency.lower()):
        add("currency", f"Unknown currency {currency!r}; use Stripe's three-letter ISO code, e.g. 'eur'.")
    if not isinstance(payment_intent, str) or not PAYMENT_INTENT.fullmatch(payment_intent):
        add("payment_intent", "A Stripe PaymentIntent id, 'pi_' followed by letters and digits.")
    try:
        validate_email(customer_email)
        if len(customer_email) > 254 or _unstorable(customer_email):  # the column's length (RFC 5321)
            raise ValidationError("too long")
    except (ValidationError, TypeError):
        add("customer_email", "A valid e-mail address of at most 254 characters.")
    add("shipping_amount", _amount_problem(shipping_amount, allow_zero=True))
    if amount_captured is not None:
        add("amount_captured", _amount_problem(amount_captured))

    if not lines:
        add("items", "At least one item.")
    for index, line in enumerate(lines):
        add(f"items.{index}.sku", _text_problem(line.sku, 64))
        add(f"items.{index}.name", _text_problem(line.name, 255))
        add(f"items.{index}.amount", _amount_problem(line.amount))
        if not _is_int(line.quantity) or line.quantity < 1:
            add(f"items.{index}.quantity", "Must be a whole number, 1 or more.")
    quantities = [line.quantity for line in lines if _is_int(line.quantity) and line.quantity > 0]
    if sum(quantities) > MAX_UNITS:
        add("items", f"At most {MAX_UNITS} units in one order; this one has {sum(quantities)}.")
    return errors


def _same_or_conflict(order: Order, wanted: dict, units: list[tuple[str, str, int]]) -> Order:
    stored_items = list(order.items.order_by("pk"))
    differences = [
        field for field, value in wanted.items()
        if field != "amount_captured" and getattr(order, field) != value
    ]
    requested_captured = wanted["amount_captured"]
    if requested_captured is None:
        requested_captured = sum(amount for _, _, amount in units) + wanted["shipping_amount"]
    if captured_amount(order, stored_items) != requested_captured:
        differences.append("amount_captured")
    if Counter((item.sku, item.name, item.amount) for item in stored_items) != Counter(units):
        differences.append("items")
    if differences:
        raise OrderConflict(
            f"Order {order.reference} exists with other content ({', '.join(differences)}); an order is never "
            "changed once taken in. Use another reference for another order."
        )
    return order


def order_by_reference(reference: str) -> Order:
    """The order with this reference; `Order.DoesNotExist` for anything else, also for text that
    is no reference at all (a URL may carry U+0000, which PostgreSQL refuses in a query)."""
    if not REFERENCE.fullmatch(reference):
        # Older orders may predate the rule; only what no column can hold is refused unasked.
        if _unstorable(reference) or len(reference) > 64:
            raise Order.DoesNotExist(f"No order with reference {reference!r}.")
    return Order.objects.get(reference=reference)


def order_detail(order: Order | str) -> OrderDetail:
    """The order (or the one with this reference: `Order.DoesNotExist` if none), its items,
    refunds and what may still be refunded — by the rule refund requests apply: captured minus
    every live refund (queued, pending, succeeded, awaiting approval; Stripe Dashboard refunds
    included). Three queries, or four with a reference."""
    if not isinstance(order, Order):
        order = order_by_reference(order)
    items = list(order.items.order_by("pk"))
    refunds = list(order.refunds.order_by("created_at", "pk").prefetch_related("items"))
    for refund in refunds:
        refund.order = order
    captured = captured_amount(order, items)
    committed = selectors.live_refunds_among(refunds).committed(order)
    return OrderDetail(
        order=order, items=items, refunds=refunds, captured=captured,
        refundable_amount=still_refundable(captured=captured, committed=committed),
    )
