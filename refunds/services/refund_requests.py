"""The refund process's business rules. Admin actions, views and tasks call these; nothing else
writes refunds or moves items.

Locks are always taken in the same order: refund, then order, then the order's items.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone
from django_fsm import can_proceed

from . import gateway
from .exceptions import NothingToRefund, OrderNotRefundable, RefundError, StripeFinalError, StripeRetryableError
from .gateway import StripeRefund
from .models import ItemState, Order, OrderItem, Refund, RefundOrigin, RefundReason, RefundStatus
from .planning import plan_refunds
from .transitions import Actor, transition_items

logger = logging.getLogger(__name__)


def request_refund(
    *, items: Iterable[OrderItem | int], user, reason: str = "", note: str = ""
) -> list[Refund]:
    """Refund the given items: one `Refund` per order, queued for Stripe once committed.

    Everything is checked with the orders and their items locked; a request that cannot be
    honoured in full raises a `RefundError` and writes nothing.
    """
    from .tasks import submit_refund  # tasks import services

    item_ids = {item if isinstance(item, int) else item.pk for item in items}
    if not item_ids:
        raise NothingToRefund("Select at least one item to refund.")
    if reason and reason not in RefundReason.values:
        raise RefundError(f"Unknown refund reason {reason!r}; choose one of {', '.join(RefundReason.values)}.")
    actor = Actor.of_user(user)

    with transaction.atomic():
        order_ids = OrderItem.objects.filter(pk__in=item_ids).values("order_id")
        # Every refund request for an order queues on the order's row lock, so two Back Office
        # users refunding the same item cannot both see it refundable.
        orders = list(Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk"))
        all_items = list(OrderItem.objects.select_for_update().filter(order__in=orders).order_by("pk"))
        missing = item_ids - {item.pk for item in all_items}
        if missing:
            raise RefundError(f"Item(s) {', '.join(map(str, sorted(missing)))} do not exist.")
        orders_by_id = {order.pk: order for order in orders}
        for item in all_items:
            item.order = orders_by_id[item.order_id]

        plans = plan_refunds(orders=orders, items=all_items, selected_ids=item_ids)
        problems = [problem for plan in plans for problem in plan.problems]
        problems += [f"{blocked.item} cannot be refunded: {blocked.reason}." for plan in plans for blocked in plan.blocked]
        if problems:
            raise OrderNotRefundable(" ".join(problems))

        refunds = []
        for plan in plans:
            refund = Refund.objects.create(
                order=plan.order,
                amount=plan.amount,
                shipping_amount=plan.shipping_amount,
                currency=plan.order.currency,
                reason=reason,
                note=note,
                created_by=actor.user,
            )
            Refund.items.through.objects.bulk_create(
                [Refund.items.through(refund=refund, orderitem=item) for item in plan.items], batch_size=500
            )
            transition_items(plan.items, "start_refund", by=actor, refund=refund)
            # The outbox: the refund row commits first; if the broker is down the task is
            # lost, and reconcile_refunds sends the still-queued refund later.
            transaction.on_commit(partial(submit_refund.delay, refund.pk))
            refunds.append(refund)
            logger.info(
                "refund %s queued: %d item(s) of order %s, %s",
                refund.pk, len(plan.items), plan.order.reference, plan.money(plan.amount),
            )
    return refunds


# The fields of a refund that apply_refund_status and its callers write.
STRIPE_VIEW_FIELDS = [
    "status", "status_changed_at", "failure_reason", "stripe_refund_id", "stripe_event_created_at", "last_error",
]

# Which transition a Stripe refund status fires on the items it covers (DESIGN.md §1).
STATUS_TRANSITIONS = {
    RefundStatus.SUCCEEDED: "refund_succeeded",
    RefundStatus.FAILED: "refund_failed",
    RefundStatus.CANCELED: "refund_failed",
    RefundStatus.PENDING: None,
    RefundStatus.REQUIRES_ACTION: None,
}


def apply_refund_status(*, refund: Refund, status: str, by: Actor, failure_reason: str = "") -> list[OrderItem]:
    """Record Stripe's status for `refund` and move its items accordingly; the one place that
    maps a Stripe refund status onto items. Returns the items that moved.

    An item moves only if this refund is its latest one: a late word about an old, failed
    refund must not move an item that a newer refund is handling.
    """
    if status not in STATUS_TRANSITIONS:
        raise ValueError(f"unknown Stripe refund status {status!r}")
    # No savepoint: callers run this inside their own transaction, and an error aborts it whole.
    with transaction.atomic(savepoint=False):
        if refund.origin != RefundOrigin.BACK_OFFICE:
            # A Dashboard refund has no items to lock; its status changes what request_refund may
            # still refund, which it reads under the order's lock.
            Order.objects.select_for_update().filter(pk=refund.order_id).get()
        if refund.status != status:
            refund.status = status
            refund.status_changed_at = timezone.now()
        failed = status in (RefundStatus.FAILED, RefundStatus.CANCELED)
        refund.failure_reason = (failure_reason or status) if failed else ""
        # Only what Stripe's word (and the callers before us) may change on the row.
        refund.save(update_fields=STRIPE_VIEW_FIELDS)

        transition = STATUS_TRANSITIONS[status]
        if transition is None or refund.origin != RefundOrigin.BACK_OFFICE:
            return []
        # The items' row locks serialize this with request_refund, which locks every item of
        # the order before it reads the order's refunds.
        items = list(
            OrderItem.objects.select_for_update(of=("self",))
            .filter(refunds=refund)
            .annotate(latest_refund_id=Subquery(_latest_refund_of_item))
            .order_by("pk")
        )
        movable = [item for item in items if item.latest_refund_id == refund.pk and _can_fire(item, transition)]
        return transition_items(movable, transition, by=by, refund=refund)


# An item's newest refund (ids grow with creation), as a subquery on OrderItem.
_latest_refund_of_item = (
    Refund.items.through.objects.filter(orderitem_id=OuterRef("pk")).order_by("-refund_id").values("refund_id")[:1]
)


def latest_refund_ids(item_ids: list[int]) -> dict[int, int]:
    """Each item's newest refund id, in one query (ids grow with creation)."""
    return dict(
        Refund.items.through.objects.filter(orderitem_id__in=item_ids)
        .values_list("orderitem_id")
        .annotate(latest=Max("refund_id"))
        .order_by()
    )


