"""The finance export: `manage.py export_refunds` and the admin action `export_refunds_csv` write
the DESIGN.md §9 columns, amounts exact in major units for every currency, streamed."""

import csv
import datetime as dt
import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from refunds import services
from refunds.models import Refund, RefundOrigin, RefundStatus
from refunds.services.export import EXPORT_COLUMNS, export_rows

from .factories import OrderFactory, OrderItemFactory, UserFactory, paid_order_with_items, stored_order

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


@pytest.fixture
def refunds(settings, back_office_user, fake_stripe, time_machine):
    """A EUR refund of two items (approved by bob), a JPY amount refund, a Stripe Dashboard
    refund, a KWD one that failed, and one the next day."""
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 5000}
    time_machine.move_to(DAY, tick=False)
    eur = OrderFactory(reference="DE--1001", stripe_payment_intent_id="pi_eur0001", shipping_amount=495)
    OrderItemFactory(order=eur, sku="TEE-BLK-M", amount=2500)
    OrderItemFactory(order=eur, sku="HOOD-GRY-L", amount=5990)
    [eur_refund] = services.request_refund(items=eur.items.all(), user=back_office_user, reason="requested_by_customer")
    services.approve_refund(refund=eur_refund, user=UserFactory(username="bob", is_superuser=True))
    services.submit_refund(refund_id=eur_refund.pk)

    time_machine.move_to(DAY + dt.timedelta(hours=1), tick=False)
    jpy = paid_order_with_items(3000, reference="JP--2001", currency="jpy", stripe_payment_intent_id="pi_jpy0001")
    jpy_refund = services.request_amount_refund(order=jpy, amount=1200, user=back_office_user, note="goodwill")
    services.submit_refund(refund_id=jpy_refund.pk)

    time_machine.move_to(DAY + dt.timedelta(hours=2), tick=False)
    dashboard = Refund.objects.create(
        order=eur, amount=500, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_3QdashboardGoodwill", status=RefundStatus.SUCCEEDED,
    )

    time_machine.move_to(DAY + dt.timedelta(hours=3), tick=False)
    kwd = stored_order(12345, reference="=HYPERLINK(1)", currency="kwd", stripe_payment_intent_id="pi_kwd0001")
    fake_stripe.next_status, fake_stripe.next_failure_reason = "failed", "declined"
    [kwd_refund] = services.request_refund(items=kwd.items.all(), user=back_office_user)
    services.submit_refund(refund_id=kwd_refund.pk)

    time_machine.move_to(DAY + dt.timedelta(days=1), tick=False)
    fake_stripe.next_status = "succeeded"
    later = services.request_amount_refund(order=jpy, amount=100, user=back_office_user)
    return {"eur": eur_refund, "jpy": jpy_refund, "dashboard": dashboard, "kwd": kwd_refund, "later": later}


