"""Settlement: an item `payment refund succeeded` for longer than the settlement period
(`REFUND_SETTLEMENT_PERIOD`, counted from its *last* entry into that state) becomes
`payment refunded` through `confirm_refund`, audited as "settlement timeout".

The beat task (refunds.tasks.finalize_refunds) and `manage.py finalize_refunds` call this; it is
safe to run twice at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import connection, transaction

from .. import selectors
from ..conf import app_settings
from ..models import ItemState, OrderItem, Refund
from .audit import Actor, transition_items

logger = logging.getLogger(__name__)


def finalize_due_refunds(
    *, batch_size: int | None = None, on_batch: Callable[[int], None] | None = None
) -> int:
    """Move every item due for settlement to `payment refunded`; return how many moved.

    Streams over the due items in primary-key order, one transaction per batch, so memory
    stays flat however many are due. Rows another run has locked are skipped, not waited for:
    two runs at once share the work and never move an item twice.
    """
    batch_size = batch_size or app_settings.REFUND_SETTLEMENT_BATCH_SIZE
    cutoff = selectors.settlement_cutoff()
    actor = Actor.settlement_timeout()
    moved = after_pk = 0
    while True:
        with transaction.atomic():
            # The WHERE is evaluated again on each row as it is locked (PostgreSQL re-checks a
            # row changed by a transaction that committed meanwhile), so an item whose refund
            # was declined, or succeeded again, in between is not taken.
            items = list(
                selectors.items_due_for_settlement(cutoff=cutoff)
                .filter(pk__gt=after_pk)
                .select_for_update(skip_locked=True, no_key=True)
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
    latest = selectors.latest_refund_ids([item.pk for item in items])
    refunds = _share_lock_refunds(set(latest.values()))
    # The foreign-key lock on each item's refund is taken now, without waiting: the services
    # hold refunds FOR NO KEY UPDATE, which it does not conflict with, so a webhook applying a
    # decline right now does not hold this up (it waits for the items instead). Anything that
    # holds a refund FOR UPDATE would make its items wait for the next run rather than risk a
    # deadlock, holding the items.
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
    # with FOR UPDATE, which no service takes on refunds (they lock FOR NO KEY UPDATE), so a
    # refund is skipped only if something outside the services holds it that way.
    # Django's select_for_update cannot ask for it.
    locked = Refund.objects.raw(
        f'SELECT id FROM "{Refund._meta.db_table}" WHERE id = ANY(%s::bigint[]) FOR KEY SHARE SKIP LOCKED',
        [sorted(refund_ids)],
    )
    return {refund.pk: refund for refund in locked}
