"""The audit writer: one OMS transition over many items, in memory through the FSM, then two writes.

Each item's transition method runs as django-fsm defines it (source states checked, signals
sent), then the items are written with one `UPDATE` and their audit rows with one `INSERT`
(on SQLite, `bulk_create` in batches), so the number of queries does not grow with the
number of items. Callers hold the items' row locks (`select_for_update`) inside `transaction.atomic()`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils import timezone

from ..models import ItemTransition, OrderItem, Refund
from . import locked_rows

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


@dataclass(frozen=True)
class Fired:
    """One item's transition, as its audit row will record it."""

    item: OrderItem
    from_state: str
    refund: Refund | None


def run_transition(
    items: Iterable[OrderItem],
    transition: str,
    *,
    refund: Refund | None = None,
    refund_of: Mapping[int, Refund | None] | None = None,
    arguments: Mapping[str, object] | None = None,
) -> list[Fired]:
    """Fire `transition` on every item in memory (django-fsm checks each source state).

    `refund_of` (item id → refund) names each item's refund when the items belong to
    different refunds, as in the settlement job; otherwise every row gets `refund`.
    `arguments` are passed to every item's transition method (`reject_refund(back_to=…)`).
    """
    at = timezone.now()
    fired = []
    for item in items:
        source = item.state
        getattr(item, transition)(**(arguments or {}))
        item.state_changed_at = at  # one batch, one moment: lets the write be a single UPDATE
        fired.append(Fired(item, source, refund if refund_of is None else refund_of.get(item.pk)))
    return fired


def transition_items(
    items: Iterable[OrderItem],
    transition: str,
    *,
    by: Actor,
    refund: Refund | None = None,
    refund_of: Mapping[int, Refund | None] | None = None,
    arguments: Mapping[str, object] | None = None,
) -> list[OrderItem]:
    """Fire `transition` on every item and write the items and their audit rows in bulk.
    Every item must reach the same target state (one UPDATE writes them)."""
    items = list(items)
    if not items:
        return items
    fired = run_transition(items, transition, refund=refund, refund_of=refund_of, arguments=arguments)
    # A transition has one target state and the batch one timestamp, so a plain UPDATE writes
    # them all; bulk_update's CASE per row is several times slower.
    at = items[0].state_changed_at
    target = items[0].state
    pks = [item.pk for item in items]
    for start in range(0, len(pks), UPDATE_CHUNK):
        _update_states(pks[start:start + UPDATE_CHUNK], target, at)
    write_log(fired, transition=transition, to_state=target, at=at, by=by)
    return items


def _update_states(pks: list[int], state: str, at) -> None:
    """One UPDATE of the items' state; on PostgreSQL with `= ANY(array)` and SQL built once (the
    webhook writes one item per event, hundreds a second)."""
    if connection.vendor != "postgresql":
        OrderItem.objects.filter(pk__in=pks).update(state=state, state_changed_at=at)
        return
    locked_rows.write(_UPDATE_STATES_SQL, [state, at, pks])


_UPDATE_STATES_SQL = (
    f"UPDATE {OrderItem._meta.db_table} SET state = %s, state_changed_at = %s WHERE id = ANY(%s::bigint[])"
)


@functools.cache
def _insert_log_sql() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(ItemTransition._meta.get_field(name).column)
        for name in ("item", "refund", "from_state", "transition", "to_state", "at", "by_user", "by")
    )
    return (
        f"INSERT INTO {quote(ItemTransition._meta.db_table)} ({columns}) "
        f"SELECT u.item_id, u.refund_id, u.from_state, %s::varchar, %s::varchar, %s::timestamptz, %s::bigint, %s::varchar "
        f"FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS u(item_id, refund_id, from_state)"
    )


def write_log(fired: list[Fired], *, transition: str, to_state: str, at, by: Actor) -> None:
    """Insert the audit rows: on PostgreSQL one INSERT … SELECT over three arrays (what varies
    per row), which is several times faster than bulk_create's parameters per field."""
    if connection.vendor == "postgresql":
        for start in range(0, len(fired), UPDATE_CHUNK):
            chunk = fired[start:start + UPDATE_CHUNK]
            locked_rows.write(
                _insert_log_sql(),
                [
                    transition, to_state, at, by.user.pk if by.user else None, by.label[:255],
                    [f.item.pk for f in chunk],
                    [f.refund.pk if f.refund else None for f in chunk],
                    [f.from_state for f in chunk],
                ],
            )
        return
    ItemTransition.objects.bulk_create(
        [
            ItemTransition(
                item=f.item, refund=f.refund, transition=transition, from_state=f.from_state, to_state=to_state,
                at=at, by_user=by.user, by=by.label[:255],
            )
            for f in fired
        ],
        batch_size=BULK_BATCH_SIZE,
    )
