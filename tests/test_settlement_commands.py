"""Operators' commands: `finalize_refunds` and `reconcile_refunds`, with --dry-run and a progress bar."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from refunds import services
from refunds.models import ItemState, Order, OrderItem, Refund, RefundStatus

from .factories import paid_order_with_items, stored_order

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(command, *args, stderr=None):
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def due_items(count: int, *, currency="eur", amount=1000) -> Order:
    """One order with `count` items that Stripe refunded 8 days ago in one refund."""
    succeeded_at = timezone.now() - dt.timedelta(days=8)
    order = stored_order(currency=currency)
    items = OrderItem.objects.bulk_create(
        OrderItem(order=order, sku=f"SKU-{n:04d}", name=f"Item {n}", amount=amount,
                  state=ItemState.PAYMENT_REFUND_SUCCEEDED, state_changed_at=succeeded_at)
        for n in range(count)
    )
    refund = Refund.objects.create(order=order, amount=amount * count, currency=currency,
                                   status=RefundStatus.SUCCEEDED, stripe_refund_id=f"re_due{order.pk}")
    refund.items.set(items)
    return order


def test_finalize_dry_run_shows_what_would_move_and_moves_nothing():
    order = due_items(3)
    due_items(1, currency="usd", amount=2500)

    output = run("finalize_refunds", "--dry-run")

    assert "4 item(s) in payment refund succeeded since before" in output
    assert "would move to payment refunded" in output
    assert "  3 item(s), €30.00" in output and "  1 item(s), $25.00" in output
    assert f"  {order.reference} / SKU-0000: €10.00, succeeded " in output
    assert not OrderItem.objects.filter(state=ItemState.PAYMENT_REFUNDED).exists()


def test_finalize_moves_the_due_items_and_says_how_many():
    order = due_items(3)

    output = run("finalize_refunds")

    assert "3 item(s) moved to payment refunded." in output
    assert set(order.items.values_list("state", flat=True)) == {ItemState.PAYMENT_REFUNDED}


def test_finalize_draws_a_progress_bar_on_a_terminal_when_there_is_much_to_do():
    due_items(1500)
    terminal = Terminal()

    run("finalize_refunds", "--batch-size", "500", stderr=terminal)

    bar = terminal.getvalue()
    assert "finalizing:   0%" in bar and "finalizing: 100%" in bar and "1500/1500" in bar
    assert bar.endswith("\n")  # the line is ended before anything else is printed


def test_finalize_draws_no_bar_into_a_pipe_or_for_a_few_items():
    due_items(1500)
    piped = io.StringIO()
    run("finalize_refunds", stderr=piped)
    due_items(5)
    terminal = Terminal()
    run("finalize_refunds", stderr=terminal)

    assert piped.getvalue() == "" and terminal.getvalue() == ""


@pytest.fixture
def stale_refunds(back_office_user, fake_stripe, time_machine):
    """One refund whose task was lost, one Stripe answered pending: both seen two hours later."""
    time_machine.move_to(timezone.now() - dt.timedelta(hours=2), tick=False)
    [lost] = services.request_refund(items=paid_order_with_items(1000).items.all(), user=back_office_user)
    fake_stripe.next_status = "pending"
    [pending] = services.request_refund(items=paid_order_with_items(2000).items.all(), user=back_office_user)
    services.submit_refund(refund_id=pending.pk)
    fake_stripe.set_status(Refund.objects.get(pk=pending.pk).stripe_refund_id, "succeeded")
    fake_stripe.next_status = "succeeded"
    time_machine.move_to(timezone.now() + dt.timedelta(hours=2), tick=False)
    return lost, pending


def test_reconcile_dry_run_lists_what_it_would_repair_and_calls_nothing(stale_refunds, fake_stripe):
    lost, pending = stale_refunds
    calls_before = len(fake_stripe.create_calls)

    output = run("reconcile_refunds", "--dry-run")

    assert "1 refund(s) queued for more than 5 minutes would be sent to Stripe again" in output
    assert "1 refund(s) pending for more than 1 hour would be checked with Stripe" in output
    assert f"  send again: refund #{lost.pk} of {lost.order.reference}, €14.95, queued since " in output
    assert f"  check with Stripe: refund #{pending.pk} of {pending.order.reference}, €24.95, pending since " in output
    assert len(fake_stripe.create_calls) == calls_before
    assert set(Refund.objects.values_list("status", flat=True)) == {RefundStatus.QUEUED, RefundStatus.PENDING}


def test_reconcile_repairs_and_reports_each_refund(stale_refunds):
    lost, pending = stale_refunds

    output = run("reconcile_refunds")

    assert f"  refund #{lost.pk}: queued → succeeded" in output
    assert f"  refund #{pending.pk}: pending → succeeded" in output
    assert "1 sent again, 1 checked with Stripe, 2 repaired, 0 error(s)." in output
    assert set(Refund.objects.values_list("status", flat=True)) == {RefundStatus.SUCCEEDED}
