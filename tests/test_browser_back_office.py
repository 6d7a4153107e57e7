"""The Back Office as real staff meet it, in Debian's Chromium: a double click under network
latency, pages at 1280 px, and the Back Office in German."""

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

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


# --- Every page fits at 1280 px, light and dark, English and German -----------------------------

LONG_EVENT_ID = "evt_oms_trigger_3QdFz2LkdIwHu7ix0tSHq1ZbRefundUpdated1732694400"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path


@pytest.fixture
def busy_back_office(fake_stripe, settings):
    """A shop's Back Office after a busy week: refunds in every state, a Stripe decline with a
    long trigger event id, a refund awaiting approval, a Stripe Dashboard refund, open cases."""
    from django.db import transaction

    from refunds import services
    from refunds.models import ItemState, OrderItem, RefundOrigin, RefundStatus, StripeEvent
    from refunds.services import Actor, attention
    from refunds.services.audit import transition_items

    alice = UserFactory(username="alice", is_superuser=True)
    UserFactory(username="bob", is_superuser=True)
    orders = []
    for n, (email, items) in enumerate([
        ("mia.schmidt@example.com", [("TEE-BLK-M", "T-shirt, black, M", 2500), ("HOOD-GRY-L", "Hoodie, grey, L", 5990),
                                     ("CAP-NVY", "Cap, navy", 1750), ("SOCK-3PK", "Socks, 3-pack", 1200)]),
        ("leonie.hoffmann-schulze@example-shop.de", [("COAT-NVY-M", "Wool coat, navy, M", 12900),
                                                     ("SCARF-RED", "Scarf, red, long knitted winter scarf", 1690)]),
        ("jan.weber@example.com", [("BOOT-BRN-42", "Boots, brown, 42", 8900)]),
    ]):
        order = OrderFactory(reference=f"DE--{2040 + n}", customer_email=email, shipping_amount=495)
        for sku, name, amount in items:
            OrderItemFactory(order=order, sku=sku, name=name, amount=amount)
        orders.append(order)
    first, second, third = orders
    fake_stripe.next_status = "succeeded"
    (done,) = services.request_refund(items=list(first.items.all()[:2]), user=alice, reason="requested_by_customer")
    services.submit_refund(refund_id=done.pk)
    fake_stripe.next_status = "pending"
    (pending,) = services.request_refund(items=[first.items.get(sku="SOCK-3PK")], user=alice)
    services.submit_refund(refund_id=pending.pk)
    # Stripe declines the pending refund: the audit row names the (long) trigger event.
    with transaction.atomic():
        items = list(OrderItem.objects.select_for_update().filter(pk__in=pending.items.values("pk")))
        transition_items(items, "refund_failed", by=Actor.stripe_event(LONG_EVENT_ID), refund=pending)
        Refund.objects.filter(pk=pending.pk).update(status=RefundStatus.FAILED, failure_reason="expired_or_canceled_card")
    StripeEvent.objects.create(
        stripe_event_id=LONG_EVENT_ID, type="charge.refund.updated", refund=pending, payload={"id": LONG_EVENT_ID},
        error="InvalidEvent: the refund re_3QdFz2LkdIwHu7ix0tSHq1Zb names an order whose PaymentIntent "
              "pi_3QdFz2LkdIwHu7ix0tSHq1Zb_does_not_match " * 3,
    )
    settings.REFUND_APPROVAL_THRESHOLDS = {"eur": 10000}
    services.request_refund(items=list(second.items.all()), user=alice, note="Coat returned unworn, scarf missing its tag.")
    Refund.objects.create(
        order=third, amount=500, currency="eur", origin=RefundOrigin.STRIPE_DASHBOARD,
        stripe_refund_id="re_3QdashboardGoodwillRefundMadeByHandInTheDashboard", status=RefundStatus.SUCCEEDED,
    )
    attention.open_case(kind="refund_failed", refund=pending, detail="Refund re_fake000002 of €12.00 for order "
                        "DE--2040 was failed by Stripe (expired_or_canceled_card). " * 2)
    assert OrderItem.objects.filter(state=ItemState.PAYMENT_REFUND_FAILED).exists()
    return {"orders": orders, "refund": pending, "item": first.items.get(sku="SOCK-3PK")}


def back_office_pages(data) -> list[tuple[str, str]]:
    from refunds.models import AttentionCase, ItemTransition, StripeEvent

    order, refund, item = data["orders"][0], data["refund"], data["item"]
    event = StripeEvent.objects.get()
    return [
        ("index", "/admin/"),
        ("orders", "/admin/refunds/order/"),
        ("order", f"/admin/refunds/order/{order.pk}/change/"),
        ("order-refund", f"/admin/refunds/order/{order.pk}/refund/"),
        ("order-amount", f"/admin/refunds/order/{order.pk}/refund-amount/"),
        ("items", "/admin/refunds/orderitem/"),
        ("item", f"/admin/refunds/orderitem/{item.pk}/change/"),
        ("refunds", "/admin/refunds/refund/"),
        ("refund", f"/admin/refunds/refund/{refund.pk}/change/"),
        ("events", "/admin/refunds/stripeevent/"),
        ("event", f"/admin/refunds/stripeevent/{event.pk}/change/"),
        ("transitions", "/admin/refunds/itemtransition/"),
        ("transition", f"/admin/refunds/itemtransition/{ItemTransition.objects.order_by('-pk').first().pk}/change/"),
        ("attention", "/admin/refunds/attention/"),
        ("case", f"/admin/refunds/attention/{AttentionCase.objects.get().pk}/change/"),
    ]


