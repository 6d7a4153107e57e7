"""The finance export (DESIGN.md §9): refunds as CSV rows, streamed.

Memory does not grow with the number of refunds: the refunds are read in keyset pages of
`PAGE_SIZE` in (created_at, id) order — one query per page for the refunds (order, users
joined) and one for their items' SKUs — and each row is handed on as soon as it is built.
`manage.py export_refunds` writes the rows to a file, the admin action `export_refunds_csv`
into a `StreamingHttpResponse`.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterator

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from ..models import Refund
from ..money import major_units

EXPORT_COLUMNS = [
    "refund_id", "stripe_refund_id", "order_reference", "payment_intent", "currency", "amount", "amount_minor",
    "shipping_amount_minor", "status", "failure_reason", "reason", "origin", "requested_by", "approved_by",
    "created_at", "item_skus",
]
PAGE_SIZE = 2000
SKU_SEPARATOR = " "
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection):
# text typed by people (SKUs, references, reasons) gets a leading apostrophe, as OWASP advises.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def refunds_created_between(since: dt.date, until: dt.date | None = None) -> QuerySet[Refund]:
    """Refunds created on `since` through `until` (whole UTC days, both included)."""
    start = dt.datetime.combine(since, dt.time.min, tzinfo=dt.timezone.utc)
    refunds = Refund.objects.filter(created_at__gte=start)
    if until is not None:
        end = dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min, tzinfo=dt.timezone.utc)
        refunds = refunds.filter(created_at__lt=end)
    return refunds


def export_rows(
    refunds: QuerySet[Refund], *, page_size: int = PAGE_SIZE, on_page: Callable[[int], None] | None = None
) -> Iterator[list[str]]:
    """One row of `EXPORT_COLUMNS` per refund, oldest first, streamed page by page."""
    username = get_user_model().USERNAME_FIELD
    fields = [
        "pk", "stripe_refund_id", "order__reference", "order__stripe_payment_intent_id", "currency", "amount",
        "shipping_amount", "status", "failure_reason", "reason", "origin", f"created_by__{username}",
        f"approved_by__{username}", "created_at",
    ]
    rows = refunds.order_by("created_at", "pk").values_list(*fields)
    after: tuple[dt.datetime, int] | None = None
    while True:
        page_rows = rows
        if after is not None:
            created, pk = after
            # (created_at, id) > (created, pk), written so that the created_at index bounds the scan:
            # a bare OR of the two makes PostgreSQL read every row for every page.
            page_rows = rows.filter(Q(created_at__gte=created) & (Q(created_at__gt=created) | Q(pk__gt=pk)))
        page = list(page_rows[:page_size])
        if not page:
            return
        # The page's refunds as a subquery, not 2,000 ids as parameters: each parameter costs
        # Django and psycopg more than PostgreSQL spends running the page query again.
        skus = _skus_of(page_rows.values("pk")[:page_size])
        for row in page:
            yield _row(row, skus.get(row[0], []))
        if on_page is not None:
            on_page(len(page))
        after = (page[-1][-1], page[-1][0])


def _skus_of(refund_ids: QuerySet) -> dict[int, list[str]]:
    links = (
        Refund.items.through.objects.filter(refund_id__in=refund_ids)
        .order_by("refund_id", "orderitem_id")
        .values_list("refund_id", "orderitem__sku")
    )
    skus: dict[int, list[str]] = defaultdict(list)
    for refund_id, sku in links:
        skus[refund_id].append(sku)
    return skus


def _row(row: tuple, skus: list[str]) -> list[str]:
    (pk, stripe_id, reference, payment_intent, currency, amount, shipping, status, failure_reason, reason,
     origin, requested_by, approved_by, created_at) = row
    return [
        str(pk),
        _text(stripe_id),
        _text(reference),
        _text(payment_intent),
        currency,
        major_units(amount, currency),
        str(amount),
        str(shipping),
        status,
        _text(failure_reason),
        _text(reason),
        origin,
        _text(requested_by),
        _text(approved_by),
        created_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        _text(SKU_SEPARATOR.join(skus)),
    ]


def _text(value) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file that hands back what is written to it: csv.writer then returns each line."""

    def write(self, value: str) -> str:
        return value


def csv_lines(refunds: QuerySet[Refund], **options) -> Iterator[str]:
    """The header, then one CSV line per refund (for a StreamingHttpResponse)."""
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_COLUMNS)
    for row in export_rows(refunds, **options):
        yield writer.writerow(row)
