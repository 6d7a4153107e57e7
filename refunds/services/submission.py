"""Submission: a queued refund sent to Stripe once, however often the task runs (the outbox's
other half; `request_refund` commits the row and enqueues `tasks.submit_refund`)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from .. import gateway, selectors
from ..exceptions import StripeFinalError, StripeRetryableError
from ..models import Refund, RefundStatus
from .audit import Actor
from .stripe_view import StripeView, apply_refund_status, record_stripe_view

logger = logging.getLogger(__name__)


def submit_refund(*, refund_id: int) -> Refund:
    """Send a queued refund to Stripe once, however often this runs.

    Retryable Stripe errors propagate (the task retries with the same idempotency key); a final
    error fails the refund and its items.
    """
    # First, remember the attempt in its own transaction, so that a crash between Stripe's
    # answer and our commit is known to the next attempt, which then asks Stripe before sending.
    with transaction.atomic():
        refund = Refund.objects.select_for_update(no_key=True).get(pk=refund_id)
        if refund.status != RefundStatus.QUEUED:
            return refund
        refund.submit_attempts += 1
        refund.last_submitted_at = timezone.now()
        refund.save(update_fields=["submit_attempts", "last_submitted_at"])

    try:
        # The refund's row stays locked during the Stripe call: a second run of this task
        # waits here, then finds the refund no longer queued.
        with transaction.atomic():
            refund = Refund.objects.select_for_update(no_key=True, of=("self",)).select_related("order").get(pk=refund_id)
            if refund.status != RefundStatus.QUEUED:
                return refund
            answer = None
            if refund.submit_attempts > 1:
                # An earlier attempt may have reached Stripe; its idempotency key may have
                # expired (24 h) and Stripe emulators ignore keys, so look before sending again.
                answer = gateway.find_refund(
                    payment_intent=refund.order.stripe_payment_intent_id, idempotency_key=refund.idempotency_key
                )
            if answer is None:
                answer = gateway.create_refund(
                    payment_intent=refund.order.stripe_payment_intent_id,
                    amount=refund.amount,
                    idempotency_key=refund.idempotency_key,
                    metadata=gateway.refund_metadata(
                        order_reference=refund.order.reference,
                        refund_id=refund.pk,
                        idempotency_key=refund.idempotency_key,
                        item_ids=selectors.item_ids_of(refund),
                    ),
                    reason=refund.reason,
                )
            refund.last_error = ""
            record_stripe_view(view=StripeView.answered(answer), refund=refund, by=Actor.stripe_api())
            logger.info("refund %s sent to Stripe as %s: %s", refund.pk, answer.id, answer.status)
            return refund
    except StripeFinalError as error:
        return _fail_refund(refund_id, error)
    except StripeRetryableError as error:
        Refund.objects.filter(pk=refund_id).update(last_error=f"Stripe unavailable, will retry: {error.message}")
        logger.warning("refund %s: Stripe unavailable, will retry: %s", refund_id, error.message)
        raise


def _fail_refund(refund_id: int, error: StripeFinalError) -> Refund:
    """Stripe refused to create the refund (a 4xx): there is no Stripe refund to have a view
    of, so the refund fails here with Stripe's error kept."""
    with transaction.atomic():
        refund = Refund.objects.select_for_update(no_key=True).get(pk=refund_id)
        if refund.status != RefundStatus.QUEUED:
            return refund
        refund.last_error = f"Stripe refused the refund: {error.message}"
        apply_refund_status(
            refund=refund,
            status=RefundStatus.FAILED,
            failure_reason=f"stripe_error: {error.code or error.message}"[:255],
            by=Actor.stripe_api(),
        )
    logger.error("refund %s refused by Stripe: %s", refund_id, error.message)
    return refund
