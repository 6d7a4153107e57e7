"""The API's docs page in a real browser (Debian's Chromium through Playwright), with every
request outside this server refused: Swagger UI renders the schema offline (DESIGN.md §8)."""

from urllib.parse import urlsplit

import pytest

from .test_browser import chromium_page, screenshots  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PATHS = [
    "/api/v1/orders/", "/api/v1/orders/{reference}/", "/api/v1/orders/{reference}/refunds/preview/",
    "/api/v1/orders/{reference}/refunds/", "/api/v1/refunds/{refund_id}/",
]


def test_the_docs_page_renders_every_endpoint_with_no_internet(live_server, screenshots):  # noqa: F811
    here = urlsplit(live_server.url).netloc
    refused, served = [], []

    def only_this_server(route):
        url = route.request.url
        if urlsplit(url).netloc == here:
            served.append(url)
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with chromium_page() as page:
        page.route("**/*", only_this_server)
        page.goto(f"{live_server.url}/api/v1/docs/")
        page.wait_for_selector(".opblock-summary-path")
        shown = [el.inner_text().replace("\u200b", "") for el in page.query_selector_all(".opblock-summary-path")]
        title = page.inner_text(".info .title")
        authorize = page.query_selector("button.authorize")
        page.screenshot(path=str(screenshots / "api-docs.png"), full_page=False)

    assert sorted(shown) == sorted(PATHS)
    assert title.startswith("Refunds OMS API")
    assert authorize is not None  # the Bearer scheme: a token can be tried from the page
    assert refused == []
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in url for url in served)
    assert any(url.endswith("/api/v1/schema/") for url in served)
