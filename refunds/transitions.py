"""Running one OMS transition over many items: in memory through the FSM, then two writes.

Each item's transition method runs as django-fsm defines it (source states checked, signals
sent), then the items and their audit rows are written with one `bulk_update` and one
`bulk_create`, so the number of queries does not grow with the number of items. Callers hold
the items' row locks (`select_for_update`) inside `transaction.atomic()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from .models import ItemTransition, OrderItem, Refund

BULK_BATCH_SIZE = 500


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
    log = []
    for item in items:
        source = item.state
        getattr(item, transition)()
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
    OrderItem.objects.bulk_update(items, ["state", "state_changed_at"], batch_size=BULK_BATCH_SIZE)
    ItemTransition.objects.bulk_create(log, batch_size=BULK_BATCH_SIZE)
    return items
