"""Demo data for `make run`: orders paid in the local Stripe emulator, a Back Office user, and
the refund jobs on the demo's short beat interval.

Everything here is idempotent: running the seed again changes nothing that is consistent. An
order is keyed by its reference; if the emulator no longer knows its PaymentIntent (its store
was deleted while the database was kept), the order and its refunds are meaningless there, so
that order is built again from scratch with a new PaymentIntent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from refunds import services
from refunds.models import Order, Refund, StripeEvent

from . import stripe_tools

DEMO_REFERENCE_PREFIX = "DEMO-"


@dataclass(frozen=True)
class DemoOrder:
    reference: str
    customer_email: str
    currency: str
    shipping_amount: int
    items: tuple[tuple[str, str, int], ...]  # (sku, name, amount in minor units)

    @property
    def total(self) -> int:
        return sum(amount for _, _, amount in self.items) + self.shipping_amount


DEMO_ORDERS = (
    DemoOrder("DEMO-1001", "mia.schneider@example.com", "eur", 495, (
        ("SHIRT-LIN-M", "Linen shirt, size M", 4990),
        ("TOTE-CNV", "Canvas tote bag", 1500),
        ("SOCKS-3", "Wool socks, 3 pairs", 1200),
    )),
    DemoOrder("DEMO-1002", "jonas.weber@example.com", "eur", 0, (
        ("ESPRESSO-01", "Espresso machine", 24900),
    )),
    DemoOrder("DEMO-1003", "lea.fischer@example.com", "eur", 695, (
        ("SHOE-RUN-42", "Running shoes, size 42", 11900),
        ("INSOLE-42", "Insoles, size 42", 1990),
    )),
    DemoOrder("DEMO-1004", "sam.taylor@example.com", "usd", 500, (
        ("HEADPHONES-BT", "Bluetooth headphones", 8900),
        ("CABLE-USBC", "USB-C cable", 1200),
    )),
)


@dataclass
class SeedReport:
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)


def seed_demo_orders(orders: tuple[DemoOrder, ...] = DEMO_ORDERS) -> SeedReport:
    """Make sure every demo order exists, paid, with a PaymentIntent the emulator knows."""
    report = SeedReport()
    for spec in orders:
        existing = Order.objects.filter(reference=spec.reference).first()
        if existing is not None and existing.stripe_payment_intent_id and stripe_tools.payment_intent_exists(
            existing.stripe_payment_intent_id
        ):
            report.kept.append(spec.reference)
            continue
        # Stripe first, outside any transaction: an order row without its payment would be
        # worse than a spare PaymentIntent in the emulator.
        payment_intent = stripe_tools.create_paid_payment_intent(
            amount=spec.total, currency=spec.currency, metadata={"order_reference": spec.reference}
        )
        with transaction.atomic():
            if existing is not None:
                _delete_demo_order(existing)
                report.rebuilt.append(spec.reference)
            else:
                report.created.append(spec.reference)
            # The one way an order enters the system, as the REST API takes a shop's orders in.
            services.create_order(
                reference=spec.reference,
                customer_email=spec.customer_email,
                currency=spec.currency,
                shipping_amount=spec.shipping_amount,
                amount_captured=spec.total,
                payment_intent=payment_intent,
                items=[services.ItemLine(sku=sku, name=name, amount=amount) for sku, name, amount in spec.items],
            )
    return report


def _delete_demo_order(order: Order) -> None:
    if not order.reference.startswith(DEMO_REFERENCE_PREFIX):
        raise ValueError(f"{order.reference} is not a demo order")
    refunds = Refund.objects.filter(order=order)
    StripeEvent.objects.filter(refund__in=refunds).delete()
    refunds.delete()
    order.items.all().delete()  # their audit rows go with them (CASCADE)
    order.delete()


def ensure_demo_admin(*, username: str, password: str, email: str = "") -> bool:
    """A superuser for the Back Office; returns True if it was created. An existing user keeps
    the password it has."""
    User = get_user_model()
    if User.objects.filter(username=username).exists():
        return False
    User.objects.create_superuser(username=username, password=password, email=email)
    return True


def apply_settings_schedule() -> list[str]:
    """Write the refund jobs' schedule from settings over the database's (the demo sets a
    seconds interval); returns the jobs changed. Beat re-reads the schedule on change."""
    changed = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        before = _periodic_task_row(name)
        # django_celery_beat's public way to write a settings entry (update_or_create on the
        # PeriodicTask, with its interval or crontab row), the translation beat itself applies.
        ModelEntry.from_entry(name, app=current_app, **entry)
        if _periodic_task_row(name) != before:
            changed.append(name)
    return changed


def _periodic_task_row(name: str) -> dict | None:
    """The task's stored fields, except the "last modified" time every save moves."""
    fields = [f.attname for f in PeriodicTask._meta.concrete_fields if f.attname != "date_changed"]
    return PeriodicTask.objects.filter(name=name).values(*fields).first()
