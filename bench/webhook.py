"""Benchmark of the Stripe webhook endpoint against its floor, on PostgreSQL.

    .venv/bin/python bench/webhook.py                    # 2,000 events, 3 rounds
    .venv/bin/python bench/webhook.py --events 500 --rounds 1

Each event is a signed `refund.updated` (status `succeeded`) for its own pending refund of one
item, so each one does the real work: store the event, lock refund, order and item, move the
item to `payment refund succeeded`, write its audit row. Bodies and signatures are made before
the clock starts (signing is Stripe's work); they go through the whole Django stack
(middleware, URL routing, the view) with the test client.

The floor, measured in the same run on as many rows: one bare transaction per event that
inserts the event row and updates one item row through the ORM. Within a round, blocks of 50
events of each kind take turns (the machines are shared); the table shows the median round.
A third row times the shared refund service alone (`services.record_stripe_view` after the
refund row lock, one transaction per event), the part of the endpoint's work that is not the
webhook's own. Goal: endpoint ≥ 0.5 × the floor's rate.

With `--gunicorn`, the endpoint runs in gunicorn (sync workers, production settings and
`refunds_project.wsgi` with its webhook intake, DEBUG off, persistent connections, prepared
statements as production's settings have them) and 1 and 4 concurrent senders post the signed
events over HTTP, each sender a process of its own writing whole requests built before the
clock starts. Its floor, with as many concurrent senders, is the issue's: the same rows written
bare with psycopg in one transaction per event — insert the event, lock and update the refund,
update the item, insert the audit row. Also timed, with the same requests: "HTTP alone", a
gunicorn of the same workers serving bench/trivial_wsgi.py (read the body, answer 200), the
part of a delivery that is neither Django nor the database; and the CPU each side spends per
event (gunicorn's processes, the PostgreSQL backends serving its workers, the senders).

    .venv/bin/python bench/webhook.py --gunicorn --events 1000 --rounds 3 --senders 1,4
    ... --plain-django               # Django's own WSGI app, without the intake (bench/plain_wsgi.py)
    ... --prepare-threshold off      # no prepared statements (Django's default)

Uses its own database (default postgres://postgres@127.0.0.1:5432/webhook_bench), created and
migrated on first use. Persistent connections (DATABASE_CONN_MAX_AGE=600), as a production
server keeps them, and log level WARNING, so a console handler does not time the terminal.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import time

import benchdb  # bench/, beside this script

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/webhook_bench"
SECRET = "whsec_bench_secret"
BLOCK = 50


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per round (each its own refund)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--gunicorn", action="store_true", help="through gunicorn over HTTP, concurrent senders")
    parser.add_argument("--senders", default="1,4", help="--gunicorn: concurrent senders, comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="--gunicorn: sync workers")
    parser.add_argument("--port", type=int, default=8613)
    parser.add_argument("--plain-django", action="store_true",
                        help="--gunicorn: serve Django's own WSGI app (bench/plain_wsgi.py), not production's with the intake")
    parser.add_argument("--prepare-threshold", default="",
                        help="--gunicorn: DATABASE_PREPARE_THRESHOLD for the server (default: the settings' 5; off)")
    return parser.parse_args(argv)


def setup_django(database_url: str):
    os.environ["STRIPE_WEBHOOK_SECRET"] = SECRET
    # Persistent connections, as a production server keeps them.
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")
    benchdb.setup_django(database_url)


def make_refunds(count: int, tag: str):
    """`count` orders of one item, each with a Back Office refund pending at Stripe."""
    from django.utils import timezone

    from refunds.models import ItemState, Order, OrderItem, Refund

    now = timezone.now()
    orders = Order.objects.bulk_create(
        [Order(reference=f"WH-{tag}-{i}", currency="eur", stripe_payment_intent_id=f"pi_wh_{tag}_{i}") for i in range(count)]
    )
    items = OrderItem.objects.bulk_create(
        [OrderItem(order=o, sku="SKU-1", name="Item", amount=1000, state=ItemState.PAYMENT_REFUND_PENDING) for o in orders]
    )
    refunds = Refund.objects.bulk_create(
        [Refund(order=o, amount=1000, currency="eur", stripe_refund_id=f"re_wh_{tag}_{i}", status="pending",
                status_changed_at=now) for i, o in enumerate(orders)]
    )
    Refund.items.through.objects.bulk_create(
        [Refund.items.through(refund=r, orderitem=i) for r, i in zip(refunds, items)]
    )
    return list(zip(refunds, items))


def signed_events(pairs, tag: str):
    """(body, Stripe-Signature) per refund, in Stripe's shape (tests/stripe_payloads.py)."""
    from refunds import gateway
    from refunds_dev import stripe_tools
    from tests.stripe_payloads import event, refund_object

    created = int(time.time())
    out = []
    for n, (refund, item) in enumerate(pairs):
        metadata = gateway.refund_metadata(
            order_reference=refund.order.reference, refund_id=refund.pk,
            idempotency_key=refund.idempotency_key, item_ids=[item.pk],
        )
        obj = refund_object(id=refund.stripe_refund_id, status="succeeded", amount=1000, currency="eur",
                            payment_intent=refund.order.stripe_payment_intent_id, metadata=metadata, created=created)
        evt = event("refund.updated", obj, id=f"evt_wh_{tag}_{n}", created=created, previous={"status": "pending"})
        body = json.dumps(evt, indent=2)
        out.append((body.encode(), stripe_tools.sign_payload(body, SECRET)))
    return out


