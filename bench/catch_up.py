"""Benchmark of the catch-up: 10,000 refunds settled at Stripe (the emulator) while pending here.

    .venv/bin/python bench/catch_up.py                    # 10,000 refunds
    .venv/bin/python bench/catch_up.py --refunds 1000     # quick

The emulator (localstripe through refunds_dev.emulator, which adds the list's `created`
filter; store in memory) gets `--refunds` refunds (localstripe settles every refund at once:
`succeeded`), on one paid PaymentIntent per 100 orders: localstripe lists a charge's refunds by
scanning its whole store each time it shows a PaymentIntent, so one intent per refund makes the
setup quadratic (10,000 took more than 20 minutes), and it does not check over-refunds. Here, on PostgreSQL, each is an order of one item
with a Back Office refund pending at Stripe, as if every webhook had been lost.

Measured in the same run:
- floor: the same refunds listed bare, page by page (`created[gte]`/`[lte]`, `starting_after`,
  100 a page), nothing recorded: the requests any catch-up must make;
- catch-up: `services.catch_up_refunds` over the window (what `manage.py catch_up_refunds` and a
  reconciliation run with a backlog call), until every refund here is succeeded;
- one by one: `sync_refund_from_stripe` (what reconciliation did, 100 a run every 15 minutes)
  for a sample of `--sample` refunds, extrapolated to all of them.

Uses its own database (default postgres://postgres@127.0.0.1:5432/catch_up_bench).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import benchdb  # bench/, beside this script

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/catch_up_bench"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refunds", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=200, help="refunds fetched one by one, for the comparison")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(port: int) -> subprocess.Popen:
    emulator = subprocess.Popen(
        [sys.executable, "-m", "refunds_dev.emulator", "--port", str(port), "--from-scratch", "--memory-only"],
        cwd=benchdb.BASE_DIR, stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return emulator
        time.sleep(0.1)
    emulator.terminate()
    raise SystemExit("the emulator did not start")


class Counted:
    """Counts the calls of the gateway's functions that talk to Stripe."""

    def __init__(self, gateway, names):
        self.calls = 0
        for name in names:
            original = getattr(gateway, name)

            def counted(*args, _original=original, **kwargs):
                self.calls += 1
                return _original(*args, **kwargs)

            setattr(gateway, name, counted)


ORDERS_PER_INTENT = 100


