"""The refund process's business rules: admin actions, views, tasks and the webhook call these;
nothing else writes refunds or moves items.

    audit            Actor and the bulk audit writer (one transition over many items)
    planning         pure rules: what a refund request would do, order by order
    refund_requests  Back Office requests: preview, request, confirm by hand
    stripe_view      Stripe's word about a refund, recorded in one place with the ordering rule
    submission       sending a queued refund to Stripe once
    settlement       succeeded items past the settlement period become payment refunded
    reconciliation   lost submissions sent again, silent pending refunds fetched

Locks are always taken in the same order: refund, then order, then the order's items.
"""

from .audit import Actor, transition_items
from .planning import RefundPlan, captured_amount, plan_refunds
from .reconciliation import ReconcileReport, Repair, reconcile_refunds
from .refund_requests import confirm_refund_now, preview_refunds, request_refund
from .settlement import finalize_due_refunds
from .stripe_view import StripeView, apply_refund_status, record_stripe_view, sync_refund_from_stripe
from .submission import submit_refund

__all__ = [
    "Actor",
    "ReconcileReport",
    "RefundPlan",
    "Repair",
    "StripeView",
    "apply_refund_status",
    "captured_amount",
    "confirm_refund_now",
    "finalize_due_refunds",
    "plan_refunds",
    "preview_refunds",
    "reconcile_refunds",
    "record_stripe_view",
    "request_refund",
    "submit_refund",
    "sync_refund_from_stripe",
    "transition_items",
]
