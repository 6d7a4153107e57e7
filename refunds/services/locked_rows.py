"""The webhook's hot path: a refund and its items locked and read in one query, and the
statements of an event sent in three round trips where one at a time takes seven.

`record_stripe_view` would read the refund and its items in two queries (the refund, then its
items with each item's latest refund); at hundreds of events a second each round trip and each
query Django builds counts (bench/webhook.py). The SQL is built once, from the models, at first
use.

The lock order stays the one of every path (refunds/services/__init__.py): PostgreSQL locks
the rows of a `SELECT … FOR NO KEY UPDATE` as it returns them, after sorting, so the refund is
locked with the first row, then the items by primary key. The order is not locked: a Back
Office refund's status moves its items, not its order (stripe_view.apply_refund_status).

Round trips, on PostgreSQL with psycopg 3 (pipeline mode, https://www.psycopg.org/psycopg3/docs/advanced/pipeline.html):

- `insert_and_lock` sends BEGIN, the event's INSERT and the lock query together and reads
  their answers once;
- `batched_transaction` holds back the writes whose result nobody reads (`write`: the
  refund's view, the items' state, the audit rows) and sends them with the COMMIT. Any other
  statement run meanwhile sends the held writes first, in order, so every read sees them; an
  error in a held write is raised at COMMIT, and the transaction rolls back whole, as it would
  have at the write itself.

Elsewhere (SQLite, psycopg2, a transaction already open) each statement runs when it is made.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
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


def _can_pipeline(db) -> bool:
    return db.vendor == "postgresql" and _has_pipeline(db.Database)


@cache
def _has_pipeline(database) -> bool:
    """psycopg 3 with a libpq of PostgreSQL 14 or newer (psycopg2 has no pipeline mode)."""
    pipeline = getattr(database, "Pipeline", None)
    return pipeline is not None and pipeline.is_supported()


@contextmanager
def _sent_together(db):
    """The block's statements go out together; their answers are read once, at its end (one
    round trip), and an error among them is raised there, as Django's own."""
    if not _can_pipeline(db):
        yield
        return
    db.ensure_connection()
    with db.wrap_database_errors, db.connection.pipeline():
        yield


# --- Writes held back until COMMIT -------------------------------------------------------------


@dataclass
class _HeldWrites:
    """Writes of one transaction not sent yet; sent before any other statement (an execute
    wrapper), or with the COMMIT."""

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
                for sql, params in held:
                    cursor.execute(sql, params)
        finally:
            self.sending = False


_held: ContextVar[_HeldWrites | None] = ContextVar("refunds_held_writes", default=None)


def write(sql: str, params: list) -> None:
    """Run a write whose result (row count included) nobody reads; inside
    `batched_transaction` it is held back and sent with the COMMIT."""
    held = _held.get()
    if held is not None:
        held.statements.append((sql, params))
        return
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)


@contextmanager
def batched_transaction():
    """`transaction.atomic()` whose held writes (`write`) go out with its COMMIT, in one round
    trip. Only as the outermost transaction on PostgreSQL with pipeline mode; otherwise (inside
    another transaction, whose COMMIT is not ours to send, or elsewhere) plain `atomic()`."""
    db = default_connection()
    if db.in_atomic_block or not _can_pipeline(db):
        with transaction.atomic():
            yield
        return
    held = _HeldWrites(db)
    token = _held.set(held)
    try:
        with ExitStack() as after:
            with transaction.atomic(), db.execute_wrapper(held):
                yield
                _held.reset(token)
                token = None
                if held.statements:
                    # Queued with the COMMIT that atomic() sends next; the pipeline is left (one
                    # more Sync) after the transaction, and its errors are Django's.
                    after.enter_context(db.wrap_database_errors)
                    after.enter_context(db.connection.pipeline())
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
    sql = _query()[0]
    with prepared_cursor() as cursor:
        cursor.execute(sql, [stripe_refund_id])
        return _locked(cursor.fetchall())


def insert_and_lock(insert_sql: str, insert_params: list, stripe_refund_id: str | None) -> tuple[tuple, LockedRefund | None]:
    """Run an INSERT … RETURNING, then `refund_with_items(stripe_refund_id)` (skipped for None),
    sent together with the transaction's BEGIN: the returned row and the locked refund. The
    INSERT runs first: a unique-key error in it (a second delivery) is raised before anything
    is locked or read."""
    db = default_connection()
    with prepared_cursor(db) as inserted, prepared_cursor(db) as lock:
        with _sent_together(db):
            inserted.execute(insert_sql, insert_params)
            if stripe_refund_id is not None:
                lock.execute(_query()[0], [stripe_refund_id])
        row = inserted.fetchone()
        return row, (_locked(lock.fetchall()) if stripe_refund_id is not None else None)


def _locked(rows) -> LockedRefund | None:
    if not rows:
        return None
    _, refund_names, order_names, item_names, converters = _query()
    rows = [_converted(row, converters) for row in rows]
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
