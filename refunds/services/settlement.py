"""The two scheduled jobs that finish refunds nobody is watching.

- Settlement: an item `payment refund succeeded` for longer than the settlement period
  (`REFUND_SETTLEMENT_PERIOD`, counted from its *last* entry into that state) becomes
  `payment refunded` through `confirm_refund`, audited as "settlement timeout".
- Reconciliation: a refund whose `submit_refund` task was lost is sent again; a refund that
  Stripe keeps `pending` and whose webhook never came is fetched from Stripe and applied.

Tasks (refunds.tasks) and management commands call these; both are safe to run twice at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import services
from .exceptions import StripeGatewayError
from .models import ItemState, OrderItem, Refund, RefundOrigin, RefundStatus
from .transitions import Actor, transition_items

logger = logging.getLogger(__name__)


# --- Settlement ------------------------------------------------------------------------------

def settlement_cutoff(now: datetime | None = None) -> datetime:
    """Items that entered `payment refund succeeded` before this moment are due."""
    return (now or timezone.now()) - settings.REFUND_SETTLEMENT_PERIOD


def items_due_for_settlement(*, cutoff: datetime | None = None) -> QuerySet[OrderItem]:
    # state_changed_at is rewritten on every transition, so succeeded → failed → succeeded
    # restarts the clock, as an OMS timeout does.
    return OrderItem.objects.filter(
        state=ItemState.PAYMENT_REFUND_SUCCEEDED, state_changed_at__lt=cutoff or settlement_cutoff()
    )


def finalize_due_refunds(
    *, batch_size: int | None = None, on_batch: Callable[[int], None] | None = None
) -> int:
    """Move every item due for settlement to `payment refunded`; return how many moved.

    Streams over the due items in primary-key order, one transaction per batch, so memory
    stays flat however many are due. Rows another run has locked are skipped, not waited for:
    two runs at once share the work and never move an item twice.
    """
    batch_size = batch_size or settings.REFUND_SETTLEMENT_BATCH_SIZE
    cutoff = settlement_cutoff()
    actor = Actor.settlement_timeout()
    moved = after_pk = 0
    while True:
        with transaction.atomic():
            # The WHERE is evaluated again on each row as it is locked (PostgreSQL re-checks a
            # row changed by a transaction that committed meanwhile), so an item whose refund
            # was declined, or succeeded again, in between is not taken.
            items = list(
                items_due_for_settlement(cutoff=cutoff)
                .filter(pk__gt=after_pk)
                .select_for_update(skip_locked=True)
                .order_by("pk")[:batch_size]
            )
            if not items:
                break
            after_pk = items[-1].pk
            count = _confirm_batch(items, by=actor)
        moved += count
        if on_batch is not None:
            on_batch(count)
    logger.info("finalize_refunds: %d item(s) moved to payment refunded (settled before %s)", moved, cutoff)
    return moved


def _confirm_batch(items: list[OrderItem], *, by: Actor) -> int:
    latest = services.latest_refund_ids([item.pk for item in items])
    refunds = _share_lock_refunds(set(latest.values()))
    # An item whose refund another transaction holds (a webhook or a Stripe sync applying a
    # decline right now) waits for the next run: that transaction will lock this item next,
    # and waiting for its refund here, holding the item, could deadlock.
    items = [item for item in items if item.state == ItemState.PAYMENT_REFUND_SUCCEEDED
             and (latest.get(item.pk) is None or latest[item.pk] in refunds)]
    refund_of = {item.pk: refunds.get(latest.get(item.pk)) for item in items}
    transition_items(items, "confirm_refund", by=by, refund_of=refund_of)
    return len(items)


def _share_lock_refunds(refund_ids: set[int]) -> dict[int, Refund]:
    """Take the lock the audit rows' foreign key needs on their refunds now, without waiting;
    return the refunds that got it (all of them on SQLite, which has no row locks)."""
    if not refund_ids:
        return {}
    if connection.vendor != "postgresql":
        return Refund.objects.only("pk").in_bulk(refund_ids)
    # FOR KEY SHARE is what PostgreSQL's foreign-key check takes at commit; it conflicts only
    # with FOR UPDATE (services lock refunds that way), not with another settlement run.
    # Django's select_for_update cannot ask for it.
    locked = Refund.objects.raw(
        f'SELECT id FROM "{Refund._meta.db_table}" WHERE id = ANY(%s::bigint[]) FOR KEY SHARE SKIP LOCKED',
        [sorted(refund_ids)],
    )
    return {refund.pk: refund for refund in locked}


# --- Reconciliation ---------------------------------------------------------------------------

def stale_queued_refunds(*, now: datetime | None = None) -> QuerySet[Refund]:
    """Refunds still waiting for `submit_refund` long after they were created or last sent."""
    cutoff = (now or timezone.now()) - settings.REFUND_RECONCILE_QUEUED_AFTER
    return (
        Refund.objects.filter(status=RefundStatus.QUEUED, origin=RefundOrigin.BACK_OFFICE)
        .annotate(last_try=Coalesce("last_submitted_at", "created_at"))
        .filter(last_try__lt=cutoff)
        .order_by("last_try", "pk")
    )


def stale_pending_refunds(*, now: datetime | None = None) -> QuerySet[Refund]:
    """Refunds Stripe called pending (or requires_action) long ago, not asked about since."""
    cutoff = (now or timezone.now()) - settings.REFUND_RECONCILE_PENDING_AFTER
    return (
        Refund.objects.filter(
            status__in=(RefundStatus.PENDING, RefundStatus.REQUIRES_ACTION), status_changed_at__lt=cutoff
        )
        .filter(Q(last_reconciled_at__isnull=True) | Q(last_reconciled_at__lt=cutoff))
        .annotate(last_look=Coalesce("last_reconciled_at", "status_changed_at"))
        .order_by("last_look", "pk")
    )


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
    limit = limit or settings.REFUND_RECONCILE_LIMIT
    report = ReconcileReport()
    actor = Actor.reconciliation()

    for refund_id, status in stale_queued_refunds().values_list("pk", "status")[:limit]:
        # submit_refund sends with the refund's idempotency key, and asks Stripe by metadata
        # first whenever an earlier attempt was made (its key may have expired after 24 h).
        # A refund never attempted cannot exist at Stripe, whatever its age.
        repair = Repair(refund_id, before=status)
        report.resubmitted.append(repair)
        _attempt(repair, lambda: services.submit_refund(refund_id=refund_id), on_each)

    for refund_id, status in stale_pending_refunds().values_list("pk", "status")[:limit]:
        # Recorded before asking, so a refund Stripe keeps pending, or one that errors, takes
        # its turn after the others rather than first in every run.
        Refund.objects.filter(pk=refund_id).update(last_reconciled_at=timezone.now())
        repair = Repair(refund_id, before=status)
        report.synced.append(repair)
        _attempt(repair, lambda: services.sync_refund_from_stripe(refund_id=refund_id, by=actor), on_each)

    for repair in report.repaired:
        logger.info("reconcile_refunds: refund %s repaired: %s → %s", repair.refund_id, repair.before, repair.after)
    logger.info(
        "reconcile_refunds: %d queued refund(s) sent again, %d pending refund(s) checked with Stripe, "
        "%d repaired, %d error(s)",
        len(report.resubmitted), len(report.synced), len(report.repaired), len(report.errors),
    )
    return report


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
