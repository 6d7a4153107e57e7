"""The webhook's hot path: a refund and its items, locked and read in one query.

`record_stripe_view` would read them in two (the refund, then its items with each item's latest
refund); at hundreds of events a second each round trip and each query Django builds counts
(bench/webhook.py). The SQL is built once, from the models, at first use.

The lock order stays the one of every path (refunds/services/__init__.py): PostgreSQL locks
the rows of a `SELECT … FOR NO KEY UPDATE` as it returns them, after sorting, so the refund is
locked with the first row, then the items by primary key. The order is not locked: a Back
Office refund's status moves its items, not its order (stripe_view.apply_refund_status).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from django.db import connection

from ..models import Order, OrderItem, Refund

RefundItem = Refund.items.through


@contextmanager
def prepared_cursor():
    """A cursor whose statements PostgreSQL can plan once per connection: Django's psycopg cursors
    bind parameters on the client, so the server parses and plans every statement anew (0.8 ms
    for the lock query below, on every event). psycopg's own cursor binds on the server and, when
    the database's OPTIONS set `prepare_threshold` (DATABASE_PREPARE_THRESHOLD; Django leaves it
    off for connection poolers), prepares a statement run that many times. Queries are still
    logged as Django's are."""
    if connection.vendor != "postgresql" or not hasattr(connection.Database, "Cursor"):
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    raw = connection.Database.Cursor(connection.connection)
    cursor = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    try:
        yield cursor
    finally:
        raw.close()


@dataclass(frozen=True)
class LockedRefund:
    refund: Refund  # with `order` attached
    items: list[OrderItem]  # locked, by primary key, each with `latest_refund_id`


def _columns(model, alias: str) -> tuple[list[str], str]:
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    return [field.attname for field in fields], ", ".join(f"{alias}.{quote(field.column)}" for field in fields)


def _converters(*models) -> list[tuple[int, list, object]]:
    """Django's converters of each column (SQLite returns dates as text, for one), as the ORM
    applies them: (position, converters, expression)."""
    out, position = [], 0
    for model in models:
        for field in model._meta.concrete_fields:
            column = field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if found:
                out.append((position, found, column))
            position += 1
    return out


@cache
def _query() -> tuple[str, list[str], list[str], list[str], list]:
    quote = connection.ops.quote_name
    refund_names, refund_sql = _columns(Refund, "r")
    order_names, order_sql = _columns(Order, "o")
    item_names, item_sql = _columns(OrderItem, "i")
    links = quote(RefundItem._meta.db_table)
    lock = " FOR NO KEY UPDATE OF r, i" if connection.features.has_select_for_update_of else ""
    sql = (
        f"SELECT {refund_sql}, {order_sql}, {item_sql}, "
        f"(SELECT MAX(l2.refund_id) FROM {links} l2 WHERE l2.orderitem_id = i.id) "
        f"FROM {quote(Refund._meta.db_table)} r "
        f"JOIN {quote(Order._meta.db_table)} o ON o.id = r.order_id "
        f"JOIN {links} l ON l.refund_id = r.id "
        f"JOIN {quote(OrderItem._meta.db_table)} i ON i.id = l.orderitem_id "
        f"WHERE r.stripe_refund_id = %s ORDER BY i.id{lock}"
    )
    return sql, refund_names, order_names, item_names, _converters(Refund, Order, OrderItem)


def refund_with_items(stripe_refund_id: str) -> LockedRefund | None:
    """Our refund known by this Stripe id, with its order and its items, locked; None if there
    is no such refund or it has no items (an amount or Dashboard refund: the general path)."""
    sql, refund_names, order_names, item_names, converters = _query()
    with prepared_cursor() as cursor:
        cursor.execute(sql, [stripe_refund_id])
        rows = [_converted(row, converters) for row in cursor.fetchall()]
    if not rows:
        return None
    db = connection.alias
    first = rows[0]
    refund_end, order_end = len(refund_names), len(refund_names) + len(order_names)
    refund = Refund.from_db(db, refund_names, first[:refund_end])
    refund.order = Order.from_db(db, order_names, first[refund_end:order_end])
    items = []
    for row in rows:
        item = OrderItem.from_db(db, item_names, row[order_end:-1])
        item.latest_refund_id = row[-1]
        item.order = refund.order
        items.append(item)
    return LockedRefund(refund=refund, items=items)


def _converted(row, converters) -> list:
    row = list(row)
    for position, found, expression in converters:
        for converter in found:
            row[position] = converter(row[position], expression, connection)
    return row
