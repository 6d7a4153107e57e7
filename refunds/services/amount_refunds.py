"""Amount (goodwill) refunds (DESIGN.md §9): money back that is not tied to items — a price
adjustment, a shipping-only refund. A `Refund` with no items, moving no item.

It is checked under the same locks as an item refund (the order, then all its items), against
the same rule: never more than was captured minus what is refunded or in flight, Stripe
Dashboard refunds and refunds awaiting approval included. Dual control applies as to any refund.
"""

from __future__ import annotations

import logging
import re

from django.db import transaction
from django.utils.translation import gettext

from .. import selectors
from ..exceptions import AlreadyRequested, InvalidAmount, OrderNotRefundable, OverRefund, RefundError
from ..models import Order, OrderItem, Refund, RefundReason, RefundStatus
from ..money import format_money, is_known_currency
from .approvals import hold_or_queue, needs_approval
from .outbox import submit_after_commit
from .audit import Actor
from .planning import captured_amount, not_paid_problem, over_refund_problem, unknown_currency_problem

logger = logging.getLogger(__name__)

_REQUEST_KEY = re.compile(r"[0-9a-f]{32}")


def _idempotency_key(request_key: str) -> str:
    # Unique per form (a random token), as Stripe needs: it is also the key the refund is sent with.
    return f"oms-refund-form-{request_key}"


def request_amount_refund(
    *, order: Order | int, amount: int, user, reason: str = "", note: str = "", request_key: str = ""
) -> Refund:
    """Refund `amount` (minor units of the order's currency) of `order`, tied to no item.

    `request_key` (32 hex digits, e.g. a form's token) makes the request once: the refund's
    idempotency key is derived from it, and the same key again raises `AlreadyRequested` with
    the refund the first request made (a double click on the Back Office form).

    Raises a `RefundError` and writes nothing when the amount is not a positive whole number of
    minor units, the order cannot be refunded, or the amount exceeds what may still be refunded.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"The amount must be a whole number of minor units (cents), not {amount!r}.")
    if amount <= 0:
        raise InvalidAmount(gettext("The amount must be above zero."))
    if reason and reason not in RefundReason.values:
        raise RefundError(f"Unknown refund reason {reason!r}; choose one of {', '.join(RefundReason.values)}.")
    if request_key and not _REQUEST_KEY.fullmatch(request_key):
        raise RefundError("The form's request key is malformed; open the page again.")
    actor = Actor.of_user(user)
    order_id = order if isinstance(order, int) else order.pk

    with transaction.atomic():
        # The same locks as request_refund: every refund request for an order queues on the
        # order's row, so what is still refundable cannot change between the check and the insert.
        try:
            locked = Order.objects.select_for_update().get(pk=order_id)
        except Order.DoesNotExist:
            raise RefundError(f"Order #{order_id} does not exist.") from None
        items = list(OrderItem.objects.select_for_update().filter(order=locked).order_by("pk"))
        if not locked.is_paid:
            raise OrderNotRefundable(not_paid_problem(locked))
        if not is_known_currency(locked.currency):
            raise OrderNotRefundable(unknown_currency_problem(locked))
        if request_key:
            # Under the order's lock: a second POST of the same form waits for the first to commit.
            done = Refund.objects.filter(order=locked, idempotency_key=_idempotency_key(request_key)).first()
            if done is not None:
                raise AlreadyRequested(f"This refund was already requested: refund #{done.pk}.", refund=done)
        captured = captured_amount(locked, items)
        committed = selectors.live_refunds([locked.pk]).committed(locked)
        if amount > captured - committed:
            raise OverRefund(over_refund_problem(locked, amount=amount, captured=captured, committed=committed))

        refund = Refund.objects.create(
            order=locked,
            amount=amount,
            currency=locked.currency,
            status=RefundStatus.AWAITING_APPROVAL if needs_approval(amount, locked.currency) else RefundStatus.QUEUED,
            reason=reason,
            note=note,
            created_by=actor.user,
            **({"idempotency_key": _idempotency_key(request_key)} if request_key else {}),
        )
        if hold_or_queue(refund=refund, items=[], by=actor):
            submit_after_commit([refund])
    logger.info(
        "amount refund %s %s: %s of order %s", refund.pk, refund.status,
        format_money(amount, locked.currency), locked.reference,
    )
    return refund
