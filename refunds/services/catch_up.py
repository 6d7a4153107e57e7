"""Catch-up: Stripe's refunds of a time window read in bulk and recorded, in minutes.

When webhooks were lost for hours (an endpoint misconfigured, a secret rotated wrongly),
thousands of refunds stay pending here while Stripe settled them. One fetch per refund (what
reconciliation does for the few it finds each run) would take a day; Stripe's refund list
gives 100 a request (https://docs.stripe.com/api/refunds/list, `created[gte]`/`created[lte]`,
paged with `starting_after`).

Each listed refund is recorded through the one Stripe-view function (`record_stripe_view`) as
a view as of the second its page was asked for, with the ordering rule of an event: an event
applied meanwhile and created after that second wins; a view of the same second makes it fetch
that refund. A refund whose status here is already Stripe's is skipped without a transaction.
Our refunds still pending in the window that the list did not show (created at Stripe before
the window began) are fetched one by one, as reconciliation does.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from .. import gateway
from ..exceptions import StripeGatewayError
from ..gateway import StripeRefund
from ..models import Refund, RefundStatus
from . import locked_rows
from .audit import Actor
from .stripe_view import StripeView, record_stripe_view, sync_refund_from_stripe

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # Stripe's maximum
UNSETTLED = (RefundStatus.PENDING, RefundStatus.REQUIRES_ACTION)


@dataclass
class CatchUpReport:
    listed: int = 0  # Stripe refunds in the window
    changed: int = 0  # of ours (or made outside this system) whose status changed here
    unchanged: int = 0  # already as Stripe says
    fetched: int = 0  # ours the list did not show, fetched one by one
    requests: int = 0  # requests to Stripe: list pages and fetches
    errors: list[str] = field(default_factory=list)


def catch_up_refunds(
    *, since: dt.datetime, until: dt.datetime | None = None, by: Actor | None = None,
    on_page: Callable[[int], None] | None = None,
) -> CatchUpReport:
    """Record Stripe's view of every refund created in [since, until] (default: until now)."""
    until = until or timezone.now()
    by = by or Actor(label="catch-up")
    report = CatchUpReport()
    seen: set[str] = set()
    starting_after = None
    while True:
        requested_at = timezone.now()
        page, has_more = gateway.list_refunds_created(
            since=since, until=until, starting_after=starting_after, limit=PAGE_SIZE
        )
        report.requests += 1
        report.listed += len(page)
        seen.update(stripe_refund.id for stripe_refund in page)
        _record_page(page, requested_at, by, report)
        if on_page is not None:
            on_page(len(page))
        if not has_more or not page:
            break
        starting_after = page[-1].id

    not_listed = (
        Refund.objects.filter(status__in=UNSETTLED, created_at__gte=since, created_at__lte=until)
        .exclude(stripe_refund_id=None).order_by("pk").values_list("pk", "stripe_refund_id")
    )
    for refund_id, stripe_refund_id in not_listed.iterator():
        if stripe_refund_id in seen:
            continue
        report.requests += 1
        report.fetched += 1
        try:
            before = Refund.objects.filter(pk=refund_id).values_list("status", flat=True).get()
            if sync_refund_from_stripe(refund_id=refund_id, by=by).status != before:
                report.changed += 1
        except StripeGatewayError as error:
            report.errors.append(f"refund #{refund_id}: {error.message}")
    logger.info(
        "catch-up %s … %s: %d Stripe refund(s) listed, %d changed here, %d unchanged, %d fetched one by one, "
        "%d request(s), %d error(s)", since.isoformat(), until.isoformat(), report.listed, report.changed,
        report.unchanged, report.fetched, report.requests, len(report.errors),
    )
    return report


def _record_page(page: list[StripeRefund], requested_at: dt.datetime, by: Actor, report: CatchUpReport) -> None:
    known = dict(Refund.objects.filter(stripe_refund_id__in=[r.id for r in page]).values_list("stripe_refund_id", "status"))
    for stripe_refund in page:
        if known.get(stripe_refund.id) == stripe_refund.status:
            report.unchanged += 1
            continue
        try:
            if _record(stripe_refund, requested_at, by):
                report.changed += 1
            else:
                report.unchanged += 1
        except Exception as error:  # noqa: BLE001 — one refund must not stop the catch-up
            logger.exception("catch-up: Stripe refund %s not recorded", stripe_refund.id)
            report.errors.append(f"{stripe_refund.id}: {error.__class__.__name__}: {error}")


def _record(stripe_refund: StripeRefund, requested_at: dt.datetime, by: Actor) -> bool:
    """Record one listed refund; True if its status here changed (or it was recorded anew)."""
    view = StripeView.listed(stripe_refund, requested_at=requested_at)
    with transaction.atomic():
        locked = locked_rows.refund_with_items(stripe_refund.id)
        if locked is not None:
            before = locked.refund.status
            refund = record_stripe_view(view=view, by=by, refund=locked.refund, items=locked.items)
        else:
            before = Refund.objects.filter(stripe_refund_id=stripe_refund.id).values_list("status", flat=True).first()
            refund = record_stripe_view(view=view, by=by)
    return refund is not None and refund.status != before
