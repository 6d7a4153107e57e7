"""The webhook's hot path: a refund and its items locked and read in one query, and the
writes of an event sent as one statement.

`record_stripe_view` would read the refund and its items in two queries (the refund, then its
items with each item's latest refund); at hundreds of events a second each round trip and each
query Django builds counts (bench/webhook.py). The SQL is built once, from the models, at first
use.

The lock order stays the one of every path (refunds/services/__init__.py): PostgreSQL locks
the rows of a `SELECT … FOR NO KEY UPDATE` as it returns them, after sorting, so the refund is
locked with the first row, then the items by primary key. The order is not locked: a Back
Office refund's status moves its items, not its order (stripe_view.apply_refund_status).

Round trips, on PostgreSQL: four per event (BEGIN, the event's INSERT with the lock query,
the writes, COMMIT), where the same writes made one at a time take seven: `insert_and_lock`
runs the INSERT in a WITH of the lock query, and `batched_transaction` holds back the writes
whose result nobody reads (`write`: the refund's view, the items' state, the audit rows) and
sends them as one statement before the COMMIT. Elsewhere (SQLite) each statement runs when it
is made.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from ..models import Order, OrderItem, Refund

RefundItem = Refund.items.through


def default_connection():
    """The default connection itself: each attribute read through `django.db.connection` looks
    the connection up again (an asgiref Local), which the hot path does dozens of times."""
    return connections[DEFAULT_DB_ALIAS]


@contextmanager
def prepared_cursor(db=None):
    """A cursor whose statements PostgreSQL can plan once per connection: Django's psycopg cursors
    bind parameters on the client, so the server parses and plans every statement anew (0.8 ms
    for the lock query below, on every event). psycopg's own cursor binds on the server and, when
    the database's OPTIONS set `prepare_threshold` (DATABASE_PREPARE_THRESHOLD; Django leaves it
    off for connection poolers), prepares a statement run that many times. Queries are still
    logged as Django's are."""
    db = db or default_connection()
    if db.vendor != "postgresql" or not hasattr(db.Database, "Cursor"):
        with db.cursor() as cursor:
            yield cursor
        return
    db.ensure_connection()
    raw = db.Database.Cursor(db.connection)
    cursor = db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)
    try:
        yield cursor
    finally:
        raw.close()


# --- Writes held back until COMMIT -------------------------------------------------------------


@dataclass
class _HeldWrites:
    """Writes of one transaction not sent yet: sent before any other statement runs (as an
    execute wrapper), or at the end of the transaction's block."""

    db: object
    statements: list = field(default_factory=list)
    sending: bool = False

    def __call__(self, execute, sql, params, many, context):
        if self.statements and not self.sending:
            self.send()
        return execute(sql, params, many, context)

    def send(self) -> None:
        held, self.statements = self.statements, []
        self.sending = True
        try:
            with prepared_cursor(self.db) as cursor:
                for sql, params in _joined(held):
                    cursor.execute(sql, params)
        finally:
            self.sending = False


# The table an UPDATE or INSERT writes.
_TARGET = re.compile(r"\s*(?:UPDATE|INSERT\s+INTO)\s+(\S+)", re.IGNORECASE)


def _joined(held: list) -> list:
    """Consecutive writes to different tables as one statement, `WITH w0 AS (…), w1 AS (…) last`:
    PostgreSQL runs each part once and to completion (https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING),
    all on one snapshot, so that no part sees another's rows. Hence only writes to different
    tables are joined: no row is written twice in one statement, and no part reads what another
    writes. A second write to a table starts the next statement."""
    statements, group, tables = [], [], set()
    for sql, params in held:
        target = _TARGET.match(sql)
        table = target.group(1).replace('"', "").lower().rsplit(".", 1)[-1] if target else None
        if group and (table is None or table in tables):
            statements.append(_with(group))
            group, tables = [], set()
        if table is None:  # not a plain UPDATE or INSERT: alone
            statements.append((sql, params))
            continue
        group.append((sql, params))
        tables.add(table)
    if group:
        statements.append(_with(group))
    return statements


def _with(group: list) -> tuple[str, list]:
    if len(group) == 1:
        return group[0]
    *parts, (last_sql, last_params) = group
    sql = "WITH " + ", ".join(f"w{n} AS ({part})" for n, (part, _) in enumerate(parts)) + " " + last_sql
    return sql, [param for _, params in parts for param in params] + list(last_params)


_held: ContextVar[_HeldWrites | None] = ContextVar("refunds_held_writes", default=None)


def write(sql: str, params: list) -> None:
    """Run an UPDATE or INSERT whose result (row count included) nobody reads; inside
    `batched_transaction` it is held back and joined with the writes that follow it."""
    held = _held.get()
    if held is not None:
        held.statements.append((sql, params))
        return
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)


