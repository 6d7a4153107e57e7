"""The refund part of the OMS: orders, their items' refund process, refunds and Stripe events.

Amounts are integers in the currency's minor unit (Stripe's `amount`); currencies are the
lower-case ISO codes Stripe uses.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_fsm import RETURN_VALUE, FSMField, FSMModelMixin, transition

from .money import format_money


class ItemState(models.TextChoices):
    PAYMENT_CAPTURED = "payment_captured", _("payment captured")
    PAYMENT_REFUND_PENDING = "payment_refund_pending", _("payment refund pending")
    PAYMENT_REFUND_SUCCEEDED = "payment_refund_succeeded", _("payment refund succeeded")
    PAYMENT_REFUND_FAILED = "payment_refund_failed", _("payment refund failed")
    PAYMENT_REFUNDED = "payment_refunded", _("payment refunded")
    PAYMENT_REFUND_AWAITING_APPROVAL = "payment_refund_awaiting_approval", _("payment refund awaiting approval")


# States in which an item may be (re-)refunded from the Back Office.
REFUNDABLE_STATES = (ItemState.PAYMENT_CAPTURED, ItemState.PAYMENT_REFUND_FAILED)
# States in which an item counts as refunded or on its way, for the shipping rule.
UNREFUNDABLE_AGAIN_STATES = (
    ItemState.PAYMENT_REFUND_AWAITING_APPROVAL,
    ItemState.PAYMENT_REFUND_PENDING,
    ItemState.PAYMENT_REFUND_SUCCEEDED,
    ItemState.PAYMENT_REFUNDED,
)


class Order(models.Model):
    reference = models.CharField(_("reference"), max_length=64, unique=True)
    customer_email = models.EmailField(_("customer email"), blank=True)
    currency = models.CharField(_("currency"), max_length=3, help_text=_("Lower-case ISO code, as Stripe uses it."))
    stripe_payment_intent_id = models.CharField(
        _("Stripe PaymentIntent"), max_length=255, blank=True, db_index=True,
        help_text=_("Empty while the order is unpaid."),
    )
    shipping_amount = models.PositiveBigIntegerField(_("shipping amount"), default=0, help_text=_("Minor units (cents)."))
    amount_captured = models.PositiveBigIntegerField(
        null=True, blank=True,
        help_text="Minor units captured by Stripe; empty means the items plus shipping.",
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("order")
        verbose_name_plural = _("orders")

    def __str__(self):
        return self.reference

    @property
    def is_paid(self) -> bool:
        return bool(self.stripe_payment_intent_id)

    def money(self, amount: int) -> str:
        return format_money(amount, self.currency)


class OrderItem(FSMModelMixin, models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="items")
    sku = models.CharField(_("SKU"), max_length=64)
    name = models.CharField(_("name"), max_length=255)
    amount = models.PositiveBigIntegerField(_("amount"), help_text=_("Refundable gross amount, minor units (cents)."))
    state = FSMField(
        _("state"), default=ItemState.PAYMENT_CAPTURED, choices=ItemState.choices, protected=True, db_index=True
    )
    state_changed_at = models.DateTimeField(_("state changed at"), default=timezone.now, db_index=True)

    class Meta:
        ordering = ["order_id", "pk"]
        verbose_name = _("order item")
        verbose_name_plural = _("order items")
        permissions = [
            ("refund_orderitem", _("Can refund order items")),
            ("confirm_refund_orderitem", _("Can confirm a refund before the settlement period ends")),
        ]

    def __str__(self):
        return f"{self.order.reference} / {self.sku}" if self.order_id else self.sku

    # Transitions change fields only: no Stripe call, no task, no save. Services lock the
    # rows, run these in memory, then write (DESIGN.md §1).
    def _entered_state(self):
        self.state_changed_at = timezone.now()

    @transition(field=state, source=list(REFUNDABLE_STATES), target=ItemState.PAYMENT_REFUND_PENDING)
    def start_refund(self):
        self._entered_state()

    @transition(
        field=state,
        source=[ItemState.PAYMENT_REFUND_PENDING, ItemState.PAYMENT_REFUND_FAILED],
        target=ItemState.PAYMENT_REFUND_SUCCEEDED,
    )
    def refund_succeeded(self):
        self._entered_state()

    @transition(
        field=state,
        source=[
            ItemState.PAYMENT_REFUND_PENDING,
            ItemState.PAYMENT_REFUND_SUCCEEDED,
            ItemState.PAYMENT_REFUNDED,
        ],
        target=ItemState.PAYMENT_REFUND_FAILED,
    )
    def refund_failed(self):
        self._entered_state()

    @transition(field=state, source=ItemState.PAYMENT_REFUND_SUCCEEDED, target=ItemState.PAYMENT_REFUNDED)
    def confirm_refund(self):
        self._entered_state()

    # Dual control (DESIGN.md §9): a refund at or above its currency's approval threshold waits
    # for a second user; rejecting it puts each item back where it was before the request.
    @transition(
        field=state, source=list(REFUNDABLE_STATES), target=ItemState.PAYMENT_REFUND_AWAITING_APPROVAL
    )
    def request_approval(self):
        self._entered_state()

    @transition(
        field=state, source=ItemState.PAYMENT_REFUND_AWAITING_APPROVAL, target=ItemState.PAYMENT_REFUND_PENDING
    )
    def approve_refund(self):
        self._entered_state()

    @transition(
        field=state, source=ItemState.PAYMENT_REFUND_AWAITING_APPROVAL, target=RETURN_VALUE(*REFUNDABLE_STATES)
    )
    def reject_refund(self, back_to: str):
        """`back_to` is the state the item had before `request_approval` (its audit row says)."""
        self._entered_state()
        return back_to

    @property
    def state_label(self) -> str:
        return ItemState(self.state).label


class RefundStatus(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", _("awaiting approval (not yet sent to Stripe)")
    REJECTED = "rejected", _("rejected (never sent to Stripe)")
    QUEUED = "queued", _("queued (not yet sent to Stripe)")
    PENDING = "pending", _("pending at Stripe")
    REQUIRES_ACTION = "requires_action", _("requires action")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")
    CANCELED = "canceled", _("canceled")


# Refunds whose money is gone or on its way: they count against what may still be refunded.
# A refund awaiting approval counts too (approving it must not over-refund); a rejected one not.
LIVE_REFUND_STATUSES = (
    RefundStatus.AWAITING_APPROVAL,
    RefundStatus.QUEUED,
    RefundStatus.PENDING,
    RefundStatus.REQUIRES_ACTION,
    RefundStatus.SUCCEEDED,
)


class RefundOrigin(models.TextChoices):
    BACK_OFFICE = "back_office", _("Back Office")
    STRIPE_DASHBOARD = "stripe_dashboard", _("outside this system (Stripe Dashboard)")


class RefundReason(models.TextChoices):
    """Stripe's refund `reason` values: https://docs.stripe.com/api/refunds/create#create_refund-reason"""

    REQUESTED_BY_CUSTOMER = "requested_by_customer", _("requested by customer")
    DUPLICATE = "duplicate", _("duplicate")
    FRAUDULENT = "fraudulent", _("fraudulent")


