"""What keeps a changelist fast at a million rows (issue 13): a count that is estimated or
capped, filters whose values come from choices rather than a `SELECT DISTINCT` over the table,
and a search that tries exact, indexed lookups first.

Partial text falls back to `icontains`, which PostgreSQL serves with the trigram GIN indexes of
migration 0006 (`UPPER(col) LIKE '%term%'`); SQLite answers the same, only not as fast.
"""

from __future__ import annotations

from functools import cached_property

from django.contrib import admin
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.http import HttpResponseRedirect

from ..models import Order

# A filtered list counts its rows up to this many; beyond it the page says "1000" and the
# paginator offers ten pages (a narrower filter or search finds the rest). An unfiltered list
# on PostgreSQL shows the planner's estimate (pg_class.reltuples) once it is above this.
COUNT_CAP = 1000


class EstimatedCountPaginator(Paginator):
    """Django's paginator with a count that never reads a whole big table."""

    approximate = ""  # "estimate", "cap" or "" (exact); the list's pagination says which

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        query = queryset.query
        if not query.where and not query.distinct:
            estimate = table_estimate(queryset.model, queryset.db)
            if estimate is not None and estimate > COUNT_CAP:
                self.approximate = "estimate"
                return estimate
        # values("pk"): the count must not compute the page's per-row subqueries.
        counted = queryset.order_by().values("pk")[:COUNT_CAP].count()
        if counted == COUNT_CAP:
            self.approximate = "cap"
        return counted


def table_estimate(model, using: str) -> int | None:
    """PostgreSQL's own row estimate of a table, kept by ANALYZE/autovacuum; None elsewhere."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


class ScaleAdmin(admin.ModelAdmin):
    """Changelist defaults for tables that grow into millions of rows."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def changelist_view(self, request, extra_context=None):
        # An action POST on selected rows (the confirmation page and its "Yes") needs only the
        # selected rows; Django's view would build the whole changelist first, counts included.
        response = self.action_on_selected_rows(request)
        if response is not None:
            return response
        return super().changelist_view(request, extra_context)

    def action_on_selected_rows(self, request):
        if request.method != "POST" or "_save" in request.POST or request.POST.get("select_across") == "1":
            return None
        if not request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) or not self.get_actions(request):
            return None
        response = self.response_action(request, queryset=self.get_queryset(request))
        # Django's own changelist redirects back when an action did not run.
        return response or HttpResponseRedirect(request.get_full_path())


class ChoicesFilter(admin.SimpleListFilter):
    """A list filter over a fixed list of values: no query to find the values."""

    field: str = ""
    values: list[tuple[str, str]] = []

    def lookups(self, request, model_admin):
        return self.values

    def queryset(self, request, queryset):
        if self.value() in {value for value, _ in self.lookup_choices}:
            return queryset.filter(**{self.field: self.value()})
        return queryset


# --- search ---------------------------------------------------------------------------------


def as_pk(term: str) -> int | None:
    return int(term) if term.isdigit() and 0 < int(term) <= 2**63 - 1 else None


def exact_order_ids(term: str) -> list[int]:
    """Orders a pasted value names exactly: id, reference, e-mail, PaymentIntent, Stripe refund id.

    One query, a UNION of index lookups; an OR across them (or across tables) would make the
    planner scan instead.
    """
    from ..models import Refund

    arms = [
        Order.objects.filter(reference=term).order_by().values_list("pk"),
        Order.objects.filter(stripe_payment_intent_id=term).order_by().values_list("pk"),
        Refund.objects.filter(stripe_refund_id=term).order_by().values_list("order_id"),
    ]
    if "@" in term:
        # Served by the index on UPPER(customer_email) (migration 0006).
        arms.append(Order.objects.filter(customer_email__iexact=term).order_by().values_list("pk"))
    if (pk := as_pk(term)) is not None:
        arms.append(Order.objects.filter(pk=pk).order_by().values_list("pk"))
    first, *rest = arms
    return [row[0] for row in first.union(*rest)[:1000]]


def exact_item_ids(term: str) -> list[int]:
    """Items a pasted value names exactly: item id, SKU, or the order's exact values."""
    from ..models import OrderItem, Refund

    arms = [
        OrderItem.objects.filter(sku=term).order_by().values_list("pk"),
        OrderItem.objects.filter(order__reference=term).order_by().values_list("pk"),
        OrderItem.objects.filter(order__stripe_payment_intent_id=term).order_by().values_list("pk"),
        Refund.items.through.objects.filter(refund__stripe_refund_id=term).order_by().values_list("orderitem_id"),
    ]
    if "@" in term:
        arms.append(OrderItem.objects.filter(order__customer_email__iexact=term).order_by().values_list("pk"))
    if (pk := as_pk(term)) is not None:
        arms.append(OrderItem.objects.filter(pk=pk).order_by().values_list("pk"))
    first, *rest = arms
    return [row[0] for row in first.union(*rest)[:1000]]


def exact_refund_ids(term: str) -> list[int]:
    """Refunds a pasted value names exactly: id, Stripe refund id, idempotency key, or their
    order's reference, e-mail or PaymentIntent."""
    from ..models import Refund

    arms = [
        Refund.objects.filter(stripe_refund_id=term).order_by().values_list("pk"),
        Refund.objects.filter(idempotency_key=term).order_by().values_list("pk"),
        Refund.objects.filter(order__reference=term).order_by().values_list("pk"),
        Refund.objects.filter(order__stripe_payment_intent_id=term).order_by().values_list("pk"),
    ]
    if "@" in term:
        arms.append(Refund.objects.filter(order__customer_email__iexact=term).order_by().values_list("pk"))
    if (pk := as_pk(term)) is not None:
        arms.append(Refund.objects.filter(pk=pk).order_by().values_list("pk"))
    first, *rest = arms
    return [row[0] for row in first.union(*rest)[:1000]]


def exact_event_ids(term: str) -> list[int]:
    """Stripe events a pasted value names exactly: the event id, or its refund's Stripe id."""
    from ..models import StripeEvent

    arms = [
        StripeEvent.objects.filter(stripe_event_id=term).order_by().values_list("pk"),
        StripeEvent.objects.filter(refund__stripe_refund_id=term).order_by().values_list("pk"),
        StripeEvent.objects.filter(refund__order__reference=term).order_by().values_list("pk"),
    ]
    first, *rest = arms
    return [row[0] for row in first.union(*rest)[:1000]]


def partial_match(queryset, term: str, fields: list[str]):
    """Every word of `term` in one of `fields` (Django's search, on a table's own columns only,
    so each word is a BitmapOr of trigram index scans)."""
    for word in term.split():
        condition = Q()
        for field in fields:
            condition |= Q(**{f"{field}__icontains": word})
        queryset = queryset.filter(condition)
    return queryset


class ExactFirstSearch:
    """`get_search_results` for ModelAdmins: exact lookups first; partial text only when nothing
    matches exactly. Never joins, so it never multiplies rows (the old search joined refunds).
    Without `partial_search_fields`, partial text is Django's own search over `search_fields`
    (no index serves it: slow at this size, but it finds what it used to)."""

    exact_ids = staticmethod(lambda term: [])  # term -> the pks it names exactly
    partial_search_fields: list[str] = []

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        ids = self.exact_ids(term)
        if ids:
            return queryset.filter(pk__in=ids), False
        if not self.partial_search_fields:
            return super().get_search_results(request, queryset, search_term)
        return partial_match(queryset, term, self.partial_search_fields), False

