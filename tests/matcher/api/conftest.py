"""The headless Chromium of the browser tests (test_browser.py, and test_apidocs.py's /docs and /redoc pages)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

WAIT_S = 15.0


def _chromium() -> tuple[str, str]:
    """The paths of chromium and chromedriver; skips (or fails with CI=true) when something is missing."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    problem = None
    if browser is None or driver is None:
        problem = "needs chromium and chromedriver on the PATH (Debian: apt-get install chromium chromium-driver)"
    else:
        try:
            import selenium  # noqa: F401
        except ImportError:
            problem = "needs selenium (the dev extra: pip install -c constraints.txt -e '.[dev]')"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {problem}", pytrace=False)
        pytest.skip(problem)
    return browser, driver  # type: ignore[return-value]


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    """One headless Chromium for the module, driven through the given chromedriver (never selenium-manager)."""
    browser, chromedriver = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    try:
        chrome.set_page_load_timeout(WAIT_S)
        yield chrome
    finally:
        chrome.quit()