def read_csv(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == EXPORT_COLUMNS
    return list(reader)


def test_the_columns_and_values_for_eur_jpy_a_dashboard_refund_and_kwd(refunds, tmp_path):
    output = tmp_path / "refunds.csv"

    call_command("export_refunds", "--since", "2026-03-02", "--until", "2026-03-02", "--output", str(output), stderr=io.StringIO())

    rows = read_csv(output.read_text(encoding="utf-8"))
    eur, jpy, dashboard, kwd = (refunds[key] for key in ("eur", "jpy", "dashboard", "kwd"))
    assert rows == [
        {
            "refund_id": str(eur.pk), "stripe_refund_id": "re_fake000001", "order_reference": "DE--1001",
            "payment_intent": "pi_eur0001", "currency": "eur", "amount": "89.85", "amount_minor": "8985",
            "shipping_amount_minor": "495", "status": "succeeded", "failure_reason": "", "reason": "requested_by_customer",
            "origin": "back_office", "requested_by": "alice", "approved_by": "bob", "created_at": "2026-03-02T09:30:00Z",
            "item_skus": "TEE-BLK-M HOOD-GRY-L",
        },
        {
            "refund_id": str(jpy.pk), "stripe_refund_id": "re_fake000002", "order_reference": "JP--2001",
            "payment_intent": "pi_jpy0001", "currency": "jpy", "amount": "1200", "amount_minor": "1200",
            "shipping_amount_minor": "0", "status": "succeeded", "failure_reason": "", "reason": "",
            "origin": "back_office", "requested_by": "alice", "approved_by": "", "created_at": "2026-03-02T10:30:00Z",
            "item_skus": "",
        },
        {
            "refund_id": str(dashboard.pk), "stripe_refund_id": "re_3QdashboardGoodwill", "order_reference": "DE--1001",
            "payment_intent": "pi_eur0001", "currency": "eur", "amount": "5.00", "amount_minor": "500",
            "shipping_amount_minor": "0", "status": "succeeded", "failure_reason": "", "reason": "",
            "origin": "stripe_dashboard", "requested_by": "", "approved_by": "", "created_at": "2026-03-02T11:30:00Z",
            "item_skus": "",
        },
        {
            "refund_id": str(kwd.pk), "stripe_refund_id": "re_fake000003", "order_reference": "'=HYPERLINK(1)",
            "payment_intent": "pi_kwd0001", "currency": "kwd", "amount": "12.840", "amount_minor": "12840",
            "shipping_amount_minor": "495", "status": "failed", "failure_reason": "declined", "reason": "",
            "origin": "back_office", "requested_by": "alice", "approved_by": "", "created_at": "2026-03-02T12:30:00Z",
            "item_skus": kwd.items.get().sku,
        },
    ]
    assert not (tmp_path / "refunds.csv.partial").exists()


def test_since_alone_runs_up_to_now_and_the_csv_can_go_to_stdout(refunds):
    out, err = io.StringIO(), io.StringIO()

    call_command("export_refunds", "--since", "2026-03-03", stdout=out, stderr=err)

    [row] = read_csv(out.getvalue())
    assert row["refund_id"] == str(refunds["later"].pk) and row["amount"] == "100"
    assert err.getvalue().strip() == "1 refund(s) created since 2026-03-03 (UTC) exported to stdout."


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--since", "2026-13-01"], "'2026-13-01' is not a date; write it as YYYY-MM-DD"),
        (["--since", "2026-03-05", "--until", "2026-03-01"], "--until 2026-03-01 is before --since 2026-03-05"),
        ([], "the following arguments are required: --since"),
    ],
)
def test_bad_arguments_are_refused_clearly(db, arguments, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("export_refunds", *arguments, stdout=io.StringIO(), stderr=io.StringIO())


def test_rows_are_read_page_by_page_with_a_flat_number_of_queries_per_page(back_office_user):
    order = paid_order_with_items(*([100] * 5), shipping_amount=0)
    for item in order.items.all():
        services.request_refund(items=[item], user=back_office_user)
    rows = Refund.objects.all()

    with CaptureQueriesContext(connection) as queries:
        exported = list(export_rows(rows, page_size=2))

    assert len(exported) == 5
    assert [row[0] for row in exported] == [str(pk) for pk in Refund.objects.order_by("pk").values_list("pk", flat=True)]
    assert len(queries) == 3 * 2 + 1  # per page: the refunds, their SKUs; then the empty page


def test_the_admin_action_streams_the_same_csv(client, refunds):
    finance = UserFactory(username="fiona", is_superuser=False)
    finance.user_permissions.add(*Permission.objects.filter(codename__in=["view_refund", "view_order"]))
    client.force_login(finance)
    selected = [refunds["jpy"].pk, refunds["dashboard"].pk]

    response = client.post(
        reverse("admin:refunds_refund_changelist"),
        {"action": "export_refunds_csv", ACTION_CHECKBOX_NAME: [str(pk) for pk in selected]},
    )

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="refunds-')
    rows = read_csv(b"".join(response.streaming_content).decode())
    assert [(row["refund_id"], row["currency"], row["amount"], row["origin"]) for row in rows] == [
        (str(refunds["jpy"].pk), "jpy", "1200", "back_office"),
        (str(refunds["dashboard"].pk), "eur", "5.00", "stripe_dashboard"),
    ]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def many_refunds(count: int) -> None:
    order = paid_order_with_items(100, shipping_amount=0, amount_captured=10**9)
    Refund.objects.bulk_create(
        Refund(order=order, amount=100, currency="eur", status=RefundStatus.SUCCEEDED, idempotency_key=f"k{n}")
        for n in range(count)
    )


def test_a_long_export_draws_a_progress_bar_on_a_terminal_only(tmp_path):
    many_refunds(2500)
    terminal, piped = Terminal(), io.StringIO()

    call_command("export_refunds", "--since", "2000-01-01", "--output", str(tmp_path / "a.csv"), stderr=terminal)
    call_command("export_refunds", "--since", "2000-01-01", "--output", str(tmp_path / "b.csv"), stderr=piped)

    assert "exporting:   0%" in terminal.getvalue() and "2500/2500" in terminal.getvalue()
    assert "exporting" not in piped.getvalue()
    assert "2,500 refund(s) created since 2000-01-01 (UTC) exported to" in piped.getvalue()
    assert len((tmp_path / "b.csv").read_text().splitlines()) == 2501
