"""Celery tasks: each takes ids, calls one service, and turns its exceptions into retries."""

import logging

from celery import shared_task

from . import services
from .exceptions import AlertNotDelivered, StripeRetryableError
from .models import AttentionCase, Refund

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


@shared_task(
    autoretry_for=(AlertNotDelivered,),
    retry_backoff=30,  # 30 s, 1 min, 2 min … with jitter, capped below
    retry_backoff_max=1800,
    retry_jitter=True,
    max_retries=8,  # then reconcile_refunds sends the alert still unsent
)
def send_attention_alert(case_id: int) -> str:
    """After a case is opened: its alert by e-mail and webhook (services.alerts), once."""
    try:
        case = services.deliver_alert(case_id=case_id)
    except AttentionCase.DoesNotExist:
        logger.error("send_attention_alert: case %s does not exist", case_id)
        return "missing"
    return "sent" if case.alert_sent_at else "pending"