def overflow(page) -> dict:
    """How far the document is wider than the window, and the widest culprits."""
    return page.evaluate(
        """() => {
          const width = window.innerWidth;
          const wide = [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > width + 1)
            .slice(0, 5).map(el => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right));
          // A table scrolling inside its own box hides columns as surely as a page does.
          const hidden = [...document.querySelectorAll('#changelist .results, .inline-group fieldset.module, .oms-history')]
            .filter(el => el.scrollWidth > el.clientWidth + 1)
            .map(el => el.className + ' ' + el.scrollWidth + '>' + el.clientWidth);
          // Every column says what it holds (the action checkboxes aside).
          const unnamed = [...document.querySelectorAll('thead th')]
            .filter(th => !th.classList.contains('action-checkbox-column') && !th.querySelector('input') && !th.innerText.trim())
            .map(th => th.className || th.closest('table').id || 'th');
          return {excess: Math.max(document.documentElement.scrollWidth - width, hidden.length, unnamed.length), wide, hidden, unnamed};
        }"""
    )


@pytest.mark.parametrize("scheme,locale", [("light", "en-US"), ("dark", "en-US"), ("light", "de")])
def test_every_back_office_page_fits_1280_px(live_server, busy_back_office, screenshot_dir, scheme, locale):
    pages = back_office_pages(busy_back_office)
    too_wide = {}
    with chromium_page(color_scheme=scheme, locale=locale) as page:
        log_in(page, live_server.url, "alice", "/admin/")
        for name, path in pages:
            page.goto(f"{live_server.url}{path}")
            result = overflow(page)
            if result["excess"] > 0:
                too_wide[name] = result
            if scheme == "light" and locale == "en-US" or name in ("orders", "item"):
                page.screenshot(path=screenshot_dir / f"{name}-{scheme}-{locale[:2]}.png", full_page=True)
        # The refund confirmation page, reached as a user reaches it.
        page.goto(f"{live_server.url}/admin/refunds/orderitem/")
        page.check("#action-toggle")
        page.select_option('select[name="action"]', "refund_items")
        page.click('button[name="index"]')
        page.wait_for_selector("body.refund-confirmation")
        if overflow(page)["excess"] > 0:
            too_wide["confirmation"] = overflow(page)
        if scheme == "light":
            page.screenshot(path=screenshot_dir / f"confirmation-{scheme}-{locale[:2]}.png", full_page=True)
    assert too_wide == {}, json.dumps(too_wide, indent=1)


def test_the_back_office_in_german(live_server, fake_stripe, screenshot_dir):
    """A browser that asks for German (Accept-Language: de) gets the item states, the
    confirmation page and the money in German."""
    fake_stripe.next_status = "pending"
    UserFactory(username="alice", is_superuser=True)
    order = OrderFactory(reference="DE--4711", customer_email="anna.wagner@example.de", shipping_amount=0)
    sofa = OrderItemFactory(order=order, sku="SOFA-3S-GRN", name="Sofa, 3-Sitzer, grün", amount=124900)
    lamp = OrderItemFactory(order=order, sku="LAMP-BRS", name="Stehleuchte, Messing", amount=8990)

    with chromium_page(locale="de") as page:
        log_in(page, live_server.url, "alice", "/admin/refunds/orderitem/")
        page.wait_for_selector("#result_list")
        assert page.locator("#site-name").inner_text() == "Erstattungen – Back Office"
        assert set(page.locator("#result_list .oms-state").all_inner_texts()) == {"Zahlung erfasst"}
        assert "€1.249,00" in page.locator("#result_list").inner_text()
        page.check(f'input.action-select[value="{sofa.pk}"]')
        page.select_option('select[name="action"]', "refund_items")
        page.click('button[name="index"]')
        page.wait_for_selector("body.refund-confirmation")

        assert page.locator("h1").inner_text() == "Positionen erstatten"
        assert page.locator(".oms-plan h2").inner_text().startswith("Bestellung DE--4711")
        assert page.locator(".oms-total").inner_text() == "€1.249,00"
        page.screenshot(path=screenshot_dir / "confirmation-german.png", full_page=True)
        page.click('input[type=submit][value="Ja, erstatten"]')
        page.wait_for_selector("#result_list")

        assert page.locator("ul.messagelist li.success").inner_text() == (
            "1 Position der Bestellung DE--4711 zur Erstattung eingereiht: €1.249,00"
        )
        row = page.locator("#result_list tr", has=page.locator(f'input.action-select[value="{sofa.pk}"]'))
        assert row.locator(".oms-state").inner_text() == "Zahlungserstattung ausstehend"

    assert OrderItem.objects.get(pk=lamp.pk).state == ItemState.PAYMENT_CAPTURED
    assert Refund.objects.get().amount == 124900
