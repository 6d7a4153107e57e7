"""Running one OMS transition over many items: in memory through the FSM, then two writes.

Each item's transition method runs as django-fsm defines it (source states checked, signals
sent), then the items are written with one `UPDATE` and their audit rows with one
`bulk_create` (in batches of 500 rows), so the number of queries does not grow with the number
of items. Callers hold the items' row locks (`select_for_update`) inside `transaction.atomic()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from .models import ItemTransition, OrderItem, Refund

BULK_BATCH_SIZE = 500
UPDATE_CHUNK = 5000


@dataclass(frozen=True)
class Actor:
    """Who fired a transition, as the audit log shows it."""

    label: str
    user: AbstractBaseUser | None = None

    @classmethod
    def of_user(cls, user) -> Actor:
        if user is None or not getattr(user, "is_authenticated", False):
            raise ValueError("a Back Office action needs an authenticated user")
        return cls(label=user.get_username(), user=user)

    @classmethod
    def stripe_event(cls, event_id: str) -> Actor:
        return cls(label=f"Stripe event {event_id}")

    @classmethod
    def stripe_api(cls) -> Actor:
        return cls(label="Stripe API response")

    @classmethod
    def settlement_timeout(cls) -> Actor:
        return cls(label="settlement timeout")

    @classmethod
    def reconciliation(cls) -> Actor:
        return cls(label="reconciliation job")


def run_transition(
    items: Iterable[OrderItem],
    transition: str,
    *,
    by: Actor,
    refund: Refund | None = None,
    refund_of: Mapping[int, Refund | None] | None = None,
) -> list[ItemTransition]:
    """Fire `transition` on every item in memory and return the audit rows, unsaved.

    `refund_of` (item id → refund) names each item's refund when the items belong to
    different refunds, as in the settlement job; otherwise every row gets `refund`.
    """
    at = timezone.now()
    log = []
    for item in items:
        source = item.state
        getattr(item, transition)()
        item.state_changed_at = at  # one batch, one moment: lets the write be a single UPDATE
        log.append(
            ItemTransition(
                item=item,
                refund=refund if refund_of is None else refund_of.get(item.pk),
                transition=transition,
                from_state=source,
                to_state=item.state,
                at=item.state_changed_at,
                by_user=by.user,
                by=by.label[:255],
            )
        )
    return log


def transition_items(
    items: Iterable[OrderItem],
    transition: str,
    *,
    by: Actor,
    refund: Refund | None = None,
    refund_of: Mapping[int, Refund | None] | None = None,
) -> list[OrderItem]:
    """Fire `transition` on every item and write the items and their audit rows in bulk."""
    items = list(items)
    if not items:
        return items
    log = run_transition(items, transition, by=by, refund=refund, refund_of=refund_of)
    # A transition has one target state and the batch one timestamp, so a plain UPDATE writes
    # them all; bulk_update's CASE per row is several times slower.
    at = items[0].state_changed_at
    for target in {item.state for item in items}:
        pks = [item.pk for item in items if item.state == target]
        for start in range(0, len(pks), UPDATE_CHUNK):
            OrderItem.objects.filter(pk__in=pks[start:start + UPDATE_CHUNK]).update(state=target, state_changed_at=at)
    ItemTransition.objects.bulk_create(log, batch_size=BULK_BATCH_SIZE)
    return items
