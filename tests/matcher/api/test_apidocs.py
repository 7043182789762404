"""The API's documentation pages work offline: ``/docs`` (Swagger UI) and ``/redoc`` reference only the API's own
files, every one of them is served (with a token configured, without sending it), and Swagger UI renders the
API's operations in a real headless Chromium that has no internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from keyreid_stream.matcher.api.apidocs import ASSETS_URL

PAGES = ("/docs", "/redoc")
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


class _References(HTMLParser):
    """Every ``src`` / ``href`` of a page, and the URLs its inline scripts name."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "spec-url") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += re.findall(r"""(?:url|oauth2RedirectUrl)\s*:\s*['"]([^'"]+)['"]""", data)


def references(page: str) -> list[str]:
    parser = _References()
    parser.feed(page)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
def test_page_and_every_file_it_references_are_served_locally(secured_server, page: str) -> None:
    with httpx.Client(base_url=secured_server.url, timeout=10) as client:  # no token: these routes are open
        answer = client.get(page)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        assert not re.search(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}", answer.text), answer.text  # no CDN
        urls = references(answer.text)
        assert any(url.endswith(".js") for url in urls) and "/openapi.json" in urls, urls
        for url in urls:
            assert url.startswith("/"), url
            fetched = client.get(url)
            suffix = url[url.rfind("."):]
            assert fetched.status_code == 200, (url, fetched.status_code)
            assert TYPES[suffix] in fetched.headers["content-type"] and len(fetched.content) > 100, url
        assert all(url.startswith((ASSETS_URL + "/", "/openapi.json")) for url in urls), urls


def test_no_oauth2_redirect_page(secured_server) -> None:
    with httpx.Client(base_url=secured_server.url, timeout=10) as client:
        assert client.get("/docs/oauth2-redirect").status_code in (401, 404)
        assert client.get(f"{ASSETS_URL}/../../openapi.json").status_code in (200, 404)  # normalised, no escape
        assert client.get(f"{ASSETS_URL}/missing.js").status_code == 404
        assert client.get("/stats").status_code == 401  # the data still needs the token


@pytest.mark.browser
def test_swagger_ui_renders_the_operations_offline(driver, secured_server) -> None:
    """Chromium here reaches nothing but 127.0.0.1: the page renders only if everything it needs is local."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{secured_server.url}/docs")
    operations = WebDriverWait(driver, 20, poll_frequency=0.1).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path") or None, "Swagger UI's operations")
    paths = {element.get_attribute("data-path") or element.text for element in operations}
    assert {"/health", "/identities", "/search/descriptor"} <= {p.replace("\u200b", "") for p in paths}, paths
    driver.get(f"{secured_server.url}/redoc")
    WebDriverWait(driver, 20, poll_frequency=0.1).until(
        lambda d: "/identities" in d.find_element(By.TAG_NAME, "body").text or None, "ReDoc's operations")