def at_stripe(count: int) -> list[tuple[str, str, int]]:
    """`count` refunds at the emulator: (payment intent, Stripe refund id, amount)."""
    from refunds import gateway
    from refunds_dev import stripe_tools

    intents = [
        stripe_tools.create_paid_payment_intent(amount=1500 * ORDERS_PER_INTENT, currency="eur")
        for _ in range((count + ORDERS_PER_INTENT - 1) // ORDERS_PER_INTENT)
    ]

    def one(n):
        amount, intent = 1000 + n % 500, intents[n // ORDERS_PER_INTENT]
        refund = gateway.create_refund(payment_intent=intent, amount=amount, idempotency_key=f"bench-{n}", metadata={})
        return intent, refund.id, amount

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def pending_here(made) -> list[int]:
    """Our side: an order of one item per Stripe refund, its refund pending, its item pending."""
    from django.db import connection
    from django.utils import timezone

    from refunds.models import ItemState, Order, OrderItem, Refund

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE refunds_attentioncase, refunds_itemtransition, refunds_refund_items, refunds_stripeevent, "
            "refunds_refund, refunds_orderitem, refunds_order RESTART IDENTITY CASCADE"
        )
    now = timezone.now()
    orders = Order.objects.bulk_create(
        Order(reference=f"CU-{n}", currency="eur", stripe_payment_intent_id=intent, created_at=now)
        for n, (intent, _, _) in enumerate(made)
    )
    items = OrderItem.objects.bulk_create(
        OrderItem(order=order, sku="SKU-1", name="Item", amount=amount, state=ItemState.PAYMENT_REFUND_PENDING)
        for order, (_, _, amount) in zip(orders, made)
    )
    refunds = Refund.objects.bulk_create(
        Refund(order=order, amount=amount, currency="eur", stripe_refund_id=stripe_id, status="pending",
               created_at=now, status_changed_at=now)
        for order, (_, stripe_id, amount) in zip(orders, made)
    )
    Refund.items.through.objects.bulk_create(
        Refund.items.through(refund=refund, orderitem=item) for refund, item in zip(refunds, items)
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return [refund.pk for refund in refunds]


def main(argv=None):
    args = parse_args(argv)
    port = free_port()
    os.environ["STRIPE_API_BASE"] = f"http://127.0.0.1:{port}"
    os.environ["STRIPE_SECRET_KEY"] = "sk_test_bench"
    os.environ["STRIPE_SEND_REFUND_REASON"] = "0"
    benchdb.setup_django(args.database_url, random_page_cost=1.1)
    import datetime as dt

    from django.utils import timezone

    from refunds import gateway, services
    from refunds.models import ItemState, OrderItem, Refund
    from refunds.services import Actor

    emulator = start_emulator(port)
    try:
        started = timezone.now() - dt.timedelta(seconds=5)
        step = time.perf_counter()
        made = at_stripe(args.refunds)
        print(f"{args.refunds:,} refunds made at the emulator in {time.perf_counter() - step:.0f} s", flush=True)
        refund_ids = pending_here(made)
        until = timezone.now() + dt.timedelta(seconds=5)

        # Floor: the list, page by page, nothing recorded.
        step, requests, listed, starting_after = time.perf_counter(), 0, 0, None
        while True:
            page, has_more = gateway.list_refunds_created(since=started, until=until, starting_after=starting_after)
            requests += 1
            listed += len(page)
            if not has_more:
                break
            starting_after = page[-1].id
        floor_s, floor_requests = time.perf_counter() - step, requests

        # One by one, on a sample (then put back to pending for the catch-up).
        sample = refund_ids[: args.sample]
        counter = Counted(gateway, ["retrieve_refund", "list_refunds"])
        step = time.perf_counter()
        for refund_id in sample:
            services.sync_refund_from_stripe(refund_id=refund_id, by=Actor.reconciliation())
        one_by_one_s = (time.perf_counter() - step) / len(sample) * len(refund_ids)
        one_by_one_requests = counter.calls / len(sample) * len(refund_ids)
        Refund.objects.filter(pk__in=sample).update(status="pending", stripe_event_created_at=None)
        OrderItem.objects.filter(refunds__in=sample).update(state=ItemState.PAYMENT_REFUND_PENDING)

        counter = Counted(gateway, ["list_refunds_created"])
        step = time.perf_counter()
        report = services.catch_up_refunds(since=started, until=until)
        catch_up_s = time.perf_counter() - step
        settled = Refund.objects.filter(pk__in=refund_ids, status="succeeded").count()
        moved = OrderItem.objects.filter(refunds__in=refund_ids, state=ItemState.PAYMENT_REFUND_SUCCEEDED).count()
    finally:
        emulator.terminate()
        emulator.wait()

    print()
    print(f"{len(refund_ids):,} refunds pending here, succeeded at the emulator (localstripe 1.15.10), PostgreSQL")
    print(f"{'':34} | {'seconds':>8} | {'requests':>8} | {'× floor':>7}")
    print(f"{'floor: list the window, bare':34} | {floor_s:8.1f} | {floor_requests:8,} | {1:7.2f}")
    print(f"{'catch_up_refunds()':34} | {catch_up_s:8.1f} | {report.requests:8,} | {catch_up_s / floor_s:7.2f}")
    print(f"{'one by one (from ' + str(len(sample)) + ', extrapolated)':34} | {one_by_one_s:8.1f} | "
          f"{one_by_one_requests:8,.0f} | {one_by_one_s / floor_s:7.2f}")
    print(f"settled here: {settled:,} refunds succeeded, {moved:,} items payment refund succeeded; "
          f"listed {report.listed:,}, changed {report.changed:,}, fetched one by one {report.fetched:,}, "
          f"errors {len(report.errors)}")


if __name__ == "__main__":
    main()
