"""Benchmark of the settlement job (`finalize_refunds`) against the floor, on PostgreSQL.

    .venv/bin/python bench/finalize.py                 # 100,000 due among 1,000,000 items
    .venv/bin/python bench/finalize.py --scale 0.1     # 10,000 due among 100,000 (quick)

Data: orders of two items each; every tenth order's items are due (refund succeeded 8 days
ago, one Stripe refund per order), the next tenth succeeded a day ago (not due), the rest are
`payment captured`. Due items are spread over the whole table, as in production.

Measured, each from the same starting data (reset and VACUUM ANALYZE in between):
- floor: one `UPDATE` of the due items plus one `INSERT … SELECT` of their audit rows
  (latest refund per item included), in one transaction;
- job: `refunds.services.finalize_due_refunds()` as the beat task runs it (wall time);
- peak memory of the job (tracemalloc, a separate run because tracing slows Python down) with
  all due items and with a tenth of them: streaming in batches keeps the two the same.

Uses its own database (default postgres://postgres@127.0.0.1:5432/settle_bench), created and
migrated on first use, with random_page_cost = 1.1 (data in memory, as on an SSD); the data is
loaded once and reused while the sizes match.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import tracemalloc

import benchdb  # bench/, beside this script

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/settle_bench"
ITEMS_PER_ORDER = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1,000,000 items, 100,000 due")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--batch-size", type=int, default=None, help="default: REFUND_SETTLEMENT_BATCH_SIZE")
    parser.add_argument("--reload", action="store_true", help="load the data again even if it is there")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of floor and job; medians reported")
    parser.add_argument("--breakdown", action="store_true", help="one more job run, timing its phases")
    return parser.parse_args(argv)


def setup_django(database_url: str):
    # The data fits in memory (on SSD in production): with the default random_page_cost
    # of 4 the planner prefers scanning whole tables to a thousand index lookups per batch.
    benchdb.setup_django(database_url, random_page_cost=1.1)


def load(orders: int, *, reload: bool):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM refunds_order WHERE reference LIKE 'BENCH-%%'")
        if cursor.fetchone()[0] == orders and not reload:
            return False
        print(f"loading {orders:,} orders, {orders * ITEMS_PER_ORDER:,} items …", flush=True)
        cursor.execute(
            "TRUNCATE refunds_itemtransition, refunds_refund_items, refunds_refund, refunds_orderitem, "
            "refunds_stripeevent, refunds_order RESTART IDENTITY CASCADE"
        )
        cursor.execute(
            """
            INSERT INTO refunds_order (id, reference, customer_email, currency, stripe_payment_intent_id,
                                       shipping_amount, created_at)
            SELECT o, 'BENCH-' || o, '', 'eur', 'pi_bench' || o, 495, now() - interval '30 days'
            FROM generate_series(1, %s) o
            """,
            [orders],
        )
        # Item k of order o has id (o - 1) * 2 + k. Order o % 10 = 0: due; 1: succeeded a day ago.
        cursor.execute(
            """
            INSERT INTO refunds_orderitem (id, order_id, sku, name, amount, state, state_changed_at)
            SELECT (o - 1) * 2 + k, o, 'SKU-' || k, 'Item ' || k, 1000,
                   CASE WHEN o %% 10 IN (0, 1) THEN 'payment_refund_succeeded' ELSE 'payment_captured' END,
                   now() - interval '30 days'
            FROM generate_series(1, %s) o, generate_series(1, 2) k
            """,
            [orders],
        )
        cursor.execute(
            """
            INSERT INTO refunds_refund (id, order_id, amount, shipping_amount, currency, origin, stripe_refund_id,
                idempotency_key, status, failure_reason, reason, note, created_at, submit_attempts, last_error,
                status_changed_at)
            SELECT o, o, 2495, 495, 'eur', 'back_office', 're_bench' || o, 'oms-refund-bench-' || o, 'succeeded',
                   '', '', '', now() - interval '9 days', 1, '', now() - interval '9 days'
            FROM generate_series(1, %s) o WHERE o %% 10 IN (0, 1)
            """,
            [orders],
        )
        cursor.execute(
            """
            INSERT INTO refunds_refund_items (refund_id, orderitem_id)
            SELECT r.id, i.id FROM refunds_refund r JOIN refunds_orderitem i ON i.order_id = r.order_id
            """
        )
        for table in ("refunds_order", "refunds_orderitem", "refunds_refund"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        # Statistics for every table, as autovacuum keeps them in production: without them the
        # planner guesses, e.g. a sequential scan of the refunds for each batch's lock query.
        for table in ("refunds_order", "refunds_orderitem", "refunds_refund", "refunds_refund_items"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    return True


def reset(*, due_every: int):
    """Items of orders o % 10 == 0 back to succeeded; those with o % due_every == 0 due (8 days
    ago), the others a day ago; orders o % 10 == 1 succeeded a day ago. No audit rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE refunds_itemtransition")
        cursor.execute(
            """
            UPDATE refunds_orderitem SET state = 'payment_refund_succeeded',
                state_changed_at = now() - CASE WHEN order_id %% %s = 0 THEN interval '8 days' ELSE interval '1 day' END
            WHERE order_id %% 10 IN (0, 1)
            """,
            [due_every],
        )
        cursor.execute("VACUUM ANALYZE refunds_orderitem")
        cursor.execute("VACUUM ANALYZE refunds_itemtransition")
        cursor.execute("VACUUM ANALYZE refunds_refund_items")
        cursor.execute("CHECKPOINT")


def due_count() -> int:
    from refunds.selectors import items_due_for_settlement

    return items_due_for_settlement().count()


