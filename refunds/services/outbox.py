"""The outbox's sending half: after commit, each new refund's `submit_refund` task is enqueued.

The refund rows are committed first (status `queued`); the task is only a nudge. If the broker
cannot be reached, the refunds are still queued and `reconcile_refunds` sends them once they are
older than `REFUND_RECONCILE_QUEUED_AFTER` (DESIGN.md §3), so a broker error must never reach
the caller as a failure of a refund that was made: it is logged once, and each refund says
whether its task went out (`refund.task_enqueued`), so the Back Office and the API can word
their success accordingly.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import transaction

from ..models import Refund

logger = logging.getLogger(__name__)

QUEUE_UNREACHABLE = "queued; it will be sent as soon as the task queue is reachable"


def submit_after_commit(refunds: Sequence[Refund]) -> None:
    """Enqueue `submit_refund` for each refund once the current transaction commits.

    Sets `refund.task_enqueued` on each: None until the commit, then True or False.
    """
    for refund in refunds:
        refund.task_enqueued = None
    if refunds:
        transaction.on_commit(lambda: enqueue_submissions(refunds))


def enqueue_submissions(refunds: Sequence[Refund]) -> bool:
    """Send each refund's task now; on the first broker error, log it once and leave this
    refund and the rest to reconciliation. Returns whether every task went out."""
    from ..tasks import submit_refund  # tasks import services

    for index, refund in enumerate(refunds):
        try:
            submit_refund.delay(refund.pk)
        except Exception as error:  # noqa: BLE001 — kombu's OperationalError, a socket error, a full disk …
            left = refunds[index:]
            for unsent in left:
                unsent.task_enqueued = False
            logger.error(
                "task queue unreachable, %d refund(s) left queued for reconcile_refunds (%s): %s: %s",
                len(left), ", ".join(f"#{unsent.pk}" for unsent in left), error.__class__.__name__, error,
            )
            return False
        refund.task_enqueued = True
    return True
