"""The Back Office at its boundaries: sums per currency, 404 for malformed ids, the
confirmation fingerprint required, and a refund answered as made when the task queue is down."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from refunds import services
from refunds.models import ItemState, Refund, RefundOrigin, RefundStatus
from refunds.services import preview_refunds
from refunds_project.celery import app as celery_app

from .conftest import fingerprint_on, free_port, page_of, post_confirmed
from .test_admin_actions import ITEMS_URL, messages_of, post_action

pytestmark = pytest.mark.django_db

BIGINT_MAX = 2**63 - 1


@pytest.fixture
def alice(client, back_office_user):
    client.force_login(back_office_user)
    return client


def dashboard_refund(order, *, amount, currency, stripe_id):
    return Refund.objects.create(
        order=order, amount=amount, currency=currency, origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id=stripe_id, status=RefundStatus.SUCCEEDED,
    )


# --- Sums per currency (finding 4) -------------------------------------------------------------


def test_a_refund_in_another_currency_neither_blocks_nor_frees_item_refunds(paid_order):
    # €40.45 captured; a $30.00 refund summed into it would leave €10.45 and block the €40.45 refund.
    dashboard_refund(paid_order, amount=3000, currency="usd", stripe_id="re_usd_on_eur")

    [plan] = preview_refunds(paid_order.items.all())

    assert (plan.committed, plan.other_currencies, plan.can_refund) == (0, {"usd": 3000}, True)
    assert plan.amount == 4045


def test_a_refund_in_the_orders_currency_still_counts(paid_order):
    dashboard_refund(paid_order, amount=3000, currency="eur", stripe_id="re_eur_on_eur")

    [plan] = preview_refunds(paid_order.items.all())

    assert plan.committed == 3000 and not plan.can_refund
    assert "€30.00 refunded or in flight" in plan.problems[0]


def test_the_pages_show_a_foreign_currency_refund_apart(alice, paid_order):
    dashboard_refund(paid_order, amount=3000, currency="usd", stripe_id="re_usd_apart")
    dashboard_refund(paid_order, amount=500, currency="eur", stripe_id="re_eur_outside")

    confirmation = alice.get(reverse("admin:refunds_order_refund", args=[paid_order.pk]))
    order_page = alice.get(reverse("admin:refunds_order_change", args=[paid_order.pk]))

    [apart] = page_of(confirmation).find_all("p", cls="oms-other-currency")
    assert "in another currency than the order's: $30.00" in apart.text
    plan_text = page_of(confirmation).by_id(f"plan-{paid_order.pk}").text
    assert "€30.00" not in plan_text
    notices = page_of(order_page).find_all("div", cls="oms-outside-notice")
    assert len(notices) == 2
    own, foreign = notices
    assert "€5.00" in own.text and "$30.00" not in own.text
    assert "In another currency than the order's (EUR)." in foreign.text and "$30.00" in foreign.text


def test_refunds_adding_up_beyond_bigint_do_not_break_the_refund_page(alice, paid_order):
    """Two refunds of 2^63−1 overflowed SQLite's SUM: the order's refund page answered 500."""
    dashboard_refund(paid_order, amount=BIGINT_MAX, currency="eur", stripe_id="re_max_1")
    dashboard_refund(paid_order, amount=BIGINT_MAX, currency="eur", stripe_id="re_max_2")

    response = alice.get(reverse("admin:refunds_order_refund", args=[paid_order.pk]))

    assert response.status_code == 200
    [plan] = response.context["plans"]
    assert plan.committed == 2 * BIGINT_MAX and not plan.can_refund


# --- Malformed ids (finding 6) ------------------------------------------------------------------

BAD_IDS = ["abc", "²", "1.5", "-1", "99999999999999999999", "1%20"]


@pytest.mark.parametrize("object_id", BAD_IDS)
def test_custom_admin_views_answer_404_to_a_malformed_id(alice, paid_order, object_id):
    refund_page = alice.get(f"/admin/refunds/order/{object_id}/refund/")
    check_status = alice.post(f"/admin/refunds/refund/{object_id}/check-status/")

    assert (refund_page.status_code, check_status.status_code) == (404, 404)


@pytest.mark.parametrize("object_id", BAD_IDS)
@pytest.mark.parametrize("model", ["order", "orderitem", "refund", "stripeevent", "itemtransition"])
def test_change_pages_never_answer_500_to_a_malformed_id(alice, model, object_id):
    response = alice.get(f"/admin/refunds/{model}/{object_id}/change/")

    assert response.status_code in (302, 404)  # Django's "does not exist, perhaps it was deleted?"


# --- The confirmation fingerprint is required (finding 7) -----------------------------------------


def test_a_refund_post_without_the_fingerprint_shows_the_confirmation_instead(alice, paid_order):
    item = paid_order.items.first()

    response = post_action(alice, ITEMS_URL, "refund_items", [item.pk], post="yes", confirmed="")

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/refunds/refund_confirmation.html"
    assert messages_of(response) == ["Nothing was refunded: confirm the refund on this page first."]
    assert fingerprint_on(response)
    assert not Refund.objects.exists()
    assert paid_order.items.get(pk=item.pk).state == ItemState.PAYMENT_CAPTURED


def test_the_order_buttons_post_without_the_fingerprint_refunds_nothing(alice, paid_order):
    response = alice.post(reverse("admin:refunds_order_refund", args=[paid_order.pk]), {"post": "yes"})

    assert response.status_code == 200 and not Refund.objects.exists()


# --- The task queue down (finding 9) ------------------------------------------------------------


@pytest.fixture
def broker_down():
    """Celery's broker is a Redis nobody listens on: enqueueing raises, as in an outage."""
    saved = celery_app.conf.broker_url, celery_app.conf.task_always_eager

    def reset_pools():
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    celery_app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    celery_app.conf.task_always_eager = False
    reset_pools()
    yield
    celery_app.conf.broker_url, celery_app.conf.task_always_eager = saved
    reset_pools()


