"""Benchmark: the REST API against the same service calls made directly, on PostgreSQL.

Two operations, each measured both ways in the same run:

- order creation: `POST /api/v1/orders/` (an order of 3 lines, 4 units) against
  `services.create_order(...)` with the same values;
- refund requests: `POST /api/v1/orders/<reference>/refunds/` for one item, with an
  `Idempotency-Key` and without, against `services.refund_order(...)` with the same arguments.

The API goes through the whole Django stack with the test client (middleware, the Bearer token,
the per-token throttle, parsing, serializers, problem handling); the submission to Stripe is
enqueued after commit and not run (as in bench/request_refund.py). Blocks of `--block` requests of
each kind take turns, so load from other processes hits all of them alike; median of `--rounds`.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/wt12 .venv/bin/python bench/api.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdb import setup_django  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block", type=int, default=25)
    args = parser.parse_args()

    setup_django(os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wt12"))
    os.environ.setdefault("REFUNDS_LOG_LEVEL", "WARNING")

    import logging

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    from refunds import services, tasks
    from refunds.api.tokens import create_api_token
    from refunds.models import Order

    logging.getLogger("refunds").setLevel(logging.WARNING)
    setup_test_environment()  # the test client's settings (ALLOWED_HOSTS gets "testserver")
    settings.REFUND_API_THROTTLE_RATE = "1000000/second"  # measure the API, not the throttle
    tasks.submit_refund.delay = lambda refund_id: None
    user, _ = get_user_model().objects.get_or_create(
        username="bench-api", defaults={"is_staff": True, "is_superuser": True}
    )
    _, token = create_api_token(user=user, name="bench")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))

    def order_values() -> dict:
        return {
            "reference": f"B-{run}-{next(counter)}", "currency": "eur", "payment_intent": "pi_bench0001",
            "customer_email": "bench@example.com", "shipping_amount": 495,
            "items": [{"sku": "SHIRT-M", "name": "Linen shirt, M", "amount": 4990},
                      {"sku": "SOCKS-3", "name": "Wool socks", "amount": 1200, "quantity": 2},
                      {"sku": "TOTE", "name": "Canvas tote", "amount": 1500}],
        }

    def service_order(values: dict) -> tuple:
        return services.create_order(**{**values, "items": [services.ItemLine(**line) for line in values["items"]]})

    # --- the four ways, each a callable taking one prepared argument --------------------------
    def create_api(values):
        response = client.post("/api/v1/orders/", json.dumps(values), content_type="application/json")
        assert response.status_code == 201, response.content

    def create_direct(values):
        assert service_order(values)[1]

    def refund_api_key(order):
        response = client.post(
            f"/api/v1/orders/{order.reference}/refunds/", json.dumps({"items": [order.first_item]}),
            content_type="application/json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
        )
        assert response.status_code == 201, response.content

    def refund_api(order):
        response = client.post(
            f"/api/v1/orders/{order.reference}/refunds/", json.dumps({"items": [order.first_item]}),
            content_type="application/json",
        )
        assert response.status_code == 201, response.content

    def refund_direct(order):
        services.refund_order(order=order, user=user, items=[order.first_item])

    def fresh_order() -> Order:
        order, _ = service_order(order_values())
        order.first_item = order.items.order_by("pk").values_list("pk", flat=True).first()
        return order

    kinds = {
        "POST /api/v1/orders/": (create_api, order_values),
        "services.create_order": (create_direct, order_values),
        "POST …/refunds/ + Idempotency-Key": (refund_api_key, fresh_order),
        "POST …/refunds/": (refund_api, fresh_order),
        "services.refund_order": (refund_direct, fresh_order),
    }

    queries = {}
    for name, (action, prepare) in kinds.items():  # warm-up, and the query count of one call
        action(prepare())
        argument = prepare()
        with CaptureQueriesContext(connection) as captured:
            action(argument)
        queries[name] = len(captured)

    rounds: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(args.rounds):
        spent = dict.fromkeys(kinds, 0.0)
        done = 0
        while done < args.requests:
            block = min(args.block, args.requests - done)
            for name, (action, prepare) in kinds.items():
                prepared = [prepare() for _ in range(block)]
                started = time.perf_counter()
                for argument in prepared:
                    action(argument)
                spent[name] += time.perf_counter() - started
            done += block
        for name in kinds:
            rounds[name].append(args.requests / spent[name])

    rate = {name: statistics.median(values) for name, values in rounds.items()}
    print(f"database: {connection.vendor} {connection.pg_version if connection.vendor == 'postgresql' else ''} "
          f"({connection.settings_dict['NAME']}), {args.requests:,} requests of each kind x {args.rounds} rounds, median")
    print(f"{'':36} | {'req/s':>7} | {'ms/req':>7} | {'queries':>7} | {'API / direct':>12}")
    for name in kinds:
        direct = "services.create_order" if "orders/" in name or "create_order" in name else "services.refund_order"
        print(f"{name:36} | {rate[name]:>7.0f} | {1000 / rate[name]:>7.2f} | {queries[name]:>7} | "
              f"{rate[name] / rate[direct]:>12.2f}")


if __name__ == "__main__":
    main()
