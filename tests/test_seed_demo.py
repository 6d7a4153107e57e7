"""`manage.py seed_demo`: demo orders paid in the Stripe emulator, once, however often it runs."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from refunds_dev import demo, stripe_tools
from refunds.models import ItemState, ItemTransition, Order, OrderItem, Refund

pytestmark = [pytest.mark.django_db, pytest.mark.localstripe]

DEMO_REFERENCES = [spec.reference for spec in demo.DEMO_ORDERS]


def test_seeding_twice_creates_each_demo_order_once_paid_in_the_emulator(localstripe, capsys):
    call_command("seed_demo")
    first = dict(Order.objects.values_list("reference", "stripe_payment_intent_id"))
    call_command("seed_demo")

    assert sorted(first) == sorted(DEMO_REFERENCES)
    assert dict(Order.objects.values_list("reference", "stripe_payment_intent_id")) == first
    assert OrderItem.objects.count() == sum(len(spec.items) for spec in demo.DEMO_ORDERS)
    assert set(OrderItem.objects.values_list("state", flat=True)) == {ItemState.PAYMENT_CAPTURED}
    assert all(stripe_tools.payment_intent_exists(payment_intent) for payment_intent in first.values())
    order = Order.objects.get(reference="DEMO-1001")
    assert order.amount_captured == sum(item.amount for item in order.items.all()) + order.shipping_amount
    output = capsys.readouterr().out
    assert "Created demo order DEMO-1001 (paid)" in output
    assert f"Demo orders already there: {', '.join(DEMO_REFERENCES)}" in output


def test_an_order_whose_payment_the_emulator_lost_is_rebuilt_with_a_new_payment(localstripe, back_office_user):
    call_command("seed_demo")
    order = Order.objects.get(reference="DEMO-1002")
    item = order.items.get()
    refund = Refund.objects.create(order=order, amount=item.amount, currency=order.currency, stripe_refund_id="re_lost")
    refund.items.add(item)
    ItemTransition.objects.create(item=item, refund=refund, transition="start_refund",
                                  from_state=ItemState.PAYMENT_CAPTURED, to_state=ItemState.PAYMENT_REFUND_PENDING, by="alice")
    Order.objects.filter(pk=order.pk).update(stripe_payment_intent_id="pi_the_emulator_never_saw")

    call_command("seed_demo")

    rebuilt = Order.objects.get(reference="DEMO-1002")
    assert rebuilt.stripe_payment_intent_id != "pi_the_emulator_never_saw"
    assert stripe_tools.payment_intent_exists(rebuilt.stripe_payment_intent_id)
    assert not rebuilt.refunds.exists() and not Refund.objects.filter(pk=refund.pk).exists()
    assert [i.state for i in rebuilt.items.all()] == [ItemState.PAYMENT_CAPTURED]
    assert Order.objects.count() == len(DEMO_REFERENCES)


def test_the_admin_user_is_created_once_and_keeps_a_changed_password(localstripe, capsys):
    call_command("seed_demo", "--username", "demo", "--password", "first-password")
    user = get_user_model().objects.get(username="demo")
    user.set_password("changed-by-the-user")
    user.save()

    call_command("seed_demo", "--username", "demo", "--password", "first-password")

    user.refresh_from_db()
    assert user.is_superuser and user.is_staff
    assert user.check_password("changed-by-the-user")
    output = capsys.readouterr().out
    assert "Created the Back Office user 'demo' with password 'first-password'" in output
    assert "The Back Office user 'demo' exists; its password is unchanged" in output


def test_apply_schedule_puts_the_refund_jobs_on_the_settings_interval(localstripe, settings):
    settings.CELERY_BEAT_SCHEDULE = {
        name: {**entry, "schedule": dt.timedelta(seconds=10)} for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
    }

    call_command("seed_demo", "--apply-schedule")

    for name in settings.CELERY_BEAT_SCHEDULE:
        task = PeriodicTask.objects.get(name=name)
        assert task.crontab is None
        assert (task.interval.every, task.interval.period) == (10, "seconds")
    assert demo.apply_settings_schedule() == []  # already so: nothing changes


def test_seeding_refuses_a_live_stripe_key(settings):
    settings.STRIPE_SECRET_KEY = "sk_live_abc"

    with pytest.raises(CommandError, match="live Stripe key"):
        call_command("seed_demo")

    assert not Order.objects.exists()
