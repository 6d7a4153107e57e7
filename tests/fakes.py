"""A Stripe stand-in at our own boundary (refunds.gateway), never inside the SDK.

It offers only what Stripe's API offers for refunds (create, retrieve, list); the gateway's own
logic over those calls (`gateway.find_refund`, a search by metadata over the list) runs for real.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from django.utils import timezone

from refunds.gateway import StripeRefund


class WorkerDied(Exception):
    """Stands for a process killed between Stripe's answer and our commit."""


class FakeStripe:
    def __init__(self, *, honours_idempotency_keys: bool = True):
        self.honours_idempotency_keys = honours_idempotency_keys
        self.refunds: dict[str, StripeRefund] = {}
        self.by_key: dict[str, str] = {}
        self.create_calls: list[dict] = []
        self.errors: list[Exception] = []  # raised, in order, by the next create calls
        self.die_after_create = False
        self.next_status = "succeeded"
        self.next_failure_reason = ""
        self._ids = itertools.count(1)
        self.list_calls = 0

    # --- Stripe's refund endpoints, as the gateway's functions ---------------------------
    @staticmethod
    def currency_of(payment_intent: str) -> str:
        """Stripe refunds in the currency of the charge: that of our order with this PaymentIntent."""
        from refunds.models import Order

        return Order.objects.filter(stripe_payment_intent_id=payment_intent).values_list("currency", flat=True).first() or "eur"

    def create_refund(self, *, payment_intent, amount, idempotency_key, metadata, reason=""):
        self.create_calls.append(
            {"payment_intent": payment_intent, "amount": amount, "idempotency_key": idempotency_key,
             "metadata": metadata, "reason": reason}
        )
        if self.errors:
            raise self.errors.pop(0)
        if self.honours_idempotency_keys and idempotency_key in self.by_key:
            return self.refunds[self.by_key[idempotency_key]]
        refund = StripeRefund(
            id=f"re_fake{next(self._ids):06d}",
            status=self.next_status,
            amount=amount,
            currency=self.currency_of(payment_intent),
            payment_intent=payment_intent,
            created=timezone.now().replace(microsecond=0),  # Stripe's `created` is whole seconds
            failure_reason=self.next_failure_reason,
            metadata=dict(metadata),
        )
        self.refunds[refund.id] = refund
        self.by_key[idempotency_key] = refund.id
        if self.die_after_create:
            self.die_after_create = False
            raise WorkerDied("worker killed after Stripe answered")
        return refund

    def retrieve_refund(self, stripe_refund_id):
        return self.refunds[stripe_refund_id]

    def list_refunds(self, *, payment_intent):
        return [r for r in self.refunds.values() if r.payment_intent == payment_intent]

    def list_refunds_created(self, *, since, until, starting_after=None, limit=100):
        """One page, newest first, as Stripe's list with created[gte]/created[lte]/starting_after."""
        self.list_calls += 1
        listed = sorted(
            (r for r in self.refunds.values() if since.replace(microsecond=0) <= r.created <= until),
            key=lambda r: (r.created, r.id), reverse=True,
        )
        if starting_after is not None:
            listed = listed[[r.id for r in listed].index(starting_after) + 1:]
        return listed[:limit], len(listed) > limit

    # --- test controls -----------------------------------------------------------------
    def set_status(self, stripe_refund_id, status, failure_reason=""):
        self.refunds[stripe_refund_id] = replace(
            self.refunds[stripe_refund_id], status=status, failure_reason=failure_reason
        )
        return self.refunds[stripe_refund_id]

    @property
    def refund_count(self) -> int:
        return len(self.refunds)
