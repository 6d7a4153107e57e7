"""The Back Office in a real browser: Playwright driving Debian's Chromium (never a downloaded one).

Set SAVE_SCREENSHOTS=1 to regenerate the README's screenshots in docs/; otherwise they are
written to a temporary directory, so a CI run leaves the tree clean.
"""

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from refunds import services
from refunds.models import ItemState, OrderItem, Refund, RefundOrigin, RefundStatus

from .conftest import service_missing
from .factories import OrderFactory, OrderItemFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"
PASSWORD = "secret-password"


@pytest.fixture
def screenshots(tmp_path) -> Path:
    return DOCS if os.environ.get("SAVE_SCREENSHOTS") == "1" else tmp_path


@contextmanager
def chromium_page():
    """A page in Debian's Chromium. Playwright's sync API runs an event loop in this thread, so
    Django refuses ORM calls inside the block (SynchronousOnlyOperation; forcing them through
    leaves a connection open that blocks dropping the PostgreSQL test database): tests touch
    the database only before and after it."""
    if not os.access(CHROMIUM, os.X_OK):
        service_missing("Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def shop_order(fake_stripe):
    """An order as the Back Office meets it: one item already refunded at Stripe, a refund made
    in the Stripe Dashboard, three items still paid."""
    order = OrderFactory(reference="DE--1001", customer_email="mia.schmidt@example.com", shipping_amount=495)
    for sku, name, amount in [
        ("TEE-BLK-M", "T-shirt, black, M", 2500),
        ("HOOD-GRY-L", "Hoodie, grey, L", 5990),
        ("CAP-NVY", "Cap, navy", 1750),
        ("SOCK-3PK", "Socks, 3-pack", 1200),
    ]:
        OrderItemFactory(order=order, sku=sku, name=name, amount=amount)
    fake_stripe.next_status = "succeeded"
    earlier = UserFactory(username="jonas", is_superuser=True)
    (refund,) = services.request_refund(items=[order.items.get(sku="SOCK-3PK")], user=earlier, reason="duplicate")
    services.submit_refund(refund_id=refund.pk)
    Refund.objects.create(
        order=order, amount=500, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_3QdashboardGoodwill", status=RefundStatus.SUCCEEDED,
    )
    # What Stripe answers the refund made in this test: pending, so the items stay pending.
    fake_stripe.next_status = "pending"
    return order


def test_refund_two_items_through_the_confirmation_page(live_server, shop_order, fake_stripe, screenshots):
    UserFactory(username="alice", is_superuser=True)
    tee, hoodie = shop_order.items.get(sku="TEE-BLK-M"), shop_order.items.get(sku="HOOD-GRY-L")
    socks = shop_order.items.get(sku="SOCK-3PK")  # refunded before: listed as not refundable

    with chromium_page() as page:
        page.goto(f"{live_server.url}/admin/login/?next=/admin/refunds/orderitem/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#result_list")

        for item in (tee, hoodie, socks):
            page.check(f'input.action-select[value="{item.pk}"]')
        page.select_option('select[name="action"]', "refund_items")
        page.click('button[name="index"]')

        page.wait_for_selector("body.refund-confirmation")
        plan = page.locator(f"#plan-{shop_order.pk}").inner_text()
        assert "Order DE--1001" in plan
        assert "€25.00" in plan and "€59.90" in plan
        assert "SOCK-3PK · Socks, 3-pack (€12.00): its state is “payment refund succeeded”." in plan
        assert page.locator(".oms-total").inner_text() == "€84.90"
        page.select_option("#id_reason", "requested_by_customer")
        page.fill("#id_note", "Returned in the original packaging.")
        page.screenshot(path=screenshots / "refund-confirmation.png", full_page=True)
        page.click('input[type=submit][value="Yes, refund"]')

        assert page.locator("ul.messagelist li.success").inner_text() == (
            "2 items of order DE--1001 queued for refund: €84.90"
        )
        assert page.locator("ul.messagelist li.warning").inner_text() == (
            "DE--1001 / SOCK-3PK was not refunded: its state is “payment refund succeeded”."
        )
        for item in (tee, hoodie):
            row = page.locator("#result_list tr", has=page.locator(f'input.action-select[value="{item.pk}"]'))
            assert row.locator(".oms-state").first.inner_text() == "payment refund pending"

        page.goto(f"{live_server.url}/admin/refunds/order/{shop_order.pk}/change/")
        assert "Refunded outside this system." in page.locator(".oms-outside-notice").inner_text()
        page.screenshot(path=screenshots / "order-page.png", full_page=True)

        page.goto(f"{live_server.url}/admin/refunds/orderitem/{tee.pk}/change/")
        assert page.locator("svg.oms-process g.oms-node--current .oms-label").inner_html() == "payment refund pending"
        page.locator("#refund-process").screenshot(path=screenshots / "item-process.png")

    assert [call["amount"] for call in fake_stripe.create_calls][-1] == 8490
    assert set(OrderItem.objects.filter(pk__in=[tee.pk, hoodie.pk]).values_list("state", flat=True)) == {
        ItemState.PAYMENT_REFUND_PENDING
    }
    assert Refund.objects.filter(reason="requested_by_customer", created_by__username="alice").count() == 1


# --- Logins: throttled, and a second factor for users who may refund ----------------------------


def totp_code(base32_key: str, at: float | None = None) -> str:
    """RFC 6238 (SHA-1, 30 s, 6 digits), what an authenticator app shows for the key."""
    import base64
    import hashlib
    import hmac
    import struct
    import time

    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(base64.b32decode(base32_key), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def log_in(page, url, username, password, code=None):
    page.goto(f"{url}/admin/login/?next=/admin/refunds/orderitem/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    if code is not None:
        page.fill("#id_otp_token", code)
    page.click("input[type=submit]")
    page.wait_for_load_state()


def test_repeated_failed_logins_lock_the_user_out(live_server, settings):
    UserFactory(username="mallory-target", is_superuser=True)

    with chromium_page() as page:
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            log_in(page, live_server.url, "mallory-target", "wrong-guess")
            assert "Please enter the correct username and password" in page.locator(".errornote").inner_text()
        log_in(page, live_server.url, "mallory-target", "wrong-guess")  # the limit reached
        assert "Too many failed logins for this user" in page.locator(".errornote").inner_text()
        assert "Try again in 15 minutes" in page.locator("#content-main").inner_text()

        log_in(page, live_server.url, "mallory-target", PASSWORD)  # even the right password, for now
        assert "Too many failed logins for this user" in page.locator(".errornote").inner_text()
        assert "/admin/login/" in page.url


def test_a_user_who_may_refund_logs_in_with_a_totp_code_when_required(live_server, settings, shop_order):
    from io import StringIO

    from django.contrib.auth.models import Permission
    from django.core.management import call_command

    settings.REFUND_REQUIRE_2FA = True
    # django-otp throttles a device for 1 s (doubling) after a wrong code; a fast browser
    # would meet that wait, which is django-otp's to test, not ours.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    UserFactory(username="bob", is_superuser=True)
    out = StringIO()
    call_command("add_totp_device", "bob", stdout=out)
    key = next(line.split(": ", 1)[1] for line in out.getvalue().splitlines() if line.startswith("Key"))
    viewer = UserFactory(username="vera", is_superuser=False)  # may look, may not refund: no second factor
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_orderitem", "view_order"]))

    with chromium_page() as page:
        log_in(page, live_server.url, "bob", PASSWORD)
        assert "enter the authentication code" in page.locator(".errornote").inner_text()

        log_in(page, live_server.url, "bob", PASSWORD, code="000000" if totp_code(key) != "000000" else "111111")
        assert "That authentication code is not right" in page.locator(".errornote").inner_text()

        log_in(page, live_server.url, "bob", PASSWORD, code=totp_code(key))
        assert page.locator(".errornote").count() == 0, page.locator(".errornote").inner_text()
        page.wait_for_selector("#result_list")
        assert page.locator('select[name="action"] option[value="refund_items"]').count() == 1

    with chromium_page() as page:
        log_in(page, live_server.url, "vera", PASSWORD)
        page.wait_for_selector("#result_list")
        assert page.locator('select[name="action"] option[value="refund_items"]').count() == 0


def log_in_at(page, live_server, username, next_url):
    """Log in afresh (cookies cleared) and land on `next_url`."""
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def test_dual_control_and_the_needs_attention_page(live_server, fake_stripe, settings, screenshots):
    """alice asks for a €145.90 refund, which needs approval; bob approves it; Stripe declines it;
    the case is on the "Needs attention" page and counted on the admin index."""
    import datetime as dt

    from django.utils import timezone

    from refunds.services import attention

    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 10000}
    settings.REFUND_ALERT_EMAILS = []
    alice = UserFactory(username="alice", is_superuser=True)
    UserFactory(username="bob", is_superuser=True)
    order = OrderFactory(reference="DE--2044", customer_email="lena.fischer@example.com", shipping_amount=495)
    for sku, name, amount in [("COAT-NVY-M", "Wool coat, navy, M", 12900), ("SCARF-RED", "Scarf, red", 1690)]:
        OrderItemFactory(order=order, sku=sku, name=name, amount=amount)
    # Another order's refund, pending at Stripe for twelve days: reconciliation's case.
    other = OrderFactory(reference="DE--1987", customer_email="jan.weber@example.com")
    OrderItemFactory(order=other, sku="BOOT-BRN-42", name="Boots, brown, 42", amount=8900)
    fake_stripe.next_status = "pending"
    (stuck,) = services.request_refund(items=other.items.all(), user=alice)
    services.submit_refund(refund_id=stuck.pk)
    Refund.objects.filter(pk=stuck.pk).update(status_changed_at=timezone.now() - dt.timedelta(days=12))
    attention.open_stale_cases(limit=10)
    fake_stripe.next_status, fake_stripe.next_failure_reason = "failed", "expired_or_canceled_card"
    items = list(order.items.order_by("pk"))

    with chromium_page() as page:
        log_in_at(page, live_server, "alice", "/admin/refunds/orderitem/")
        page.wait_for_selector("#result_list")
        for item in items:
            page.check(f'input.action-select[value="{item.pk}"]')
        page.select_option('select[name="action"]', "refund_items")
        page.click('button[name="index"]')
        page.wait_for_selector("body.refund-confirmation")
        assert page.locator(".oms-approval-notice").inner_text() == (
            "Needs approval: this refund is at or above €100.00, so it waits for a second user's approval "
            "before anything is sent to Stripe."
        )
        page.fill("#id_note", "Coat returned unworn, scarf missing its tag.")
        page.screenshot(path=screenshots / "approval-request.png", full_page=True)
        page.click('input[type=submit][value="Yes, refund"]')
        assert page.locator("ul.messagelist li.warning").inner_text().startswith(
            "2 items of order DE--2044 await approval: €150.85."
        )

        # alice cannot approve her own refund: the page says so before she tries.
        page.goto(f"{live_server.url}/admin/refunds/refund/?status__exact=awaiting_approval")
        page.check("input.action-select")
        page.select_option('select[name="action"]', "approve_refunds")
        page.click('button[name="index"]')
        assert "you requested it yourself" in page.locator("tr.oms-refused").inner_text()

        log_in_at(page, live_server, "bob", "/admin/refunds/refund/?status__exact=awaiting_approval")
        page.wait_for_selector("#result_list")
        page.check("input.action-select")
        page.select_option('select[name="action"]', "approve_refunds")
        page.click('button[name="index"]')
        page.wait_for_selector("body.approval-confirmation")
        page.fill("#id_note", "Return checked in the warehouse.")
        page.screenshot(path=screenshots / "approval-confirmation.png", full_page=True)
        page.click('input[type=submit][value="Yes, approve"]')
        assert "approved: €150.85 is being sent to Stripe." in page.locator("ul.messagelist li.success").inner_text()

        page.goto(f"{live_server.url}/admin/")
        assert page.locator("#attention-notice").inner_text() == (
            "Needs attention: 2 open cases (1 refund failed, 1 stuck pending)"
        )
        page.click("#attention-notice a")
        page.wait_for_selector("#kind-counts")
        rows = page.locator("#result_list tbody tr")
        assert rows.count() == 2
        assert "refund failed" in rows.nth(0).inner_text() and "DE--2044" in rows.nth(0).inner_text()
        page.screenshot(path=screenshots / "attention-page.png", full_page=True)

        page.goto(f"{live_server.url}/admin/refunds/order/{order.pk}/refund-amount/")
        page.fill("#id_amount", "12.50")
        page.fill("#id_note", "Goodwill for the late delivery.")
        page.screenshot(path=screenshots / "amount-refund.png", full_page=True)

    refund = Refund.objects.get(order=order)
    assert (refund.created_by.username, refund.approved_by.username, refund.status) == ("alice", "bob", "failed")
    assert fake_stripe.create_calls[-1]["amount"] == 15085
