"""Benchmark: refunding one whole order of 1, 100 and 1,000 items through `request_refund`.

For each size it reports the median wall time and the SQL query count of our service, and,
measured in the same run, the floor: the same rows written bare (one refund row, its item
links, the items' new state, their audit rows) with no locks, checks or FSM. The query count
must not grow with the number of items.

    .venv/bin/python bench/request_refund.py                      # SQLite file under var/
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_refund .venv/bin/python bench/request_refund.py
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "refunds_project.settings_dev")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{Path(__file__).resolve().parent.parent / 'var' / 'bench.sqlite3'}")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from refunds import services, tasks  # noqa: E402
from refunds.models import ItemState, ItemTransition, Order, OrderItem, Refund  # noqa: E402

SIZES = (1, 100, 1000)


def make_order(n_items: int, tag: str) -> Order:
    order = Order.objects.create(
        reference=f"BENCH-{tag}-{time.monotonic_ns()}", currency="eur",
        stripe_payment_intent_id="pi_bench", shipping_amount=495,
    )
    OrderItem.objects.bulk_create(
        [OrderItem(order=order, sku=f"SKU-{i}", name=f"Item {i}", amount=1000) for i in range(n_items)]
    )
    return order


def ours(order: Order, user) -> int:
    items = list(order.items.all())
    with CaptureQueriesContext(connection) as queries:
        services.request_refund(items=items, user=user)
    return len(queries)


def floor(order: Order, user) -> int:
    """The same rows, written bare."""
    items = list(order.items.all())
    now = timezone.now()
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        refund = Refund.objects.create(order=order, amount=sum(i.amount for i in items) + 495, currency="eur", created_by=user)
        Refund.items.through.objects.bulk_create(
            [Refund.items.through(refund=refund, orderitem=item) for item in items], batch_size=500
        )
        OrderItem.objects.filter(pk__in=[i.pk for i in items]).update(
            state=ItemState.PAYMENT_REFUND_PENDING, state_changed_at=now
        )
        ItemTransition.objects.bulk_create(
            [ItemTransition(item=item, refund=refund, transition="start_refund", from_state=ItemState.PAYMENT_CAPTURED,
                            to_state=ItemState.PAYMENT_REFUND_PENDING, at=now, by_user=user, by=user.username)
             for item in items], batch_size=500,
        )
    return len(queries)


def measure(fn, size: int, user, repeats: int) -> tuple[float, int]:
    times, counts = [], set()
    for round_ in range(repeats):
        order = make_order(size, f"{fn.__name__}-{size}-{round_}")
        started = time.perf_counter()
        counts.add(fn(order, user))
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    # Measure the request only: the Stripe submission is enqueued on commit, not sent here.
    tasks.submit_refund.delay = lambda refund_id: None
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    print(f"database: {connection.vendor}, median of {args.repeats} runs each")
    print(f"{'items':>6} | {'ours ms':>9} | {'queries':>7} | {'floor ms':>9} | {'floor q':>7} | {'ratio':>5}")
    for size in SIZES:
        our_time, our_queries = measure(ours, size, user, args.repeats)
        floor_time, floor_queries = measure(floor, size, user, args.repeats)
        print(f"{size:>6} | {our_time * 1000:>9.1f} | {our_queries:>7} | {floor_time * 1000:>9.1f} | "
              f"{floor_queries:>7} | {our_time / floor_time:>5.2f}")


if __name__ == "__main__":
    main()
