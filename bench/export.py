"""Benchmark of the finance export (`manage.py export_refunds`, the admin action
`export_refunds_csv`) against its floor, on PostgreSQL: memory for 10,000 vs 100,000 rows, and time.

    .venv/bin/python bench/export.py                     # 10,000 and 100,000 refunds
    .venv/bin/python bench/export.py --scale 0.1         # 1,000 and 10,000 (quick)

Data (loaded once into its own database, reused while the size matches): one order per refund,
two items each (both in the refund), currencies alternating EUR and JPY, a tenth of the refunds
created on 2026-03-01 and the rest on 2026-03-02, so `--since 2026-03-01 --until 2026-03-01`
selects a tenth and `--until 2026-03-02` all of them.

Measured, for a tenth and for all refunds:
- command: `call_command("export_refunds", --since, --until, --output FILE)`;
- admin action: a POST of "Export selected refunds as CSV" with "select all" over the Refund
  changelist filtered to the same days, through Django's test client; the streamed body is
  written to a file as it comes;
- floor: the same CSV bare: one SQL query (refunds, orders, users and `string_agg` of the SKUs)
  read through a server-side cursor 2,000 rows at a time, `csv.writer` to a file.
Time is the median of the timed runs; peak memory is tracemalloc's, in a separate run of each
(tracing slows Python down). Flat memory means the peak for all rows is that for a tenth.

Uses its own database (default postgres://postgres@127.0.0.1:5432/export_bench), created and
migrated on first use, with random_page_cost = 1.1 (data in memory, as on an SSD).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
import tracemalloc
from urllib.parse import urlencode

import benchdb  # bench/, beside this script

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/export_bench"
FIRST_DAY, SECOND_DAY = "2026-03-01", "2026-03-02"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 100,000 refunds (10,000 on the first day)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--reload", action="store_true", help="load the data again even if it is there")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; medians reported")
    return parser.parse_args(argv)


def load(refunds: int, *, reload: bool) -> bool:
    from django.contrib.auth import get_user_model
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM refunds_refund WHERE idempotency_key LIKE 'bench-%%'")
        if cursor.fetchone()[0] == refunds and not reload:
            return False
        print(f"loading {refunds:,} refunds of {refunds:,} orders, {refunds * 2:,} items …", flush=True)
        cursor.execute(
            "TRUNCATE refunds_attentioncase, refunds_itemtransition, refunds_refund_items, refunds_refund, "
            "refunds_orderitem, refunds_stripeevent, refunds_order RESTART IDENTITY CASCADE"
        )
        user = get_user_model().objects.get_or_create(username="bench-finance")[0]
        first_day = refunds // 10
        cursor.execute(
            """
            INSERT INTO refunds_order (id, reference, customer_email, currency, stripe_payment_intent_id,
                                       shipping_amount, created_at)
            SELECT o, 'BENCH-' || o, '', CASE WHEN o %% 2 = 0 THEN 'jpy' ELSE 'eur' END, 'pi_bench' || o, 495,
                   timestamptz '2026-02-20 10:00+00'
            FROM generate_series(1, %s) o
            """,
            [refunds],
        )
        cursor.execute(
            """
            INSERT INTO refunds_orderitem (id, order_id, sku, name, amount, state, state_changed_at)
            SELECT (o - 1) * 2 + k, o, 'SKU-' || o || '-' || k, 'Item ' || k, 1250 * k, 'payment_refund_succeeded',
                   timestamptz '2026-03-02 10:00+00'
            FROM generate_series(1, %s) o, generate_series(1, 2) k
            """,
            [refunds],
        )
        cursor.execute(
            """
            INSERT INTO refunds_refund (id, order_id, amount, shipping_amount, currency, origin, stripe_refund_id,
                                        idempotency_key, status, failure_reason, reason, note, created_by_id,
                                        created_at, submit_attempts, last_error, status_changed_at, decision_note)
            SELECT o, o, 3750 + 495, 495, CASE WHEN o %% 2 = 0 THEN 'jpy' ELSE 'eur' END, 'back_office',
                   're_bench' || o, 'bench-' || o, 'succeeded', '', 'requested_by_customer', '', %s,
                   CASE WHEN o <= %s THEN timestamptz '2026-03-01 00:00+00' ELSE timestamptz '2026-03-02 00:00+00' END
                       + (o %% 80000) * interval '1 second',
                   1, '', timestamptz '2026-03-02 10:00+00', ''
            FROM generate_series(1, %s) o
            """,
            [user.pk, first_day, refunds],
        )
        cursor.execute(
            """
            INSERT INTO refunds_refund_items (refund_id, orderitem_id)
            SELECT o, (o - 1) * 2 + k FROM generate_series(1, %s) o, generate_series(1, 2) k
            """,
            [refunds],
        )
        for table in ("refunds_order", "refunds_orderitem", "refunds_refund", "refunds_refund_items"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return True


# --- the three ways to write the CSV --------------------------------------------------------


def run_command(until: str, path: str) -> None:
    from django.core.management import call_command

    call_command("export_refunds", "--since", FIRST_DAY, "--until", until, "--output", path, stderr=open(os.devnull, "w"))


def run_admin_action(until: str, path: str) -> None:
    from django.test import Client

    client = Client()
    client.force_login(admin_user())
    end = "2026-03-02" if until == FIRST_DAY else "2026-03-03"
    days = urlencode({"created_at__gte": f"{FIRST_DAY} 00:00+00:00", "created_at__lt": f"{end} 00:00+00:00"})
    response = client.post(
        f"/admin/refunds/refund/?{days}",
        {"action": "export_refunds_csv", "select_across": "1", "index": "0", "_selected_action": ["1"]},
    )
    assert response.streaming, response.status_code
    with open(path, "wb") as file:
        for chunk in response.streaming_content:
            file.write(chunk)


def admin_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    return user


FLOOR_SQL = """
    SELECT r.id, coalesce(r.stripe_refund_id, ''), o.reference, o.stripe_payment_intent_id, r.currency, r.amount,
           r.shipping_amount, r.status, r.failure_reason, r.reason, r.origin, coalesce(u.username, ''),
           coalesce(a.username, ''), to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
           coalesce((SELECT string_agg(i.sku, ' ' ORDER BY i.id) FROM refunds_refund_items ri
                     JOIN refunds_orderitem i ON i.id = ri.orderitem_id WHERE ri.refund_id = r.id), '')
    FROM refunds_refund r
    JOIN refunds_order o ON o.id = r.order_id
    LEFT JOIN auth_user u ON u.id = r.created_by_id
    LEFT JOIN auth_user a ON a.id = r.approved_by_id
    WHERE r.created_at >= %s AND r.created_at < %s
    ORDER BY r.created_at, r.id
