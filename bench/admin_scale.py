"""Benchmark of the Back Office pages at a million orders, on PostgreSQL.

    .venv/bin/python bench/admin_scale.py                  # 1,000,000 orders (loaded once, reused)
    .venv/bin/python bench/admin_scale.py --scale 0.01     # 10,000 orders (quick look)

Data, loaded with `INSERT … SELECT generate_series` (a few minutes for the full size, then kept):
1,000,000 orders of three items (3,000,000 items), 300,000 refunds (a tenth of the orders fully
refunded, a tenth with one item pending at Stripe, a tenth with two items failed), their item
links, 1,400,000 audit rows and 500,000 Stripe events. The 0006 indexes are dropped during the
load and built after it (`migrate refunds 0004`, then `migrate`), as a bulk load does.

Every page is fetched through the whole Django stack with the test client (a superuser,
DEBUG off): one warm-up, then the median of `--repeats`; the query count comes from one more
run. The floor is the same page's rows (the columns it shows) read with bare SQL in the same
run, median of as many runs. Goal: every page under 200 ms on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import benchdb  # bench/, beside this script

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench13"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1,000,000 orders")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reload", action="store_true", help="load the data again even if it is there")
    parser.add_argument("--only", default="", help="time only the pages whose name contains this")
    return parser.parse_args(argv)


def load(orders: int, *, reload: bool) -> bool:
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM refunds_order WHERE reference LIKE 'AS-%%'")
        if cursor.fetchone()[0] == orders and not reload:
            return False
    started = time.perf_counter()
    print(f"loading {orders:,} orders …", flush=True)
    call_command("migrate", "refunds", "0004", verbosity=0)  # drops the search indexes for the load
    steps = [
        ("truncate", """TRUNCATE refunds_attentioncase, refunds_itemtransition, refunds_refund_items,
            refunds_stripeevent, refunds_refund, refunds_orderitem, refunds_order RESTART IDENTITY CASCADE""", []),
        # Currencies: o % 10 in 0..6 eur, 7..8 chf, 9 usd; one order every 30 s, newest last.
        ("orders", """
            INSERT INTO refunds_order (id, reference, customer_email, currency, stripe_payment_intent_id,
                                       shipping_amount, created_at)
            SELECT o, 'AS-' || lpad(o::text, 7, '0'), 'buyer' || o || '@example.com',
                   CASE WHEN o %% 10 < 7 THEN 'eur' WHEN o %% 10 < 9 THEN 'chf' ELSE 'usd' END,
                   'pi_as' || lpad(o::text, 7, '0'), 495, now() - (%s - o) * interval '30 seconds'
            FROM generate_series(1, %s) o""", [orders, orders]),
        # Item k of order o has id (o - 1) * 3 + k. Orders o % 10 = 0: all refunded; = 3: item 1
        # pending; = 6: items 1 and 2 failed; the rest captured. 5,000 SKUs.
        ("items", """
            INSERT INTO refunds_orderitem (id, order_id, sku, name, amount, state, state_changed_at)
            SELECT (o - 1) * 3 + k, o, 'SKU-' || lpad(((o * 7 + k * 13) %% 5000)::text, 5, '0'),
                   (ARRAY['Organic cotton tee', 'Wool scarf', 'Leather belt'])[k], 1000 + 250 * k,
                   CASE WHEN o %% 10 = 0 THEN 'payment_refunded'
                        WHEN o %% 10 = 3 AND k = 1 THEN 'payment_refund_pending'
                        WHEN o %% 10 = 6 AND k < 3 THEN 'payment_refund_failed'
                        ELSE 'payment_captured' END,
                   now() - (%s - o) * interval '30 seconds'
            FROM generate_series(1, %s) o, generate_series(1, 3) k""", [orders, orders]),
        ("refunds", """
            INSERT INTO refunds_refund (id, order_id, amount, shipping_amount, currency, origin, stripe_refund_id,
                idempotency_key, status, failure_reason, reason, note, created_at, submit_attempts, last_error,
                status_changed_at, warning, decision_note)
            SELECT o, o, CASE o %% 10 WHEN 0 THEN 5495 WHEN 3 THEN 1250 ELSE 2750 END,
                   CASE WHEN o %% 10 = 0 THEN 495 ELSE 0 END, 'eur', 'back_office',
                   're_as' || lpad(o::text, 7, '0'), 'oms-refund-as-' || o,
                   CASE o %% 10 WHEN 0 THEN 'succeeded' WHEN 3 THEN 'pending' ELSE 'failed' END,
                   CASE WHEN o %% 10 = 6 THEN 'declined' ELSE '' END, '', '',
                   now() - (%s - o) * interval '30 seconds', 1, '', now(), '', ''
            FROM generate_series(1, %s) o WHERE o %% 10 IN (0, 3, 6)""", [orders, orders]),
        ("refund items", """
            INSERT INTO refunds_refund_items (refund_id, orderitem_id)
            SELECT r.id, i.id FROM refunds_refund r JOIN refunds_orderitem i ON i.order_id = r.order_id
            WHERE i.state <> 'payment_captured'""", []),
        ("audit rows", """
            INSERT INTO refunds_itemtransition (item_id, refund_id, transition, from_state, to_state, at, by)
            SELECT l.orderitem_id, l.refund_id, t.transition, t.from_state, t.to_state,
                   i.state_changed_at + (4 - t.n) * interval '1 minute', t.by
            FROM refunds_refund_items l JOIN refunds_orderitem i ON i.id = l.orderitem_id
            CROSS JOIN LATERAL (VALUES
                (3, 'start_refund', 'payment_captured', 'payment_refund_pending', 'alice', true),
                (2, 'refund_succeeded', 'payment_refund_pending', 'payment_refund_succeeded', 'Stripe API response',
                 i.state = 'payment_refunded'),
                (1, 'confirm_refund', 'payment_refund_succeeded', 'payment_refunded', 'settlement timeout',
                 i.state = 'payment_refunded'),
                (1, 'refund_failed', 'payment_refund_pending', 'payment_refund_failed', 'Stripe event',
                 i.state = 'payment_refund_failed')
            ) AS t(n, transition, from_state, to_state, by, happened)
            WHERE t.happened""", []),
        ("events", """
            INSERT INTO refunds_stripeevent (stripe_event_id, type, payload, received_at, processed_at, error, refund_id)
            SELECT 'evt_as' || lpad(e::text, 7, '0'), 'refund.updated',
                   jsonb_build_object('id', 'evt_as' || e, 'type', 'refund.updated', 'data',
                                      jsonb_build_object('object', jsonb_build_object('id', 're_as' || e))),
                   now() - (%s - e) * interval '1 minute', now(), '', (e %% %s) * 10 + 10
            FROM generate_series(1, %s) e""", [orders // 2, orders // 10, orders // 2]),
    ]
    with connection.cursor() as cursor:
        for name, sql, params in steps:
            step = time.perf_counter()
            cursor.execute(sql, params)
            print(f"  {name:13} {cursor.rowcount:>10,} rows  {time.perf_counter() - step:6.1f} s", flush=True)
        for table in ("refunds_order", "refunds_orderitem", "refunds_refund"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    step = time.perf_counter()
    call_command("migrate", verbosity=0)  # builds the 0006 indexes
    print(f"  {'indexes':13} {'':>10}       {time.perf_counter() - step:6.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    return True


def pages(orders: int):
    """(name, method, url, params, floor SQL, floor params): the issue's table, plus the rest."""
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    o = orders // 2 + 3  # an order with a pending refund (o % 10 = 3)
    ref, pi, re_id, email = f"AS-{o:07d}", f"pi_as{o:07d}", f"re_as{o:07d}", f"buyer{o}@example.com"
    sku = f"SKU-{(o * 7 + 13) % 5000:05d}"
    per_order = """SELECT o.id, o.reference, o.customer_email, o.currency, o.shipping_amount, o.created_at,
                          sum(i.amount), count(*) FILTER (WHERE i.state = 'payment_captured'),
                          count(*) FILTER (WHERE i.state = 'payment_refunded')
                   FROM (SELECT * FROM refunds_order {where} ORDER BY created_at DESC, id DESC LIMIT 100) o
                   JOIN refunds_orderitem i ON i.order_id = o.id GROUP BY o.id, o.reference, o.customer_email,
                        o.currency, o.shipping_amount, o.created_at ORDER BY o.created_at DESC, o.id DESC"""
    items = """SELECT i.id, i.sku, i.name, i.amount, i.state, i.state_changed_at, o.reference, o.currency
               FROM refunds_orderitem i JOIN refunds_order o ON o.id = i.order_id {where}
               ORDER BY i.order_id, i.id LIMIT 100"""
    changelist = "admin:refunds_{}_changelist"
    return [
        ("Orders", "get", changelist.format("order"), {}, per_order.format(where=""), []),
        ("Orders ?item_state=failed", "get", changelist.format("order"), {"item_state": "payment_refund_failed"},
         per_order.format(where="o WHERE EXISTS (SELECT 1 FROM refunds_orderitem i WHERE i.order_id = o.id "
                                "AND i.state = 'payment_refund_failed')"), []),
        ("Orders ?currency=chf", "get", changelist.format("order"), {"currency": "chf"},
         per_order.format(where="WHERE currency = 'chf'"), []),
        ("Orders ?q=reference", "get", changelist.format("order"), {"q": ref},
         per_order.format(where="WHERE reference = %s"), [ref]),
        ("Orders ?q=e-mail", "get", changelist.format("order"), {"q": email},
         per_order.format(where="WHERE upper(customer_email) = upper(%s)"), [email]),
        ("Orders ?q=PaymentIntent", "get", changelist.format("order"), {"q": pi},
         per_order.format(where="WHERE stripe_payment_intent_id = %s"), [pi]),
        ("Orders ?q=Stripe refund id", "get", changelist.format("order"), {"q": re_id},
         per_order.format(where="WHERE id = (SELECT order_id FROM refunds_refund WHERE stripe_refund_id = %s)"), [re_id]),
        ("Orders ?q=part of reference", "get", changelist.format("order"), {"q": ref[3:-1]},
         per_order.format(where="WHERE upper(reference) LIKE %s"), [f"%{ref[3:-1]}%"]),
        ("Order items", "get", changelist.format("orderitem"), {}, items.format(where=""), []),
        ("Order items ?q=sku", "get", changelist.format("orderitem"), {"q": sku},
         items.format(where="WHERE i.sku = %s"), [sku]),
        ("Order items ?q=part of sku", "get", changelist.format("orderitem"), {"q": sku[2:-1]},
         items.format(where="WHERE upper(i.sku) LIKE %s"), [f"%{sku[2:-1]}%"]),
        ("Order items ?q=reference", "get", changelist.format("orderitem"), {"q": ref},
         items.format(where="WHERE o.reference = %s"), [ref]),
        ("Item transitions", "get", changelist.format("itemtransition"), {},
         """SELECT t.*, i.sku, o.reference, r.stripe_refund_id FROM refunds_itemtransition t
            JOIN refunds_orderitem i ON i.id = t.item_id JOIN refunds_order o ON o.id = i.order_id
            LEFT JOIN refunds_refund r ON r.id = t.refund_id ORDER BY t.at, t.id LIMIT 100""", []),
        ("Refunds", "get", changelist.format("refund"), {},
         """SELECT r.*, o.reference FROM refunds_refund r JOIN refunds_order o ON o.id = r.order_id
            ORDER BY r.created_at DESC, r.id DESC LIMIT 100""", []),
        ("Stripe events", "get", changelist.format("stripeevent"), {},
         """SELECT e.*, r.stripe_refund_id FROM refunds_stripeevent e LEFT JOIN refunds_refund r ON r.id = e.refund_id
            ORDER BY e.received_at DESC, e.id DESC LIMIT 100""", []),
        ("Order page", "get", ("admin:refunds_order_change", o), {},
         "SELECT * FROM refunds_order o JOIN refunds_orderitem i ON i.order_id = o.id WHERE o.id = %s", [o]),
        ("Item page", "get", ("admin:refunds_orderitem_change", (o - 1) * 3 + 1), {},
         "SELECT * FROM refunds_orderitem i JOIN refunds_itemtransition t ON t.item_id = i.id WHERE i.id = %s",
         [(o - 1) * 3 + 1]),
        ("Refund page", "get", ("admin:refunds_refund_change", o), {},
         "SELECT * FROM refunds_refund r LEFT JOIN refunds_stripeevent e ON e.refund_id = r.id WHERE r.id = %s", [o]),
        ("Refund confirmation (Orders action)", "post", changelist.format("order"),
         {"action": "refund_orders", ACTION_CHECKBOX_NAME: [o], "index": 0},
         "SELECT * FROM refunds_order o JOIN refunds_orderitem i ON i.order_id = o.id WHERE o.id = %s", [o]),
    ]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    benchdb.setup_django(args.database_url, random_page_cost=1.1)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    orders = int(1_000_000 * args.scale)
    load(orders, reload=args.reload)
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True, "email": "bench@example.com"}
    )
    client = Client()
    client.force_login(user)

    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM refunds_order), (SELECT count(*) FROM refunds_orderitem), "
                       "(SELECT count(*) FROM refunds_refund), (SELECT count(*) FROM refunds_itemtransition), "
                       "(SELECT count(*) FROM refunds_stripeevent)")
        counts = cursor.fetchone()
    print(f"{connection.vendor} {connection.pg_version}: {counts[0]:,} orders, {counts[1]:,} items, "
          f"{counts[2]:,} refunds, {counts[3]:,} audit rows, {counts[4]:,} events; median of {args.repeats}")
    print(f"{'page':38} | {'ms':>8} | {'queries':>7} | {'floor ms':>8} | {'× floor':>7}")
    slow = []
    for name, method, url, params, floor_sql, floor_params in pages(orders):
        if args.only and args.only.lower() not in name.lower():
            continue
        path = reverse(url[0], args=[url[1]]) if isinstance(url, tuple) else reverse(url)

        def fetch():
            response = getattr(client, method)(path, params)
            if response.status_code != 200:
                raise SystemExit(f"{name}: {response.status_code}")
            return response

        def floor():
            with connection.cursor() as cursor:
                cursor.execute(floor_sql, floor_params)
                cursor.fetchall()

        ours = median_ms(fetch, args.repeats)
        bare = median_ms(floor, args.repeats)
        with CaptureQueriesContext(connection) as captured:
            fetch()
        print(f"{name:38} | {ours:8.1f} | {len(captured):7} | {bare:8.2f} | {ours / bare:7.0f}", flush=True)
        if ours >= 200:
            slow.append(name)
    print(f"goal: every page under 200 ms: {'met' if not slow else 'NOT met: ' + ', '.join(slow)}")


if __name__ == "__main__":
    main()