@pytest.mark.django_db(transaction=True)  # on_commit runs as in production: when request_refund commits
def test_a_refund_while_the_broker_is_down_is_answered_as_made_and_sent_by_reconciliation(
    alice, paid_order, fake_stripe, broker_down, caplog, time_machine
):
    item = paid_order.items.first()

    response = post_action(alice, ITEMS_URL, "refund_items", [item.pk], post="yes")

    assert response.status_code == 302
    assert messages_of(response) == [
        f"1 item of order {paid_order.reference} queued for refund: €10.00 "
        "(queued; it will be sent as soon as the task queue is reachable)"
    ]
    refund = Refund.objects.get()
    assert refund.status == RefundStatus.QUEUED and not fake_stripe.create_calls
    broker_errors = [r for r in caplog.records if "task queue unreachable" in r.getMessage()]
    assert len(broker_errors) == 1 and f"#{refund.pk}" in broker_errors[0].getMessage()

    # The broker is back; the reconciliation job finds the refund still queued and sends it.
    time_machine.move_to(timezone.now() + dt.timedelta(minutes=6))
    report = services.reconcile_refunds()

    assert [repair.refund_id for repair in report.resubmitted] == [refund.pk]
    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED and len(fake_stripe.create_calls) == 1
    assert paid_order.items.get(pk=item.pk).state == ItemState.PAYMENT_REFUND_SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_refunds_of_several_orders_while_the_broker_is_down_log_the_error_once(
    back_office_user, fake_stripe, broker_down, caplog
):
    from .factories import paid_order_with_items

    orders = [paid_order_with_items(1000), paid_order_with_items(2000)]
    refunds = services.request_refund(items=[o.items.get() for o in orders], user=back_office_user)

    assert [refund.task_enqueued for refund in refunds] == [False, False]
    assert sum("task queue unreachable" in r.getMessage() for r in caplog.records) == 1
    assert set(Refund.objects.values_list("status", flat=True)) == {RefundStatus.QUEUED}


# --- Users who may refund need a second factor when REFUND_REQUIRE_2FA is on --------------------


def test_without_a_verified_second_factor_a_refunder_cannot_refund(alice, settings, paid_order):
    settings.REFUND_REQUIRE_2FA = True  # alice logged in with a password only (force_login)

    changelist = alice.get(ITEMS_URL).content.decode()
    button = alice.get(reverse("admin:refunds_order_refund", args=[paid_order.pk]))
    forged = post_action(alice, ITEMS_URL, "refund_items", [paid_order.items.first().pk], post="yes", confirmed="x")

    assert 'value="refund_items"' not in changelist
    assert button.status_code == 403
    assert forged.status_code in (200, 302) and not Refund.objects.exists()  # the action is unknown to her


def test_without_the_otp_middleware_requiring_2fa_stops_startup(settings):
    from django.core.checks import run_checks

    settings.REFUND_REQUIRE_2FA = True
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "django_otp.middleware.OTPMiddleware"]

    assert "refunds.E004" in [problem.id for problem in run_checks()]
