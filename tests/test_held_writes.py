"""Writes held back until COMMIT (refunds/services/locked_rows.py): `_joined` makes consecutive
writes to different tables one WITH statement; on PostgreSQL `batched_transaction` holds the
writes made with `write`, sends them before any other statement and before the COMMIT, and
rolls back whole when one fails. On SQLite it is plain atomic() and `write` runs at once."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from refunds.models import Order, OrderItem
from refunds.services.locked_rows import _joined, batched_transaction, write

from .conftest import on_postgres, skip_unless_postgres
from .factories import paid_order_with_items

ORDERS, ITEMS = Order._meta.db_table, OrderItem._meta.db_table  # refunds_order, refunds_orderitem
SET_EMAIL = f'UPDATE "{ORDERS}" SET customer_email = %s WHERE id = %s'
SET_STATE = f"UPDATE {ITEMS} SET state = %s WHERE id = %s"


# --- _joined: which held writes go out as one statement ----------------------------------------


def test_consecutive_writes_to_different_tables_become_one_with_statement_params_in_order():
    held = [
        ('UPDATE "refunds_refund" SET status = %s WHERE id = %s', ["succeeded", 7]),
        ("UPDATE refunds_orderitem SET state = %s WHERE id = ANY(%s)", ["payment_refund_succeeded", [1, 2]]),
        ('INSERT INTO "refunds_itemtransition" ("item_id") SELECT u FROM unnest(%s) u', [[3, 4]]),
    ]

    assert _joined(held) == [(
        'WITH w0 AS (UPDATE "refunds_refund" SET status = %s WHERE id = %s), '
        "w1 AS (UPDATE refunds_orderitem SET state = %s WHERE id = ANY(%s)) "
        'INSERT INTO "refunds_itemtransition" ("item_id") SELECT u FROM unnest(%s) u',
        ["succeeded", 7, "payment_refund_succeeded", [1, 2], [3, 4]],
    )]


def test_one_write_is_sent_as_it_is():
    assert _joined([("UPDATE refunds_refund SET note = %s", ["x"])]) == [("UPDATE refunds_refund SET note = %s", ["x"])]
    assert _joined([]) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [('UPDATE "refunds_refund"', "UPDATE refunds_refund"), ("UPDATE refunds_refund", 'UPDATE "refunds_refund"'),
     ('INSERT INTO "refunds_refund"', "update  refunds_refund"), ("  UPDATE refunds_refund", "INSERT INTO refunds_refund")],
    ids=["quoted-then-bare", "bare-then-quoted", "insert-then-lower-case-update", "leading-space"],
)
def test_a_second_write_to_the_same_table_starts_the_next_statement(first, second):
    held = [(f"{first} SET a = %s", [1]), ("UPDATE refunds_order SET b = %s", [2]), (f"{second} SET c = %s", [3])]

    assert _joined(held) == [
        (f"WITH w0 AS ({first} SET a = %s) UPDATE refunds_order SET b = %s", [1, 2]),
        (f"{second} SET c = %s", [3]),
    ]


def test_after_a_repeated_table_the_next_statement_joins_again():
    held = [("UPDATE a SET x = %s", [1]), ("UPDATE a SET x = %s", [2]), ("UPDATE b SET x = %s", [3])]

    assert _joined(held) == [("UPDATE a SET x = %s", [1]), ("WITH w0 AS (UPDATE a SET x = %s) UPDATE b SET x = %s", [2, 3])]


@pytest.mark.parametrize(
    "other", ["DELETE FROM refunds_order WHERE id = %s", "SELECT %s", "WITH x AS (UPDATE refunds_refund SET b = %s) UPDATE refunds_order SET b = 1"],
    ids=["delete", "select", "with"],
)
def test_a_statement_that_is_no_update_or_insert_is_sent_alone(other):
    held = [("UPDATE refunds_refund SET a = %s", [1]), (other, [2]), ("UPDATE refunds_orderitem SET c = %s", [3])]

    assert _joined(held) == [
        ("UPDATE refunds_refund SET a = %s", [1]),
        (other, [2]),
        ("UPDATE refunds_orderitem SET c = %s", [3]),
    ]


# --- batched_transaction on PostgreSQL ----------------------------------------------------------


def sent_since(captured, start: int) -> list[str]:
    return [query["sql"] for query in captured.captured_queries[start:]]


@pytest.fixture
def order(db):
    return paid_order_with_items(1000, 2000)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_writes_are_held_and_sent_as_one_statement_before_the_commit(order):
    skip_unless_postgres()
    item = order.items.order_by("pk").first()

    with CaptureQueriesContext(connection) as captured:
        with batched_transaction():
            start = len(captured)
            write(SET_EMAIL, ["held@example.com", order.pk])
            write(SET_STATE, ["payment_refund_pending", item.pk])
            held_in_block = sent_since(captured, start)
        sent = sent_since(captured, start)

    assert held_in_block == []
    assert len(sent) == 2 and sent[1] == "COMMIT"  # one statement, sent before the COMMIT
    assert sent[0].startswith(f'WITH w0 AS (UPDATE "{ORDERS}" SET customer_email = ')
    assert f") UPDATE {ITEMS} SET state = " in sent[0]
    assert connection.get_autocommit()  # committed, out of the block
    assert Order.objects.get(pk=order.pk).customer_email == "held@example.com"
    assert OrderItem.objects.get(pk=item.pk).state == "payment_refund_pending"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_read_inside_the_block_sends_the_held_writes_first_and_sees_them(order):
    skip_unless_postgres()

    with CaptureQueriesContext(connection) as captured:
        with batched_transaction():
            start = len(captured)
            write(SET_EMAIL, ["read-back@example.com", order.pk])
            seen = Order.objects.get(pk=order.pk).customer_email
            sent = sent_since(captured, start)

    assert seen == "read-back@example.com"
    assert len(sent) == 2
    assert sent[0].startswith(f'UPDATE "{ORDERS}" SET customer_email = ') and sent[1].startswith("SELECT ")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("violation", ["not-null", "unique"])
@pytest.mark.parametrize("sent_by", ["commit", "a-later-read"])
def test_a_held_write_that_fails_raises_integrity_error_and_rolls_the_block_back(order, violation, sent_by):
    skip_unless_postgres()
    other = paid_order_with_items(550)
    item = order.items.order_by("pk").first()
    bad = {
        "not-null": (SET_STATE, [None, item.pk]),
        "unique": (f"UPDATE {ORDERS} SET reference = %s WHERE id = %s", [other.reference, order.pk]),
    }[violation]

    with pytest.raises(IntegrityError):
        with batched_transaction():
            Order.objects.create(reference="WRITTEN-IN-THE-BLOCK", currency="eur")
            write(SET_EMAIL, ["lost@example.com", other.pk])
            write(*bad)
            if sent_by == "a-later-read":
                OrderItem.objects.count()
                pytest.fail("the read ran without sending the failing write first")

    assert connection.get_autocommit() and not connection.in_atomic_block
    assert not Order.objects.filter(reference="WRITTEN-IN-THE-BLOCK").exists()
    assert Order.objects.get(pk=other.pk).customer_email != "lost@example.com"
    assert OrderItem.objects.get(pk=item.pk).state == "payment_captured"
    assert Order.objects.get(pk=order.pk).reference == order.reference


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_error_in_the_block_drops_the_held_writes_and_later_writes_run_at_once(order):
    skip_unless_postgres()

    with pytest.raises(RuntimeError):
        with batched_transaction():
            write(SET_EMAIL, ["never@example.com", order.pk])
            raise RuntimeError("the event could not be applied")

    assert Order.objects.get(pk=order.pk).customer_email != "never@example.com"
    with CaptureQueriesContext(connection) as captured:
        write(SET_EMAIL, ["after@example.com", order.pk])  # nothing holds it any more
        assert len(captured) == 1
    assert Order.objects.get(pk=order.pk).customer_email == "after@example.com"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_outside_the_block_a_write_runs_at_once(order):
    skip_unless_postgres()

    with CaptureQueriesContext(connection) as captured:
        write(SET_EMAIL, ["at-once@example.com", order.pk])
        sent = sent_since(captured, 0)

    assert len(sent) == 1 and sent[0].startswith(f'UPDATE "{ORDERS}" SET customer_email = ')
    assert Order.objects.get(pk=order.pk).customer_email == "at-once@example.com"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_writes_to_the_same_table_go_out_in_order_in_two_statements(order):
    skip_unless_postgres()

    with CaptureQueriesContext(connection) as captured:
        with batched_transaction():
            start = len(captured)
            write(SET_EMAIL, ["first@example.com", order.pk])
            write(SET_EMAIL, ["second@example.com", order.pk])
        sent = sent_since(captured, start)

    assert [sql.split()[0] for sql in sent] == ["UPDATE", "UPDATE", "COMMIT"]
    assert Order.objects.get(pk=order.pk).customer_email == "second@example.com"


# --- batched_transaction elsewhere: SQLite ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_the_block_is_plain_atomic_and_a_write_runs_at_once(order):
    if on_postgres():
        pytest.skip("SQLite's behaviour: PostgreSQL holds the writes")
    other = paid_order_with_items(550)

    with CaptureQueriesContext(connection) as captured:
        with batched_transaction():
            assert connection.in_atomic_block
            start = len(captured)
            write(SET_EMAIL, ["sqlite@example.com", order.pk])
            sent = sent_since(captured, start)

    assert len(sent) == 1 and sent[0].startswith(f'UPDATE "{ORDERS}" SET customer_email = ')
    assert Order.objects.get(pk=order.pk).customer_email == "sqlite@example.com"
    with pytest.raises(IntegrityError):
        with batched_transaction():
            Order.objects.create(reference="ROLLED-BACK", currency="eur")
            write(f"UPDATE {ORDERS} SET reference = %s WHERE id = %s", [other.reference, order.pk])
    assert not Order.objects.filter(reference="ROLLED-BACK").exists()
    assert not transaction.get_connection().in_atomic_block
