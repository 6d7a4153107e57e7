"""Reconciliation: refunds nobody heard of again are repaired from Stripe.

- A refund whose `submit_refund` task was lost (broker down, worker killed) is still queued
  long after it was requested: it is sent again, with its idempotency key, after a lookup at
  Stripe by metadata if an earlier attempt may have reached it.
- A refund Stripe keeps `pending` and whose webhook never came is fetched from Stripe and the
  fetch recorded through the one Stripe-view function (`stripe_view.sync_refund_from_stripe`).
  When more than a few are stale (webhooks lost for hours), the refunds of their time window
  are first read from Stripe's list, 100 a request (`catch_up.catch_up_refunds`), so a backlog
  of thousands is settled in one run instead of a hundred a run.
- Needs attention: refunds pending at Stripe for days (`stuck_pending`) or left awaiting
  approval (`awaiting_approval`) become cases, and alerts no task delivered are sent.

The beat task (refunds.tasks.reconcile_refunds) and `manage.py reconcile_refunds` call this; it
is safe to run twice at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Min
from django.utils import timezone

from .. import selectors
from ..conf import app_settings
from ..exceptions import StripeGatewayError
from ..models import Refund
from . import alerts, attention
from .audit import Actor
from .catch_up import CatchUpReport, catch_up_refunds
from .stripe_view import sync_refund_from_stripe
from .submission import submit_refund

logger = logging.getLogger(__name__)

# More stale pending refunds than this: read their window from Stripe's list first. Listing
# costs a request per 100 refunds of the account in the window; fetching, one per refund.
CATCH_UP_ABOVE = 20
# Stripe keeps events for 30 days; a longer window is no webhook loss but a stuck refund.
CATCH_UP_MAX_WINDOW = timedelta(days=30)


@dataclass
class Repair:
    refund_id: int
    before: str
    after: str = ""
    error: str = ""

    @property
    def changed(self) -> bool:
        return not self.error and self.after != self.before


@dataclass
class ReconcileReport:
    resubmitted: list[Repair] = field(default_factory=list)
    synced: list[Repair] = field(default_factory=list)
    cases_opened: int = 0  # needs-attention cases (stuck_pending, awaiting_approval)
    alerts_sent: int = 0  # alerts a lost or exhausted task had not delivered
    alerts_failed: int = 0
    caught_up: CatchUpReport | None = None  # the bulk read, when there was a backlog

    @property
    def errors(self) -> list[Repair]:
        return [repair for repair in self.resubmitted + self.synced if repair.error]

    @property
    def repaired(self) -> list[Repair]:
        return [repair for repair in self.resubmitted + self.synced if repair.changed]

    def as_dict(self) -> dict:
        return {
            "resubmitted": len(self.resubmitted),
            "synced": len(self.synced),
            "repaired": len(self.repaired),
            "errors": len(self.errors),
        }


def reconcile_refunds(
    *, limit: int | None = None, on_each: Callable[[Repair], None] | None = None
) -> ReconcileReport:
    """Send stale queued refunds again and settle stale pending ones from Stripe's answer.

    At most `limit` (REFUND_RECONCILE_LIMIT) refunds of each kind per run, oldest first. An
    error on one refund is logged and kept in the report; the others are still handled.
    """
    limit = limit or app_settings.REFUND_RECONCILE_LIMIT
    report = ReconcileReport()
    actor = Actor.reconciliation()

    for refund_id, status in selectors.stale_queued_refunds().values_list("pk", "status")[:limit]:
        # submit_refund sends with the refund's idempotency key, and asks Stripe by metadata
        # first whenever an earlier attempt was made (its key may have expired after 24 h).
        # A refund never attempted cannot exist at Stripe, whatever its age.
        repair = Repair(refund_id, before=status)
        report.resubmitted.append(repair)
        _attempt(repair, lambda: submit_refund(refund_id=refund_id), on_each)

    report.caught_up = _catch_up_backlog()

    for refund_id, status in selectors.stale_pending_refunds().values_list("pk", "status")[:limit]:
        # Recorded before asking, so a refund Stripe keeps pending, or one that errors, takes
        # its turn after the others rather than first in every run.
        Refund.objects.filter(pk=refund_id).update(last_reconciled_at=timezone.now())
        repair = Repair(refund_id, before=status)
        report.synced.append(repair)
        _attempt(repair, lambda: sync_refund_from_stripe(refund_id=refund_id, by=actor), on_each)

    _needs_attention(report, limit)

    for repair in report.repaired:
        logger.info("reconcile_refunds: refund %s repaired: %s → %s", repair.refund_id, repair.before, repair.after)
    logger.info(
        "reconcile_refunds: %d queued refund(s) sent again, %d pending refund(s) checked with Stripe, "
        "%d repaired, %d error(s)",
        len(report.resubmitted), len(report.synced), len(report.repaired), len(report.errors),
    )
    return report


def _catch_up_backlog() -> CatchUpReport | None:
    stale = selectors.stale_pending_refunds()
    if stale.count() <= CATCH_UP_ABOVE:
        return None
    now = timezone.now()
    oldest = stale.aggregate(oldest=Min("created_at"))["oldest"]
    since = max(oldest, now - CATCH_UP_MAX_WINDOW)
    try:
        return catch_up_refunds(since=since, until=now, by=Actor.reconciliation())
    except StripeGatewayError as error:
        # The one-by-one fetches below still run, as before.
        logger.warning("reconcile_refunds: listing Stripe's refunds failed: %s", error.message)
        return None


def _needs_attention(report: ReconcileReport, limit: int) -> None:
    # After the repairs, so a refund the sync just settled is not reported stuck. A failure
    # here is logged; the refunds above are repaired whatever happens to the alerts.
    try:
        report.cases_opened = attention.open_stale_cases(limit=limit)
        report.alerts_sent, report.alerts_failed = alerts.send_unsent_alerts(limit=limit)
    except Exception:  # noqa: BLE001
        logger.exception("reconcile_refunds: needs-attention cases or alerts failed")
    if report.cases_opened or report.alerts_sent or report.alerts_failed:
        logger.info(
            "reconcile_refunds: %d needs-attention case(s) opened, %d alert(s) sent, %d alert(s) still failing",
            report.cases_opened, report.alerts_sent, report.alerts_failed,
        )


def _attempt(repair: Repair, call: Callable[[], Refund], on_each: Callable[[Repair], None] | None) -> None:
    # One refund that fails (Stripe down, a refund Stripe does not know, a bug) must not keep
    # the others from being repaired; it is logged and tried again next run.
    try:
        repair.after = call().status
    except StripeGatewayError as error:
        repair.error = error.message
        logger.warning("reconcile_refunds: refund %s not repaired, Stripe: %s", repair.refund_id, error.message)
    except Exception as error:  # noqa: BLE001
        repair.error = str(error) or error.__class__.__name__
        logger.exception("reconcile_refunds: refund %s not repaired: %s", repair.refund_id, repair.error)
    if on_each is not None:
        on_each(repair)