def run_endpoint(events) -> float:
    from django.test import Client

    client = Client()
    started = time.perf_counter()
    for body, signature in events:
        response = client.post("/stripe/webhook/", data=body, content_type="application/json",
                               HTTP_STRIPE_SIGNATURE=signature)
        if response.status_code != 200:
            raise SystemExit(f"endpoint answered {response.status_code}: {response.content[:300]!r}")
    return time.perf_counter() - started


def run_floor(pairs, events, tag: str) -> float:
    from django.db import transaction
    from django.utils import timezone

    from refunds.models import ItemState, OrderItem, StripeEvent

    payloads = [json.loads(body) for body, _ in events]
    started = time.perf_counter()
    for n, ((_, item), payload) in enumerate(zip(pairs, payloads)):
        with transaction.atomic():
            StripeEvent.objects.create(stripe_event_id=f"evt_floor_{tag}_{n}", type=payload["type"], payload=payload)
            OrderItem.objects.filter(pk=item.pk).update(
                state=ItemState.PAYMENT_REFUND_SUCCEEDED, state_changed_at=timezone.now()
            )
    return time.perf_counter() - started


def run_service_only(pairs, tag: str) -> float:
    """The part of the endpoint's work done by the shared refund service: lock the refund row,
    then `services.record_stripe_view` with the event's view (order lock, refund row, items,
    audit), one transaction per event. No HTTP, no signature, no event row."""
    from django.db import transaction
    from django.utils import timezone

    from refunds import services
    from refunds.gateway import StripeRefund
    from refunds.models import Refund
    from refunds.services import Actor

    answers = [
        StripeRefund(id=refund.stripe_refund_id, status="succeeded", amount=1000, currency="eur",
                     payment_intent=refund.order.stripe_payment_intent_id, created=timezone.now())
        for refund, _ in pairs
    ]
    started = time.perf_counter()
    for n, ((refund, _), answer) in enumerate(zip(pairs, answers)):
        with transaction.atomic():
            locked = Refund.objects.select_for_update().get(pk=refund.pk)
            view = services.StripeView.of_event(answer, event_created=answer.created)
            services.record_stripe_view(view=view, refund=locked, by=Actor.stripe_event(f"evt_svc_{tag}_{n}"))
    return time.perf_counter() - started


def queries_per_event(fn) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured)


def check_applied(pairs) -> None:
    from refunds.models import ItemState, OrderItem

    moved = OrderItem.objects.filter(pk__in=[i.pk for _, i in pairs], state=ItemState.PAYMENT_REFUND_SUCCEEDED).count()
    if moved != len(pairs):
        raise SystemExit(f"only {moved} of {len(pairs)} items moved")


def reset_tables():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE refunds_itemtransition, refunds_refund_items, refunds_stripeevent, refunds_refund, "
            "refunds_orderitem, refunds_order RESTART IDENTITY CASCADE"
        )
        cursor.execute("VACUUM ANALYZE")


# --- through gunicorn, with concurrent senders ------------------------------------------------

