"""The refund process's business rules: admin actions, views, tasks and the webhook call these;
nothing else writes refunds or moves items.

    audit            Actor and the bulk audit writer (one transition over many items)
    planning         pure rules: what a refund request would do, order by order
    refund_requests  Back Office requests: preview, request, confirm by hand
    stripe_view      Stripe's word about a refund, recorded in one place with the ordering rule
    submission       sending a queued refund to Stripe once
    settlement       succeeded items past the settlement period become payment refunded
    reconciliation   lost submissions sent again, silent pending refunds fetched
    catch_up         a window of Stripe's refunds read in pages of 100 and recorded (a backlog)
    locked_rows      the webhook's hot path: a refund and its items locked in one query
    outbox           the submit task enqueued after commit; a broker error is not a failed refund
    approvals        dual control: thresholds, approve and reject
    amount_refunds   refunds of an amount tied to no item (goodwill, shipping only)
    attention        the needs-attention cases, opened where they happen, and resolved
    alerts           a new case by e-mail and webhook, once (an outbox)
    export           the finance export: refunds as CSV, streamed
    orders           orders taken in from the shop (create_order), and an order as the API shows it
    order_refunds    one order's refund as an API client asks for it: preview and request

One lock order, on every path that locks refunds, orders or items: the refund row, then the
order, then the order's items (by primary key), each `select_for_update(no_key=True)` —
PostgreSQL's FOR NO KEY UPDATE. None of these rows' keys ever change, and the weaker lock does
not conflict with the FOR KEY SHARE that PostgreSQL's (deferred) foreign-key checks take at
commit: a transaction that holds items and writes audit rows naming a refund ("Confirm refund
now", settlement) never waits for a webhook that holds that refund and waits for the items.
A path that needs no refund lock starts further down (request_refund: order, items;
confirm_refund_now and settlement: items only, with `of=("self",)` so a join locks no order).
"""

from .alerts import deliver_alert, send_unsent_alerts
from .amount_refunds import request_amount_refund
from .approvals import approval_threshold, approve_refund, needs_approval, reject_refund
from .attention import open_case, resolve_case
from .audit import Actor, transition_items
from .catch_up import CatchUpReport, catch_up_refunds
from .outbox import QUEUE_UNREACHABLE, submit_after_commit
from .export import EXPORT_COLUMNS, csv_lines, export_rows, refunds_created_between
from .order_refunds import RefundPreview, preview_order_refund, refund_order
from .orders import ItemLine, OrderDetail, create_order, order_by_reference, order_detail
from .planning import RefundPlan, captured_amount, plan_refunds, still_refundable
from .reconciliation import ReconcileReport, Repair, reconcile_refunds
from .refund_requests import confirm_refund_now, preview_refunds, request_refund
from .settlement import finalize_due_refunds
from .stripe_view import StripeView, apply_refund_status, record_stripe_view, sync_refund_from_stripe
from .submission import submit_refund

__all__ = [
    "Actor",
    "CatchUpReport",
    "catch_up_refunds",
    "ItemLine",
    "OrderDetail",
    "RefundPreview",
    "create_order",
    "order_by_reference",
    "order_detail",
    "preview_order_refund",
    "refund_order",
    "still_refundable",
    "QUEUE_UNREACHABLE",
    "ReconcileReport",
    "RefundPlan",
    "Repair",
    "StripeView",
    "EXPORT_COLUMNS",
    "apply_refund_status",
    "approval_threshold",
    "approve_refund",
    "deliver_alert",
    "csv_lines",
    "export_rows",
    "refunds_created_between",
    "needs_approval",
    "open_case",
    "reject_refund",
    "request_amount_refund",
    "resolve_case",
    "send_unsent_alerts",
    "captured_amount",
    "confirm_refund_now",
    "finalize_due_refunds",
    "plan_refunds",
    "preview_refunds",
    "reconcile_refunds",
    "record_stripe_view",
    "request_refund",
    "submit_after_commit",
    "submit_refund",
    "sync_refund_from_stripe",
    "transition_items",
]
