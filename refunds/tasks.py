"""Celery tasks: each takes ids, calls one service, and turns its exceptions into retries."""

import logging

from celery import shared_task

from . import services
from .exceptions import StripeRetryableError
from .models import Refund

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(StripeRetryableError,),
    retry_backoff=5,  # 5 s, 10 s, 20 s … with jitter, capped below
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=10,  # then reconcile_refunds picks the still-queued refund up
)
def submit_refund(refund_id: int) -> str:
    try:
        refund = services.submit_refund(refund_id=refund_id)
    except Refund.DoesNotExist:
        logger.error("submit_refund: refund %s does not exist", refund_id)
        return "missing"
    return refund.status


@shared_task
def finalize_refunds() -> int:
    """Celery beat: items succeeded longer than the settlement period become payment refunded."""
    return services.finalize_due_refunds()


@shared_task
def reconcile_refunds() -> dict:
    """Celery beat: send lost refunds again, settle pending ones whose webhook never came."""
    return services.reconcile_refunds().as_dict()