FLOOR_SQL = [
    "INSERT INTO refunds_stripeevent (stripe_event_id, type, payload, received_at, processed_at, error, refund_id) "
    "VALUES (%s, 'refund.updated', %s::jsonb, now(), now(), '', %s)",
    "SELECT id, status FROM refunds_refund WHERE id = %s FOR NO KEY UPDATE",
    "UPDATE refunds_refund SET status = 'succeeded', status_changed_at = now(), stripe_event_created_at = now() "
    "WHERE id = %s",
    "UPDATE refunds_orderitem SET state = 'payment_refund_succeeded', state_changed_at = now() WHERE id = %s",
    "INSERT INTO refunds_itemtransition (item_id, refund_id, transition, from_state, to_state, at, by) "
    "VALUES (%s, %s, 'refund_succeeded', 'payment_refund_pending', 'payment_refund_succeeded', now(), %s)",
]


def floor_sender(database_url: str, work: list, backend_cpu=None) -> None:
    """One sender of the floor: (event id, body, refund id, item id) per event, one transaction
    each. Adds its PostgreSQL backend's CPU seconds to `backend_cpu` (a shared Value), if given."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        started = cpu_seconds([conn.info.backend_pid])
        for event_id, body, refund_id, item_id in work:
            with conn.transaction():
                conn.execute(FLOOR_SQL[0], [event_id, body, refund_id])
                conn.execute(FLOOR_SQL[1], [refund_id]).fetchone()
                conn.execute(FLOOR_SQL[2], [refund_id])
                conn.execute(FLOOR_SQL[3], [item_id])
                conn.execute(FLOOR_SQL[4], [item_id, refund_id, f"Stripe event {event_id}"])
        if backend_cpu is not None:
            with backend_cpu.get_lock():
                backend_cpu.value += cpu_seconds([conn.info.backend_pid]) - started


def http_request(port: int, body: bytes, signature: str) -> bytes:
    """The whole HTTP request of one delivery, made before the clock starts (as the bodies and
    signatures are): the senders time the server, not the making of requests."""
    head = (
        f"POST /stripe/webhook/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {signature}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def http_sender(port: int, work: list) -> None:
    """One sender of signed events: a new connection per event (gunicorn's sync workers close
    it), the request written whole, the answer read to the end and its status checked."""
    import socket

    for request in work:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200 "):
            raise SystemExit(f"endpoint answered {answer[:300]!r}")


def cpu_seconds(pids) -> float:
    """User and system CPU time of these running processes so far (Linux /proc)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def server_pids(server, database_url: str) -> tuple[list[int], list[int]]:
    """gunicorn's arbiter and workers, and the PostgreSQL backends serving them: by the time the
    senders start, the workers' persistent connections are the database's only clients."""
    import psycopg

    children = [server.pid]
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == server.pid:
                    children.append(int(entry))
        except (OSError, ValueError):
            continue
    with psycopg.connect(database_url) as conn:
        backends = [pid for (pid,) in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )]
    return children, backends


def concurrently(target, args_per_sender: list) -> float:
    """Wall time for every sender (a process each) to finish its share."""
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=target, args=args) for args in args_per_sender]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(f"a sender failed (exit {process.exitcode})")
    return time.perf_counter() - started