def new_idempotency_key() -> str:
    # Random, not the row id alone: ids repeat after a database reset, and Stripe keeps keys
    # per account for 24 hours, so "refund-1" from yesterday's test run must not match today's.
    return f"oms-refund-{uuid.uuid4().hex}"


class Refund(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    items = models.ManyToManyField(OrderItem, related_name="refunds", blank=True)
    amount = models.PositiveBigIntegerField(_("amount"), help_text=_("Minor units (cents), items plus shipping."))
    shipping_amount = models.PositiveBigIntegerField(
        _("shipping amount"), default=0, help_text=_("The part of `amount` that is shipping.")
    )
    currency = models.CharField(_("currency"), max_length=3)
    origin = models.CharField(_("origin"), max_length=20, choices=RefundOrigin.choices, default=RefundOrigin.BACK_OFFICE)
    stripe_refund_id = models.CharField(_("Stripe refund"), max_length=255, unique=True, null=True, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, unique=True, default=new_idempotency_key)
    status = models.CharField(
        _("status"), max_length=20, choices=RefundStatus.choices, default=RefundStatus.QUEUED, db_index=True
    )
    failure_reason = models.CharField(_("failure reason"), max_length=255, blank=True)
    reason = models.CharField(_("reason"), max_length=32, choices=RefundReason.choices, blank=True)
    note = models.TextField(_("note"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("requested by"),
    )
    created_at = models.DateTimeField(_("requested at"), default=timezone.now, db_index=True)
    # Dual control (DESIGN.md §9): the second user who approved, or rejected, the refund.
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(
        _("decided at"), null=True, blank=True, help_text=_("When it was approved or rejected.")
    )
    decision_note = models.TextField(_("decision note"), blank=True, help_text=_("The approver's or rejecter's note."))
    submit_attempts = models.PositiveIntegerField(_("submit attempts"), default=0)
    last_submitted_at = models.DateTimeField(_("last submitted at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # `created` of the newest Stripe event applied to this refund: an older event changes nothing.
    stripe_event_created_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(_("status changed at"), default=timezone.now)
    # Set by reconcile_refunds each time it asks Stripe about a stale pending refund, so that
    # refunds staying pending for days take turns instead of the oldest ones filling every run.
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    # What a person must look at on this refund, written by the system: Stripe reported it
    # succeeded after a newer refund took over its items, or described it otherwise than we
    # asked (refunds/services/stripe_view.py). Each finding is also an attention case.
    warning = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
        ]
        permissions = [("approve_refund", _("Can approve or reject refunds awaiting approval"))]
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")

    def __str__(self):
        return self.stripe_refund_id or f"refund #{self.pk}"

    @property
    def amount_display(self) -> str:
        return format_money(self.amount, self.currency)


# What each transition means to a Back Office user; the code name stays in the data and the API.
TRANSITION_LABELS = {
    "start_refund": _("refund started"),
    "refund_succeeded": _("Stripe confirmed the refund"),
    "refund_failed": _("Stripe failed or canceled the refund"),
    "confirm_refund": _("refund final (settlement period over or confirmed by hand)"),
    "request_approval": _("approval requested"),
    "approve_refund": _("refund approved"),
    "reject_refund": _("refund rejected"),
}


def transition_label(name: str) -> str:
    return str(TRANSITION_LABELS.get(name, name.replace("_", " ")))


class ItemTransition(models.Model):
    """The audit log: one row per transition of one item, who fired it and for which refund."""

    item = models.ForeignKey(OrderItem, on_delete=models.CASCADE, related_name="transitions", verbose_name=_("item"))
    refund = models.ForeignKey(
        Refund, null=True, blank=True, on_delete=models.SET_NULL, related_name="transitions", verbose_name=_("refund")
    )
    transition = models.CharField(max_length=32)
    from_state = models.CharField(max_length=32, choices=ItemState.choices)
    to_state = models.CharField(max_length=32, choices=ItemState.choices)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by = models.CharField(max_length=255, help_text='A user name, "Stripe event evt_…" or "settlement timeout".')

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = _("item transition")
        verbose_name_plural = _("item transitions")

    def __str__(self):
        return f"{self.item_id}: {self.from_state} → {self.to_state} by {self.by}"

    @property
    def transition_label(self) -> str:
        return transition_label(self.transition)


class StripeEvent(models.Model):
    """Every event Stripe sent, stored before it is applied (see refunds.webhooks)."""

    stripe_event_id = models.CharField(_("Stripe event"), max_length=255, unique=True)
    type = models.CharField(_("type"), max_length=255, db_index=True)
    payload = models.JSONField(_("payload"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    refund = models.ForeignKey(Refund, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")

    class Meta:
        ordering = ["-received_at", "-pk"]
        verbose_name = _("Stripe event")
        verbose_name_plural = _("Stripe events")
        # The events are never edited; applying one again is its own right (the "Reprocess" action).
        permissions = [("reprocess_stripeevent", _("Can reprocess Stripe events"))]

    def __str__(self):
        return f"{self.stripe_event_id} ({self.type})"


class AttentionKind(models.TextChoices):
    """What a person must look at (DESIGN.md §9). The label is the case's name in the Back
    Office and in alerts."""

    REFUND_FAILED = "refund_failed", _("refund failed")
    LATE_DECLINE = "late_decline", _("late decline")
    POSSIBLE_DOUBLE_REFUND = "possible_double_refund", _("possible double refund")
    STUCK_PENDING = "stuck_pending", _("stuck pending")
    EVENT_ERROR = "event_error", _("Stripe event error")
    MISMATCHED_REFUND = "mismatched_refund", _("mismatched Stripe refund")
    AWAITING_APPROVAL = "awaiting_approval", _("awaiting approval")


class AttentionCase(models.Model):
    """A case on the "Needs attention" page, opened where it happens (services.attention).

    `key` makes each case happen once: the same happening (a duplicate Stripe delivery, a second
    reconciliation run, two workers at once) hits the unique key instead of opening a second case.
    Alerts are an outbox like refunds: `alert_sent_at` stays empty until every configured channel
    took the alert, and reconciliation sends what a lost task did not.
    """

    kind = models.CharField(max_length=32, choices=AttentionKind.choices, db_index=True)
    key = models.CharField(max_length=255, unique=True, help_text="What makes this case one happening.")
    refund = models.ForeignKey(Refund, null=True, blank=True, on_delete=models.SET_NULL, related_name="attention_cases")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="attention_cases")
    event = models.ForeignKey(
        StripeEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="attention_cases"
    )
    detail = models.TextField(_("detail"), blank=True)
    opened_at = models.DateTimeField(_("opened at"), default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution_note = models.TextField(_("resolution note"), blank=True)
    # The alert's outbox.
    alert_email_sent_at = models.DateTimeField(null=True, blank=True)
    alert_webhook_sent_at = models.DateTimeField(null=True, blank=True)
    alert_sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    alert_attempts = models.PositiveIntegerField(_("alert attempts"), default=0)
    alert_last_attempt_at = models.DateTimeField(null=True, blank=True)
    alert_error = models.TextField(_("alert error"), blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        permissions = [("resolve_attentioncase", _("Can resolve needs-attention cases"))]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class Attention(AttentionCase):
    """The Back Office's "Needs attention" page, /admin/refunds/attention/: the admin names a
    page after its model, so the cases are shown through this proxy."""

    class Meta:
        proxy = True
        verbose_name = _("needs attention")
        verbose_name_plural = _("needs attention")


class ApiToken(models.Model):
    """A REST API client's token (DESIGN.md §8): it acts with its user's permissions.

    Only a SHA-256 hash of the token is stored; `manage.py create_api_token` prints the token
    once. A plain hash, not a password hash: the token is 32 random bytes, so there is nothing
    to guess that a slow hash would protect, and every API request checks one.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="refund_api_tokens", verbose_name=_("user")
    )
    name = models.CharField(_("name"), max_length=100, blank=True, help_text=_("What uses it, e.g. “returns portal”."))
    prefix = models.CharField(_("token"), max_length=16, help_text=_("The token's first characters, to recognise it."))
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(
        _("revoked at"), null=True, blank=True, help_text=_("A revoked token is refused (401).")
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self):
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiIdempotencyKey(models.Model):
    """An `Idempotency-Key` a token sent with a refund request, and the answer it got: the same
    key again replays the answer; the key is the token's own (another token's key is another)."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of the method, path and JSON body.")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    refund = models.ForeignKey(Refund, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "key"], name="api_idempotency_key_per_token")]
        verbose_name = "API idempotency key"

    def __str__(self):
        return self.key
