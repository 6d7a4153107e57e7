"""The Back Office at a million orders (issue 13): totals a search cannot multiply, exact-first
search, counts that never read a whole table, and no changelist query scanning a big table."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from refunds.admin import scale
from refunds.models import ItemState, ItemTransition, Order, OrderItem, Refund, RefundOrigin, RefundStatus, StripeEvent

from .conftest import skip_unless_postgres
from .test_admin_pages import alice_client, busy_order, sent_refund, text_of  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

ORDERS = reverse("admin:refunds_order_changelist")
ITEMS = reverse("admin:refunds_orderitem_changelist")


def stripe_id_of_a_refund(order) -> str:
    return order.refunds.exclude(stripe_refund_id=None).exclude(origin=RefundOrigin.STRIPE_DASHBOARD).first().stripe_refund_id


# --- the multiplied totals ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["reference", "stripe_refund_id", "part_of_reference", "e-mail"])
def test_an_order_found_by_a_search_shows_its_own_totals_not_multiplied_by_its_refunds(
    alice_client, busy_order, back_office_user, fake_stripe, how,
):
    # A second refund on the first item (the first one failed), so the order has three refunds
    # of its own plus the Dashboard's: a join on refunds would count each item several times.
    first = busy_order.items.order_by("pk").first()
    Refund.objects.filter(items=first).update(status=RefundStatus.FAILED)
    OrderItem.objects.filter(pk=first.pk).update(state=ItemState.PAYMENT_REFUND_FAILED)
    sent_refund([first], user=back_office_user, fake_stripe=fake_stripe, status="pending")
    terms = {
        "reference": busy_order.reference,
        "stripe_refund_id": stripe_id_of_a_refund(busy_order),
        "part_of_reference": busy_order.reference[2:-1],
        "e-mail": busy_order.customer_email.upper(),
    }

    response = alice_client.get(ORDERS, {"q": terms[how]})
    text = text_of(response)

    assert list(response.context["cl"].result_list) == [busy_order]
    assert "€40.45" in text  # items 35.50 + shipping 4.95, once
    assert "2 × payment refund pending" in text
    assert "1 × payment captured" in text
    assert "× payment refund succeeded" not in text


# --- exact first, partial text after --------------------------------------------------------


@pytest.mark.parametrize("term", ["id", "reference", "customer_email", "EMAIL IN CAPITALS", "stripe_payment_intent_id",
                                  "stripe_refund_id"])
def test_an_exact_value_finds_its_order(alice_client, busy_order, term):
    others = [Order.objects.create(reference=f"XX-{n}", currency="eur", customer_email=f"o{n}@example.com",
                                   stripe_payment_intent_id=f"pi_other{n}") for n in range(3)]
    query = {
        "id": str(busy_order.pk),
        "EMAIL IN CAPITALS": busy_order.customer_email.upper(),
        "stripe_refund_id": stripe_id_of_a_refund(busy_order),
    }.get(term) or getattr(busy_order, term)

    response = alice_client.get(ORDERS, {"q": f"  {query} "})

    assert list(response.context["cl"].result_list) == [busy_order]
    assert not any(other.reference in text_of(response) for other in others)


def test_an_exact_match_wins_over_partial_matches(alice_client, db):
    exact = Order.objects.create(reference="DE-77", currency="eur")
    Order.objects.create(reference="DE-770", currency="eur")
    Order.objects.create(reference="DE-7712", currency="eur")

    assert list(alice_client.get(ORDERS, {"q": "DE-77"}).context["cl"].result_list) == [exact]
    assert len(alice_client.get(ORDERS, {"q": "e-77"}).context["cl"].result_list) == 3  # partial, any case


@pytest.mark.parametrize("term", ["id", "sku", "reference", "stripe_refund_id"])
def test_an_exact_value_finds_its_items(alice_client, busy_order, term):
    first, second, third = busy_order.items.order_by("pk")
    other = OrderItem.objects.create(order=Order.objects.create(reference="XX-1", currency="eur"), sku="OTHER",
                                     name="Other", amount=100)
    query, expected = {
        "id": (str(second.pk), [second]),
        "sku": (third.sku, [third]),
        "reference": (busy_order.reference, [first, second, third]),
        "stripe_refund_id": (second.refunds.get().stripe_refund_id, [second]),
    }[term]

    found = list(alice_client.get(ITEMS, {"q": query}).context["cl"].result_list)

    assert sorted(found, key=lambda item: item.pk) == expected
    assert other not in found


def test_part_of_a_sku_or_name_finds_items(alice_client, busy_order):
    first = busy_order.items.order_by("pk").first()
    OrderItem.objects.filter(pk=first.pk).update(sku="TEE-RED-XL", name="Organic cotton tee")

    assert [item.pk for item in alice_client.get(ITEMS, {"q": "red-x"}).context["cl"].result_list] == [first.pk]
    assert [item.pk for item in alice_client.get(ITEMS, {"q": "COTTON"}).context["cl"].result_list] == [first.pk]
    assert list(alice_client.get(ITEMS, {"q": "nothing-like-it"}).context["cl"].result_list) == []


# --- counts ---------------------------------------------------------------------------------


def test_a_filtered_list_counts_up_to_the_cap(alice_client, db, monkeypatch):
    monkeypatch.setattr(scale, "COUNT_CAP", 3)
    for n in range(5):
        Order.objects.create(reference=f"CAP-{n}", currency="chf")
    Order.objects.create(reference="OTHER-1", currency="eur")

    chf = alice_client.get(ORDERS, {"currency": "chf"}).context["cl"]
    eur = alice_client.get(ORDERS, {"currency": "eur"}).context["cl"]

    assert chf.result_count == 3
    assert eur.result_count == 1
    assert chf.full_result_count is None  # no second, unfiltered COUNT(*)
    assert "3 or more orders" in text_of(alice_client.get(ORDERS, {"currency": "chf"}))
    assert "1 order " in text_of(alice_client.get(ORDERS, {"currency": "eur"}))


def test_the_refund_confirmation_from_the_orders_action_runs_no_count(alice_client, busy_order):
    with CaptureQueriesContext(connection) as captured:
        response = alice_client.post(ORDERS, {
            "action": "refund_orders", ACTION_CHECKBOX_NAME: [busy_order.pk], "index": 0,
        })

    assert response.status_code == 200
    assert "Refund orders" in text_of(response)
    counts = [query["sql"] for query in captured.captured_queries if "COUNT(" in query["sql"].upper()]
    assert counts == []


def test_currency_filter_offers_currencies_without_reading_the_orders(alice_client, busy_order):
    with CaptureQueriesContext(connection) as captured:
        response = alice_client.get(ORDERS)

    assert "?currency=chf" in response.content.decode()
    assert not any("DISTINCT" in query["sql"].upper() for query in captured.captured_queries)


# --- no scan of a big table (PostgreSQL) ----------------------------------------------------

BIG_TABLES = ["refunds_order", "refunds_orderitem", "refunds_refund", "refunds_refund_items",
              "refunds_itemtransition", "refunds_stripeevent"]


@pytest.fixture
def few_thousand_orders(back_office_user):
    skip_unless_postgres()
    now = timezone.now()
    orders = Order.objects.bulk_create(
        Order(reference=f"SCALE-{n:05d}", customer_email=f"buyer{n}@example.com", currency="eur",
              stripe_payment_intent_id=f"pi_scale{n:05d}", created_at=now - timezone.timedelta(minutes=n))
        for n in range(3000)
    )
    states = [ItemState.PAYMENT_CAPTURED] * 8 + [ItemState.PAYMENT_REFUND_FAILED, ItemState.PAYMENT_REFUNDED]
    items = OrderItem.objects.bulk_create(
        OrderItem(order=order, sku=f"SKU-{(n * 3 + k) % 997:04d}", name=f"Thing {k}", amount=1000,
                  state=states[(n + k) % len(states)])
        for n, order in enumerate(orders) for k in range(3)
    )
    refunds = Refund.objects.bulk_create(
        Refund(order=order, amount=1000, currency="eur", status=RefundStatus.SUCCEEDED,
               stripe_refund_id=f"re_scale{n:05d}")
        for n, order in enumerate(orders[::3])
    )
    Refund.items.through.objects.bulk_create(
        Refund.items.through(refund=refund, orderitem=items[n * 9]) for n, refund in enumerate(refunds)
    )
    ItemTransition.objects.bulk_create(
        ItemTransition(item=item, transition="start_refund", from_state="payment_captured",
                       to_state="payment_refund_pending", by="alice")
        for item in items[::2]
    )
    StripeEvent.objects.bulk_create(
        StripeEvent(stripe_event_id=f"evt_scale{n}", type="refund.updated", payload={}) for n in range(2000)
    )
    with connection.cursor() as cursor:
        for table in BIG_TABLES:
            cursor.execute(f"ANALYZE {table}")
    return orders


def seq_scans(client, url, params) -> list[str]:
    """The big tables that some query of the page reads in full, when PostgreSQL may avoid it."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200
    assert response.context["cl"].result_list is not None
    scanned = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for query in captured.captured_queries:
                sql = query["sql"]
                if not sql.lstrip().upper().startswith("SELECT") or "refunds_" not in sql:
                    continue
                cursor.execute("EXPLAIN " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                scanned += [f"{table} in: {sql[:200]}" for table in BIG_TABLES if f"Seq Scan on {table} " in plan + " "]
        finally:
            cursor.execute("RESET enable_seqscan")
    return scanned


@pytest.mark.postgres
@pytest.mark.parametrize("url, params", [
    (ORDERS, {}),
    (ORDERS, {"item_state": "payment_refund_failed"}),
    (ORDERS, {"currency": "eur"}),
    (ORDERS, {"q": "SCALE-01234"}),
    (ORDERS, {"q": "buyer77@example.com"}),
    (ORDERS, {"q": "pi_scale00042"}),
    (ORDERS, {"q": "re_scale00003"}),
    (ORDERS, {"q": "1234"}),
    (ORDERS, {"q": "ALE-0123"}),
    (ITEMS, {}),
    (ITEMS, {"state": "payment_refund_failed"}),
    (ITEMS, {"q": "SKU-0042"}),
    (ITEMS, {"q": "KU-004"}),
    (ITEMS, {"q": "SCALE-01234"}),
    (ITEMS, {"q": "re_scale00003"}),
    (reverse("admin:refunds_itemtransition_changelist"), {}),
    (reverse("admin:refunds_stripeevent_changelist"), {}),
    (reverse("admin:refunds_refund_changelist"), {}),
])
def test_no_changelist_query_reads_a_whole_big_table(alice_client, few_thousand_orders, url, params):
    alice_client.get(url)  # warm the session and content types

    assert seq_scans(alice_client, url, params) == []


# --- refunds and events: exact first too ----------------------------------------------------


@pytest.mark.parametrize("term", ["id", "stripe_refund_id", "idempotency_key", "reference"])
def test_an_exact_value_finds_its_refunds(alice_client, busy_order, term):
    refund = busy_order.refunds.exclude(origin=RefundOrigin.STRIPE_DASHBOARD).order_by("pk").first()
    other = Order.objects.create(reference="XX-9", currency="eur")
    Refund.objects.create(order=other, amount=100, currency="eur", stripe_refund_id="re_other", status="succeeded")
    query, expected = {
        "id": (str(refund.pk), {refund.pk}),
        "stripe_refund_id": (refund.stripe_refund_id, {refund.pk}),
        "idempotency_key": (refund.idempotency_key, {refund.pk}),
        "reference": (busy_order.reference, set(busy_order.refunds.values_list("pk", flat=True))),
    }[term]

    found = alice_client.get(reverse("admin:refunds_refund_changelist"), {"q": query}).context["cl"].result_list

    assert {r.pk for r in found} == expected


def test_a_partial_value_still_finds_refunds_the_way_it_did(alice_client, busy_order):
    found = alice_client.get(reverse("admin:refunds_refund_changelist"), {"q": busy_order.reference[2:]}).context["cl"]

    assert {r.order_id for r in found.result_list} == {busy_order.pk}


def test_an_event_is_found_by_its_id_or_its_refunds_stripe_id(alice_client, busy_order):
    refund = busy_order.refunds.exclude(stripe_refund_id=None).first()
    event = StripeEvent.objects.create(stripe_event_id="evt_exact_1", type="refund.updated", payload={}, refund=refund)
    StripeEvent.objects.create(stripe_event_id="evt_other_1", type="refund.updated", payload={})
    url = reverse("admin:refunds_stripeevent_changelist")

    assert list(alice_client.get(url, {"q": "evt_exact_1"}).context["cl"].result_list) == [event]
    assert list(alice_client.get(url, {"q": refund.stripe_refund_id}).context["cl"].result_list) == [event]


@pytest.mark.postgres
def test_an_unfiltered_big_list_shows_postgresqls_estimate(alice_client, few_thousand_orders):
    response = alice_client.get(ORDERS)

    assert response.context["cl"].paginator.approximate == "estimate"
    assert "about 3000 orders" in text_of(response)