def _can_fire(item: OrderItem, transition: str) -> bool:
    return can_proceed(getattr(item, transition))


def record_stripe_refund(*, refund: Refund, stripe_refund: StripeRefund, by: Actor) -> list[OrderItem]:
    """Keep Stripe's id for our refund and apply the status Stripe reports."""
    if refund.stripe_refund_id != stripe_refund.id:
        refund.stripe_refund_id = stripe_refund.id
    return apply_refund_status(
        refund=refund, status=stripe_refund.status, failure_reason=stripe_refund.failure_reason, by=by
    )


def submit_refund(*, refund_id: int) -> Refund:
    """Send a queued refund to Stripe once, however often this runs.

    Retryable Stripe errors propagate (the task retries with the same idempotency key); a final
    error fails the refund and its items.
    """
    # First, remember the attempt in its own transaction, so that a crash between Stripe's
    # answer and our commit is known to the next attempt, which then asks Stripe before sending.
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.QUEUED:
            return refund
        refund.submit_attempts += 1
        refund.last_submitted_at = timezone.now()
        refund.save(update_fields=["submit_attempts", "last_submitted_at"])

    try:
        # The refund's row stays locked during the Stripe call: a second run of this task
        # waits here, then finds the refund no longer queued.
        with transaction.atomic():
            refund = Refund.objects.select_for_update().select_related("order").get(pk=refund_id)
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
                        item_ids=list(refund.items.order_by("pk").values_list("pk", flat=True)),
                    ),
                    reason=refund.reason,
                )
            refund.last_error = ""
            if refund.stripe_event_created_at is None:
                # Stripe's answer is at least as new as the refund itself: an event older than
                # that cannot say more, and one of the same second is checked with Stripe.
                refund.stripe_event_created_at = answer.created
            record_stripe_refund(refund=refund, stripe_refund=answer, by=Actor.stripe_api())
            logger.info("refund %s sent to Stripe as %s: %s", refund.pk, answer.id, answer.status)
            return refund
    except StripeFinalError as error:
        return _fail_refund(refund_id, error)
    except StripeRetryableError as error:
        Refund.objects.filter(pk=refund_id).update(last_error=f"Stripe unavailable, will retry: {error.message}")
        logger.warning("refund %s: Stripe unavailable, will retry: %s", refund_id, error.message)
        raise


def _fail_refund(refund_id: int, error: StripeFinalError) -> Refund:
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
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


def sync_refund_from_stripe(*, refund_id: int, by: Actor) -> Refund:
    """Ask Stripe what became of a refund and apply it ("Check status with Stripe", reconciliation).

    A refund Stripe has no id for yet is looked up by its metadata; one Stripe does not know
    is left as it is.
    """
    with transaction.atomic():
        refund = Refund.objects.select_for_update().select_related("order").get(pk=refund_id)
        if refund.stripe_refund_id:
            answer = gateway.retrieve_refund(refund.stripe_refund_id)
        else:
            answer = gateway.find_refund(
                payment_intent=refund.order.stripe_payment_intent_id, idempotency_key=refund.idempotency_key
            )
        if answer is not None:
            record_stripe_refund(refund=refund, stripe_refund=answer, by=by)
    return refund


def confirm_refund_now(*, items: Iterable[OrderItem | int], user) -> list[OrderItem]:
    """A Back Office user confirms succeeded refunds before the settlement period ends."""
    item_ids = {item if isinstance(item, int) else item.pk for item in items}
    if not item_ids:
        raise NothingToRefund("Select at least one item to confirm.")
    actor = Actor.of_user(user)
    with transaction.atomic():
        locked = list(OrderItem.objects.select_for_update().filter(pk__in=item_ids).select_related("order").order_by("pk"))
        wrong = [item for item in locked if item.state != ItemState.PAYMENT_REFUND_SUCCEEDED]
        if wrong:
            raise OrderNotRefundable(" ".join(
                f"{item} cannot be confirmed: it is {item.state_label}, not payment refund succeeded." for item in wrong
            ))
        latest = latest_refund_ids([item.pk for item in locked])
        by_refund: dict[int | None, list[OrderItem]] = {}
        for item in locked:
            by_refund.setdefault(latest.get(item.pk), []).append(item)
        refunds = Refund.objects.in_bulk([pk for pk in by_refund if pk is not None])
        for refund_id, group in by_refund.items():
            transition_items(group, "confirm_refund", by=actor, refund=refunds.get(refund_id))
    return locked