"""


def run_floor(until: str, path: str) -> None:
    from django.db import connection, transaction

    from refunds.money import major_units
    from refunds.services.export import EXPORT_COLUMNS

    end = "2026-03-02" if until == FIRST_DAY else "2026-03-03"
    connection.ensure_connection()
    with transaction.atomic(), open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(EXPORT_COLUMNS)
        with connection.connection.cursor(name="export_floor") as cursor:  # psycopg server-side cursor
            cursor.itersize = 2000
            cursor.execute(FLOOR_SQL, [f"{FIRST_DAY} 00:00+00", f"{end} 00:00+00"])
            for row in cursor:
                writer.writerow(
                    [row[0], row[1], row[2], row[3], row[4], major_units(row[5], row[4]), row[5], *row[6:]]
                )


WAYS = {"floor": run_floor, "command": run_command, "admin action": run_admin_action}


def timed(run, until: str, repeats: int) -> tuple[float, int, int]:
    times = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "refunds.csv")
        for _ in range(repeats):
            started = time.perf_counter()
            run(until, path)
            times.append(time.perf_counter() - started)
        with open(path, encoding="utf-8") as file:
            lines = sum(1 for _ in file)
        size = os.path.getsize(path)
    return statistics.median(times), lines - 1, size


def peak_memory(run, until: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            run(until, os.path.join(folder, "refunds.csv"))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


def main(argv=None):
    args = parse_args(argv)
    # The data is in memory (on SSD in production), as bench/finalize.py assumes too: with the
    # default random_page_cost of 4 the planner reads all item links for each page's SKUs.
    benchdb.setup_django(args.database_url, random_page_cost=1.1)
    from django.conf import settings
    from django.db import connection

    settings.ALLOWED_HOSTS = ["*"]
    refunds = int(100_000 * args.scale)
    load(refunds, reload=args.reload)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
    print(f"{version}; {refunds:,} refunds; median of {args.repeats} run(s); peak memory by tracemalloc")
    print(f"{'':14} {'rows':>9} | {'seconds':>8} | {'rows/s':>8} | {'peak MiB':>8} | {'× floor time':>12}")
    results = {}
    for until in (FIRST_DAY, SECOND_DAY):
        floor_time = None
        for name, run in WAYS.items():
            seconds, rows, _ = timed(run, until, args.repeats)
            peak = peak_memory(run, until)
            floor_time = floor_time or seconds
            results[(name, until)] = (seconds, rows, peak)
            print(
                f"{name:14} {rows:>9,} | {seconds:8.2f} | {rows / seconds:8,.0f} | {peak / 2**20:8.2f} | "
                f"{seconds / floor_time:12.2f}",
                flush=True,
            )
    print("memory, all rows / a tenth (flat = 1.0):")
    for name in WAYS:
        small, large = results[(name, FIRST_DAY)][2], results[(name, SECOND_DAY)][2]
        print(f"  {name:14} {large / small:5.2f} ×  ({small / 2**20:.2f} → {large / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