def start_gunicorn(args, *, trivial: bool = False, port: int | None = None):
    import subprocess
    import urllib.request

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "refunds_project.settings", "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-" * 8,
        "DJANGO_SECURE_SSL_REDIRECT": "0", "DATABASE_URL": args.database_url, "DATABASE_CONN_MAX_AGE": "600",
        "STRIPE_SECRET_KEY": "sk_test_bench", "STRIPE_WEBHOOK_SECRET": SECRET, "REFUNDS_LOG_LEVEL": "WARNING",
    }
    if args.prepare_threshold:
        env["DATABASE_PREPARE_THRESHOLD"] = args.prepare_threshold
    port = port or args.port
    if trivial:
        app = ["--pythonpath", "bench", "trivial_wsgi"]
    elif args.plain_django:
        app = ["--pythonpath", "bench", "plain_wsgi"]
    else:
        app = ["refunds_project.wsgi"]
    server = subprocess.Popen(
        [os.path.join(benchdb.BASE_DIR, ".venv/bin/gunicorn"), *app, "--bind",
         f"127.0.0.1:{port}", "--workers", str(args.workers), "--worker-class", "sync", "--log-level", "warning"],
        cwd=benchdb.BASE_DIR, env=env,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/stripe/webhook/", timeout=1)
            return server  # the trivial app answers a GET too
        except urllib.error.HTTPError:
            return server  # 405 to a GET: it answers
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def main_gunicorn(args):
    from django.db import connection

    reset_tables()
    senders_list = [int(n) for n in args.senders.split(",")]
    server = start_gunicorn(args)
    trivial = start_gunicorn(args, trivial=True, port=args.port + 1)
    try:
        # Warm every worker (imports, connections) before the clock starts.
        warm = signed_events(make_refunds(4 * args.workers, "warm"), "warm")
        http_sender(args.port, [http_request(args.port, body, signature) for body, signature in warm])
        results, cpus = {}, {}
        for senders in senders_list:
            rounds = []
            for r in range(args.rounds):
                tag = f"{senders}s{r}"
                endpoint_pairs = make_refunds(args.events, f"e{tag}")
                endpoint_events = signed_events(endpoint_pairs, f"e{tag}")
                requests = [http_request(args.port, body, signature) for body, signature in endpoint_events]
                floor_pairs = make_refunds(args.events, f"f{tag}")
                floor_work = [(f"evt_floor_{tag}_{n}", body.decode(), refund.pk, item.pk)
                              for n, ((refund, item), (body, _)) in enumerate(zip(floor_pairs, endpoint_events))]
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE")
                connection.close()  # no connection shared with the forked senders
                share = lambda work: [work[i::senders] for i in range(senders)]  # noqa: E731
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                floor_backends = multiprocessing.get_context("fork").Value("d", 0.0)
                floor_s = concurrently(floor_sender, [(args.database_url, part, floor_backends) for part in share(floor_work)])
                after_floor = resource.getrusage(resource.RUSAGE_CHILDREN)
                workers, backends = server_pids(server, args.database_url)
                before = (cpu_seconds(workers), cpu_seconds(backends))
                endpoint_s = concurrently(http_sender, [(args.port, part) for part in share(requests)])
                after_endpoint = resource.getrusage(resource.RUSAGE_CHILDREN)
                http_s = concurrently(http_sender, [(args.port + 1, part) for part in share(requests)])
                cpu = cpus.setdefault(senders, [0.0, 0.0, 0.0, 0.0, 0.0])
                cpu[0] += after_floor.ru_utime + after_floor.ru_stime - children.ru_utime - children.ru_stime
                cpu[4] += floor_backends.value
                cpu[1] += cpu_seconds(workers) - before[0]
                cpu[2] += cpu_seconds(backends) - before[1]
                cpu[3] += (after_endpoint.ru_utime + after_endpoint.ru_stime
                           - after_floor.ru_utime - after_floor.ru_stime)
                check_applied(endpoint_pairs)
                rounds.append((floor_s, endpoint_s, http_s))
                print(f"{senders} sender(s), round {r + 1}: floor {args.events / floor_s:,.0f}/s, "
                      f"endpoint {args.events / endpoint_s:,.0f}/s, HTTP alone {args.events / http_s:,.0f}/s", flush=True)
            results[senders] = tuple(statistics.median(times) for times in zip(*rounds))
    finally:
        for process in (server, trivial):
            process.terminate()
            process.wait()
    print()
    print(f"gunicorn {args.workers} sync workers, {'plain Django WSGI' if args.plain_django else 'refunds_project.wsgi (intake)'}, "
          f"production settings (DEBUG off), prepare_threshold "
          f"{args.prepare_threshold or 'default (5)'}, PostgreSQL {connection.pg_version}; "
          f"{args.events:,} events x {args.rounds} rounds per row, median")
    print(f"{'senders':>7} | {'floor ev/s':>10} | {'endpoint ev/s':>13} | {'ratio':>5} | {'HTTP alone ev/s':>15}")
    for senders, (floor_s, endpoint_s, http_s) in results.items():
        floor_rate, endpoint_rate = args.events / floor_s, args.events / endpoint_s
        print(f"{senders:7} | {floor_rate:10,.0f} | {endpoint_rate:13,.0f} | {endpoint_rate / floor_rate:5.2f} | "
              f"{args.events / http_s:15,.0f}")
    print("CPU per event, ms (all rounds): floor: senders (psycopg), their PostgreSQL backends | "
          "endpoint: gunicorn, its PostgreSQL backends, senders")
    for senders, cpu in cpus.items():
        per_event = [1000 * seconds / (args.events * args.rounds) for seconds in cpu]
        print(f"{senders:7} | {per_event[0]:5.2f}, {per_event[4]:5.2f} | {per_event[1]:5.2f}, {per_event[2]:5.2f}, "
              f"{per_event[3]:5.2f}")
    met = all(floor_s / endpoint_s >= 0.5 for floor_s, endpoint_s, _ in results.values())
    print(f"goal: endpoint >= 0.50 x floor at every concurrency: {'met' if met else 'NOT met'}")


def main(argv=None):
    args = parse_args(argv)
    setup_django(args.database_url)
    if args.gunicorn:
        return main_gunicorn(args)
    from django.conf import settings
    from django.db import connection

    reset_tables()
    # One event of each kind first, to count queries (and warm up imports and connections).
    warm_pairs = make_refunds(2, "warm")
    warm_events = signed_events(warm_pairs, "warm")
    endpoint_q = queries_per_event(lambda: run_endpoint(warm_events[:1]))
    floor_q = queries_per_event(lambda: run_floor(warm_pairs[1:], warm_events[1:], "warm"))
    warm_service = make_refunds(1, "warm2")
    service_q = queries_per_event(lambda: run_service_only(warm_service, "warm"))

    rounds = []
    for r in range(args.rounds):
        floor_pairs = make_refunds(args.events, f"f{r}")
        floor_events = signed_events(floor_pairs, f"f{r}")
        endpoint_pairs = make_refunds(args.events, f"e{r}")
        endpoint_events = signed_events(endpoint_pairs, f"e{r}")
        service_pairs = make_refunds(args.events, f"s{r}")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        # Small blocks in turn, so that a load spike from other processes hits all three alike.
        floor_s = endpoint_s = service_s = 0.0
        for start in range(0, args.events, BLOCK):
            block = slice(start, start + BLOCK)
            floor_s += run_floor(floor_pairs[block], floor_events[block], f"f{r}_{start}")
            endpoint_s += run_endpoint(endpoint_events[block])
            service_s += run_service_only(service_pairs[block], f"s{r}_{start}")
        for pairs in (floor_pairs, endpoint_pairs, service_pairs):
            check_applied(pairs)
        rounds.append((floor_s, endpoint_s, service_s))
        print(f"round {r + 1}: floor {args.events / floor_s:,.0f}/s, endpoint {args.events / endpoint_s:,.0f}/s, "
              f"service alone {args.events / service_s:,.0f}/s", flush=True)

    floor_s = statistics.median(f for f, _, _ in rounds)
    endpoint_s = statistics.median(e for _, e, _ in rounds)
    service_s = statistics.median(s for _, _, s in rounds)
    db = settings.DATABASES["default"]
    print()
    print(f"database: {connection.vendor} {connection.pg_version if connection.vendor == 'postgresql' else ''} "
          f"({db['NAME']}), CONN_MAX_AGE={db['CONN_MAX_AGE']}, {args.events:,} events x {args.rounds} rounds, median")
    print(f"{'':32} | {'events/s':>9} | {'ms/event':>8} | {'queries':>7} | {'ratio':>5}")
    floor_rate, endpoint_rate = args.events / floor_s, args.events / endpoint_s
    print(f"{'floor (insert event, update item)':32} | {floor_rate:9,.0f} | {1000 * floor_s / args.events:8.2f} | {floor_q:7} | {1:5.2f}")
    print(f"{'POST /stripe/webhook/':32} | {endpoint_rate:9,.0f} | {1000 * endpoint_s / args.events:8.2f} | {endpoint_q:7} | {endpoint_rate / floor_rate:5.2f}")
    service_rate = args.events / service_s
    print(f"{'  of which record_stripe_view':32} | {service_rate:9,.0f} | {1000 * service_s / args.events:8.2f} | {service_q:7} | {service_rate / floor_rate:5.2f}")
    print(f"goal: endpoint >= 0.50 x floor: {'met' if endpoint_rate >= floor_rate / 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