def run_floor() -> tuple[float, int]:
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    now = timezone.now()
    cutoff = now - settings.REFUND_SETTLEMENT_PERIOD
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE refunds_orderitem SET state = 'payment_refunded', state_changed_at = %s
            WHERE state = 'payment_refund_succeeded' AND state_changed_at < %s
            """,
            [now, cutoff],
        )
        moved = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO refunds_itemtransition (item_id, refund_id, transition, from_state, to_state, at, by)
            SELECT i.id, (SELECT max(ri.refund_id) FROM refunds_refund_items ri WHERE ri.orderitem_id = i.id),
                   'confirm_refund', 'payment_refund_succeeded', 'payment_refunded', %s, 'settlement timeout'
            FROM refunds_orderitem i
            WHERE i.state = 'payment_refunded' AND i.state_changed_at = %s
            """,
            [now, now],
        )
        assert cursor.rowcount == moved
    return time.perf_counter() - started, moved


def run_job(batch_size: int | None) -> tuple[float, int]:
    from refunds.services import finalize_due_refunds

    started = time.perf_counter()
    moved = finalize_due_refunds(batch_size=batch_size)
    return time.perf_counter() - started, moved


def job_peak_memory(batch_size: int | None) -> tuple[int, int]:
    from refunds.services import finalize_due_refunds

    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        moved = finalize_due_refunds(batch_size=batch_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, moved


def job_breakdown(batch_size: int | None) -> dict[str, float]:
    """Wall time per phase of one job run, by wrapping the functions the job calls."""
    from django.db.models import QuerySet

    from refunds import selectors
    from refunds.services import audit, settlement

    spent: dict[str, float] = {}
    patched = [
        (selectors, "items_due_for_settlement", "select … for update skip locked"),
        (selectors, "latest_refund_ids", "latest refund per item"),
        (settlement, "_share_lock_refunds", "key-share lock on refunds"),
        (audit, "run_transition", "django-fsm transitions + audit objects"),
        (QuerySet, "update", "UPDATE items"),
        (audit, "write_log", "INSERT audit rows"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def timed(label, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started
        return wrapper

    for owner, name, label in patched:
        setattr(owner, name, timed(label, getattr(owner, name)))
    try:
        # The item query runs when the batch is listed, not when it is built: time the listing.
        QuerySet._fetch_all, original_fetch = timed("select … for update skip locked", QuerySet._fetch_all), QuerySet._fetch_all
        try:
            total, _ = run_job(batch_size)
        finally:
            QuerySet._fetch_all = original_fetch
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)
    # The latest-refund and lock queries are also listed through _fetch_all: count them once.
    spent["select … for update skip locked"] -= spent.get("latest refund per item", 0.0)
    spent["total"] = total
    return spent


def check_audit(expected: int):
    from refunds.models import ItemTransition

    rows = ItemTransition.objects.filter(transition="confirm_refund")
    assert rows.count() == expected, (rows.count(), expected)
    assert not rows.filter(refund__isnull=True).exists()


def fmt(runs: list[float]) -> str:
    return ", ".join(f"{seconds:.2f}" for seconds in runs)


def main(argv=None):
    args = parse_args(argv)
    setup_django(args.database_url)
    from django.conf import settings
    from django.db import connection

    orders = int(500_000 * args.scale)
    if load(orders, reload=args.reload):
        reset(due_every=10)
    items, due = orders * ITEMS_PER_ORDER, orders * ITEMS_PER_ORDER // 10
    batch_size = args.batch_size or settings.REFUND_SETTLEMENT_BATCH_SIZE
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(f"PostgreSQL {version}; {items:,} items, {due:,} due; batch size {batch_size:,}")

    floor_runs, job_runs = [], []
    for _ in range(args.repeats):
        reset(due_every=10)
        assert due_count() == due
        seconds, moved = run_floor()
        assert moved == due
        check_audit(due)
        floor_runs.append(seconds)

        reset(due_every=10)
        seconds, moved = run_job(args.batch_size)
        assert moved == due
        check_audit(due)
        job_runs.append(seconds)
    floor_seconds, job_seconds = statistics.median(floor_runs), statistics.median(job_runs)

    breakdown = {}
    if args.breakdown:
        reset(due_every=10)
        breakdown = job_breakdown(args.batch_size)

    reset(due_every=10)
    peak_all, moved_all = job_peak_memory(args.batch_size)
    reset(due_every=100)
    peak_tenth, moved_tenth = job_peak_memory(args.batch_size)
    assert (moved_all, moved_tenth) == (due, due // 10)
    reset(due_every=10)

    print(f"median of {args.repeats} run(s); all runs: floor {fmt(floor_runs)} s, job {fmt(job_runs)} s")
    print(f"floor (UPDATE + INSERT … SELECT): {floor_seconds:8.2f} s")
    print(f"finalize_due_refunds():          {job_seconds:8.2f} s   ({due / job_seconds:,.0f} items/s)")
    print(f"ratio job / floor:               {job_seconds / floor_seconds:8.2f} ×   (goal ≤ 3×)")
    if breakdown:
        total = breakdown.pop("total")
        print(f"one more job run, by phase ({total:.2f} s in all):")
        for label, seconds in breakdown.items():
            print(f"  {label:<42} {seconds:7.2f} s")
    print(f"peak memory (tracemalloc), {due:>9,} due: {peak_all / 2**20:6.2f} MiB")
    print(f"peak memory (tracemalloc), {due // 10:>9,} due: {peak_tenth / 2**20:6.2f} MiB")
    print(f"peak memory ratio:                      {peak_all / peak_tenth:6.2f} ×   (goal ≈ 1×)")


if __name__ == "__main__":
    main()