@contextmanager
def batched_transaction():
    """`transaction.atomic()` whose writes made through `write` are held back and sent as one
    statement (`_joined`) before the COMMIT, or before any other statement that runs first, so
    that every read sees them. An error in a held write is raised where it is sent, inside the
    block's transaction, which rolls back whole. On PostgreSQL; elsewhere plain `atomic()`
    (SQLite has no writing WITH)."""
    db = default_connection()
    if db.vendor != "postgresql":
        with transaction.atomic():
            yield
        return
    held = _HeldWrites(db)
    token = _held.set(held)
    try:
        with transaction.atomic(), db.execute_wrapper(held):
            yield
            _held.reset(token)
            token = None
            if held.statements:
                held.send()
    finally:
        if token is not None:
            _held.reset(token)


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


@dataclass(frozen=True)
class _LockQuery:
    """The lock query, and how to read its rows back into models."""

    columns: str  # the select list: refund, order, item, each item's latest refund
    tables: str  # FROM … to the end: joins, WHERE, ORDER BY, the lock
    refund_names: list[str]
    order_names: list[str]
    item_names: list[str]
    converters: list

    @property
    def sql(self) -> str:
        return f"SELECT {self.columns} FROM {self.tables}"


@cache
def _query() -> _LockQuery:
    quote = connection.ops.quote_name
    refund_names, refund_sql = _columns(Refund, "r")
    order_names, order_sql = _columns(Order, "o")
    item_names, item_sql = _columns(OrderItem, "i")
    links = quote(RefundItem._meta.db_table)
    lock = " FOR NO KEY UPDATE OF r, i" if connection.features.has_select_for_update_of else ""
    return _LockQuery(
        columns=(
            f"{refund_sql}, {order_sql}, {item_sql}, "
            f"(SELECT MAX(l2.refund_id) FROM {links} l2 WHERE l2.orderitem_id = i.id)"
        ),
        tables=(
            f"{quote(Refund._meta.db_table)} r "
            f"JOIN {quote(Order._meta.db_table)} o ON o.id = r.order_id "
            f"JOIN {links} l ON l.refund_id = r.id "
            f"JOIN {quote(OrderItem._meta.db_table)} i ON i.id = l.orderitem_id "
            f"WHERE r.stripe_refund_id = %s ORDER BY i.id{lock}"
        ),
        refund_names=refund_names, order_names=order_names, item_names=item_names,
        converters=_converters(Refund, Order, OrderItem),
    )


def refund_with_items(stripe_refund_id: str) -> LockedRefund | None:
    """Our refund known by this Stripe id, with its order and its items, locked; None if there
    is no such refund or it has no items (an amount or Dashboard refund: the general path)."""
    with prepared_cursor() as cursor:
        cursor.execute(_query().sql, [stripe_refund_id])
        return _locked(cursor.fetchall())


def insert_and_lock(insert_sql: str, insert_params: list, stripe_refund_id: str | None,
                    *, find_sql: str, find_params: list) -> tuple[tuple, LockedRefund | None]:
    """Run an INSERT … RETURNING and `refund_with_items(stripe_refund_id)` (skipped for None):
    the returned row and the locked refund. On PostgreSQL one statement does both (the INSERT
    in a WITH, which runs whether or not the lock query finds rows; `find_sql` reads the new
    row back when it finds none). A unique-key error in the INSERT (a second delivery) fails
    the statement: nothing is locked or read."""
    db = default_connection()
    with prepared_cursor(db) as cursor:
        if stripe_refund_id is None or db.vendor != "postgresql":
            cursor.execute(insert_sql, insert_params)
            row = cursor.fetchone()
            if stripe_refund_id is None:
                return row, None
            cursor.execute(_query().sql, [stripe_refund_id])
            return row, _locked(cursor.fetchall())
        cursor.execute(_inserting_query(insert_sql), [*insert_params, stripe_refund_id])
        rows = cursor.fetchall()
        if not rows:
            cursor.execute(find_sql, find_params)
            return cursor.fetchone(), None
        return rows[0][:2], _locked([row[2:] for row in rows])


@cache
def _inserting_query(insert_sql: str) -> str:
    """The lock query with an INSERT … RETURNING (two columns) before it, in one statement."""
    query = _query()
    return f"WITH inserted AS ({insert_sql}) SELECT inserted.*, {query.columns} FROM inserted, {query.tables}"


def _locked(rows) -> LockedRefund | None:
    if not rows:
        return None
    query = _query()
    refund_names, order_names, item_names = query.refund_names, query.order_names, query.item_names
    rows = [_converted(row, query.converters) for row in rows]
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
    db = default_connection()
    for position, found, expression in converters:
        for converter in found:
            row[position] = converter(row[position], expression, db)
    return row
