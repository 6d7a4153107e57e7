"""The Back Office as real staff meet it, in Debian's Chromium: a double click under network
latency, pages at 1280 px, and the Back Office in German."""

import os
import re
from contextlib import contextmanager

import pytest

from refunds.models import ItemState, OrderItem, Refund

from .conftest import service_missing
from .factories import OrderFactory, OrderItemFactory, UserFactory
from .test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LATENCY_MS = 400
CLOCK = r"\d\d:\d\d:\d\d"


@contextmanager
def chromium_page(*, javascript=True, width=1280, locale="en-US", color_scheme="light"):
    """A page in Debian's Chromium (never a downloaded one). The database is touched only
    before and after the block (see tests/test_browser.py)."""
    if not os.access(CHROMIUM, os.X_OK):
        service_missing("Chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": width, "height": 900}, locale=locale, java_script_enabled=javascript,
                color_scheme=color_scheme, extra_http_headers={"Accept-Language": locale},
            )
            context.set_default_timeout(20_000)
            yield context.new_page()
        finally:
            browser.close()


def add_latency(page, milliseconds=LATENCY_MS):
    """Chromium's own network emulation (DevTools protocol), as a slow shop network has it."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": milliseconds, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def double_click(page, selector, gap_ms=150):
    """Two clicks as a hand makes them, 150 ms apart: the second lands while the first POST is
    still on its way (Playwright's own dblclick is so fast that Chromium merges the two)."""
    box = page.locator(selector).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    page.wait_for_timeout(gap_ms)
    page.mouse.click(x, y)


def log_in(page, base_url, username, next_url):
    page.goto(f"{base_url}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()


@pytest.fixture
def expensive_order(fake_stripe):
    fake_stripe.next_status = "pending"
    UserFactory(username="alice", is_superuser=True)
    order = OrderFactory(reference="DE--3107", customer_email="paul.becker@example.com", shipping_amount=0)
    OrderItemFactory(order=order, sku="JACKET-OLV-L", name="Field jacket, olive, L", amount=24900)
    OrderItemFactory(order=order, sku="BELT-BRN", name="Belt, brown", amount=3900)
    return order


def open_confirmation(page, base_url, item):
    log_in(page, base_url, "alice", "/admin/refunds/orderitem/")
    page.wait_for_selector("#result_list")
    page.check(f'input.action-select[value="{item.pk}"]')
    page.select_option('select[name="action"]', "refund_items")
    page.click('button[name="index"]')
    page.wait_for_selector("body.refund-confirmation")


def test_a_double_click_on_yes_refund_sends_one_post_and_shows_the_success(live_server, expensive_order):
    jacket = expensive_order.items.get(sku="JACKET-OLV-L")

    with chromium_page() as page:
        add_latency(page)  # from the start: in force for certain when the button is clicked
        open_confirmation(page, live_server.url, jacket)
        posts = []
        page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
        double_click(page, 'input[type=submit][value="Yes, refund"]')
        page.wait_for_selector("#result_list")

        assert len(posts) == 1
        assert page.locator("ul.messagelist li").all_inner_texts() == [
            "1 item of order DE--3107 queued for refund: €249.00"
        ]

    assert Refund.objects.count() == 1
    assert OrderItem.objects.get(pk=jacket.pk).state == ItemState.PAYMENT_REFUND_PENDING


def test_a_double_submit_the_button_cannot_stop_is_answered_with_the_refund_it_made(live_server, expensive_order):
    """Without JavaScript nothing stops the second click: Chromium sends both POSTs and shows the
    second answer, which must say the refund was made, not that nothing was refunded."""
    jacket = expensive_order.items.get(sku="JACKET-OLV-L")

    with chromium_page(javascript=False) as page:
        add_latency(page)  # from the start: in force for certain when the button is clicked
        open_confirmation(page, live_server.url, jacket)
        posts = []
        page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
        double_click(page, 'input[type=submit][value="Yes, refund"]')
        page.wait_for_selector("#result_list")
        shown = page.locator("ul.messagelist li").all_inner_texts()
        link = page.locator("ul.messagelist a.oms-refund-link").first.get_attribute("href")

    refund = Refund.objects.get()
    assert len(posts) == 2
    assert not any("Nothing was refunded" in text for text in shown), shown
    assert any(
        re.fullmatch(rf"1 item of order DE--3107 already queued for refund by you at {CLOCK}: €249\.00 \(refund #{refund.pk}\)", text)
        for text in shown
    ), shown
    assert link == f"/admin/refunds/refund/{refund.pk}/change/"
