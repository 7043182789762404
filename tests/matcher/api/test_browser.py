"""The identity browser in a real headless Chromium (Selenium with the system's chromium and chromedriver),
served by a real matcher (MatcherThread: ingest socket, index sync, query API with a bearer token) over the
populated shared of conftest.py (``shared``), where person p1 was linked across cam-a and cam-b into identity g1.

Skipped when chromium, chromedriver or selenium is missing, except with CI=true, where that is a failure (CI
installs them). One browser serves the whole module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from keyreid_stream.redis_server import free_port

from matcher_harness import matcher_config, running_matcher, wait_until

pytestmark = pytest.mark.browser

API_TOKEN = "s3cret-token"  # conftest.API_TOKEN
TOKEN_KEY = "keyreid-stream.api-token"  # browser.js
WAIT_S = 15.0  # conftest.WAIT_S


@pytest.fixture(scope="module")
def matcher_url(shared, redis_server: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real matcher over the ``shared`` (its key prefix), its API on a free port and requiring
    :data:`API_TOKEN`; yields its URL. It only reads: the shared's association lease belongs to someone else."""
    token_file = tmp_path_factory.mktemp("api") / "token"
    token_file.write_text(API_TOKEN + "\n")
    port = free_port()
    config = matcher_config(redis_server.url, http=f"127.0.0.1:{port}",  # type: ignore[attr-defined]
                            prefix=shared.keys.prefix)
    config = replace(config, api=replace(config.api, token_file=str(token_file)))
    with running_matcher(config):
        url = f"http://127.0.0.1:{port}"
        import httpx

        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200, 30, "the index to load")
        yield url


# ------------------------------------------------------------------------------------------ helpers


def wait(driver: object, condition: Callable[[object], object], what: str) -> object:
    """``condition(driver)`` once truthy; elements replaced by a re-render meanwhile count as not yet."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(condition, f"waiting for {what}")


def attrs(driver: object, selector: str, name: str) -> list[str | None]:
    """The attribute ``name`` of every element matching ``selector``, read in one step (no stale elements)."""
    return driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll(arguments[0]), (e) => e.getAttribute(arguments[1]));",
        selector, name)


def css(root: object, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return root.find_elements(By.CSS_SELECTOR, selector)  # type: ignore[attr-defined]


def ready(driver: object, view: str) -> None:
    """Wait until the page rendered ``view`` ("list" or "identity")."""
    wait(driver, lambda d: (css(d, "#view")[0].get_attribute("data-ready"),
                            css(d, "#view")[0].get_attribute("data-view")) == ("true", view), f"the {view} view")


def open_page(driver: object, url: str, route: str = "#/", *, token: str | None = API_TOKEN) -> None:
    """Open the browser at ``route`` with ``token`` already in this tab's sessionStorage (None: no token)."""
    driver.get(f"{url}/health")  # type: ignore[attr-defined]  # same origin: its sessionStorage is the page's
    if token is None:
        driver.execute_script("window.sessionStorage.clear();")  # type: ignore[attr-defined]
    else:
        driver.execute_script("window.sessionStorage.setItem(arguments[0], arguments[1]);",  # type: ignore[attr-defined]
                              TOKEN_KEY, token)
    driver.get(f"{url}/{route}")  # type: ignore[attr-defined]  # "/" redirects to /browser/


def loaded_images(driver: object, root: object) -> list:
    """The <img> elements under ``root`` once every one of them has loaded (blob: URLs of fetched thumbnails)."""

    def done(_d: object) -> list | None:
        images = css(root, "img")
        states = [driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", img)  # type: ignore[attr-defined]
                  for img in images]
        return images if images and all(states) else None

    images = wait(driver, done, "the thumbnails")
    assert all(img.get_attribute("src").startswith("blob:") for img in images)  # type: ignore[union-attr]
    return images  # type: ignore[return-value]


def javascript_errors(driver: object) -> list[str]:
    """SEVERE console entries of the page's own code (failed requests, e.g. a 404 thumbnail, are left out)."""
    return [entry["message"] for entry in driver.get_log("browser")  # type: ignore[attr-defined]
            if entry["level"] == "SEVERE" and entry.get("source") != "network"]


# ------------------------------------------------------------------------------------------ tests


def test_list_identity_timeline_search_and_hit(driver, shared, matcher_url: str) -> None:
    open_page(driver, matcher_url, "")
    ready(driver, "list")
    assert driver.current_url.startswith(f"{matcher_url}/browser/")
    everyone = ["g11", "g10", "g9", "g8", "g7", "g6", "g4", "g3", "g2", "g1"]
    assert attrs(driver, "li.identity", "data-identity") == everyone

    # g1 in the list: one thumbnail per camera, the latest tracklet with a thumbnail there
    g1 = css(driver, 'li.identity[data-identity="g1"]')[0]
    thumbs = css(g1, ".thumb")
    assert [t.get_attribute("data-camera") for t in thumbs] == ["cam-a", "cam-b"]
    assert [t.get_attribute("data-tracklet") for t in thumbs] == [shared.ids["p1_a1"], shared.ids["p1_b"]]
    assert len(loaded_images(driver, g1)) == 2
    assert "4 tracklets \u00b7 50 s" in g1.text and "2023-11-14 22:13:20 UTC" in g1.text
    assert "cross-camera" in g1.get_attribute("class") and "2 cams" in g1.text  # highlighted
    assert "cross-camera" not in css(driver, 'li.identity[data-identity="g6"]')[0].get_attribute("class")
    assert css(driver, "#identity-count")[0].text == "10 identities"
    assert css(driver, "#clock-note")[0].text == "Times are UTC wall clock (live cameras, files read in real time)."

    # the filter "seen on several cameras"
    css(driver, "#multi-camera")[0].click()
    wait(driver, lambda d: attrs(d, "li.identity", "data-identity") == ["g4", "g3", "g2", "g1"]
         and "multi=1" in d.current_url, "the filtered list")

    # the identity's page: thumbnails per camera, one timeline row per camera with a bar per tracklet, the log
    css(driver, 'li.identity[data-identity="g1"] a.identity-link')[0].click()
    ready(driver, "identity")
    assert css(driver, "#identity-title")[0].get_attribute("data-identity") == "g1"
    groups = css(driver, "section.camera-group")
    assert [g.get_attribute("data-camera") for g in groups] == ["cam-a", "cam-b"]
    per_camera = [[shared.name_of(t.get_attribute("data-tracklet")) for t in css(g, ".thumb")] for g in groups]
    assert per_camera == [["p1_a1", "p1_a1b", "p1_a2"], ["p1_b"]]
    assert len(loaded_images(driver, css(driver, "#thumbnails")[0])) == 2  # the other two have no thumbnail
    rows = css(driver, "#timeline g.timeline-row")
    assert [r.get_attribute("data-camera") for r in rows] == ["cam-a", "cam-b"]
    assert [len(css(r, "rect.timeline-bar")) for r in rows] == [3, 1]
    widths = [float(bar.get_attribute("width")) for bar in css(driver, "rect.timeline-bar")]
    assert all(w >= 3 for w in widths)
    log = css(driver, "#decision-log tr.log-entry")
    assert sorted(e.get_attribute("data-kind") for e in log) == ["appearance", "appearance", "continuation", "new"]
    assert any("0.800 \u2265 0.600" in e.text and "looks like cam-a #1" in e.text for e in log)
    assert "score (link threshold 0.600)" in css(driver, "#decision-log thead")[0].text

    # a thumbnail searches for look-alikes: the identity itself first, with a score
    css(driver, f'section.camera-group[data-camera="cam-b"] .thumb[data-tracklet="{shared.ids["p1_b"]}"]')[0].click()
    wait(driver, lambda d: css(d, "#search-panel")[0].get_attribute("data-ready") == "true", "the search hits")
    hits = css(driver, "li.search-hit")
    assert len(hits) >= 3 and hits[0].get_attribute("data-identity") == "g1"
    assert hits[0].find_element("css selector", ".score").text == "score 1.000 \u2265 0.600"  # beside the threshold
    assert "above-threshold" in hits[0].get_attribute("class")
    assert any("below-threshold" in hit.get_attribute("class") for hit in hits)
    assert "links a tracklet to an identity at 0.600 or more" in css(driver, "#search-threshold")[0].text
    assert hits[0].get_attribute("data-tracklet") == shared.ids["p1_b"] and "cam-b" in hits[0].text
    assert float(hits[1].get_attribute("data-score")) < float(hits[0].get_attribute("data-score"))
    loaded_images(driver, hits[0])

    # a hit opens its identity
    other = hits[1].get_attribute("data-identity")
    hits[1].click()
    wait(driver, lambda d: attrs(d, "#identity-title", "data-identity") == [other], f"identity {other}")
    ready(driver, "identity")
    assert driver.current_url.endswith(f"#/identity/{other}")
    assert not css(driver, "#search-panel")[0].is_displayed()
    assert javascript_errors(driver) == []


def test_merged_and_missing_identities(driver, matcher_url: str) -> None:
    open_page(driver, matcher_url, "browser/#/identity/g5")
    ready(driver, "identity")
    assert css(driver, "#identity-title")[0].get_attribute("data-identity") == "g4"
    assert "g5 was merged into g4" in css(driver, ".merged")[0].text
    assert [r.get_attribute("data-camera") for r in css(driver, "#timeline g.timeline-row")] == [
        "cam-a", "cam-b", "cam-c"]
    driver.get(f"{matcher_url}/browser/#/identity/g999")
    wait(driver, lambda d: css(d, "#message")[0].is_displayed(), "the error message")
    assert css(driver, "#message")[0].text == "Not found (404): identity g999 not found"
    assert css(driver, "#view")[0].get_attribute("data-ready") == "error"


def test_token_prompt(driver, matcher_url: str) -> None:
    open_page(driver, matcher_url, "browser/", token=None)
    wait(driver, lambda d: css(d, "#token-form")[0].is_displayed(), "the token form")
    assert "needs an API token (401)" in css(driver, "#message")[0].text
    field = css(driver, "#token-input")[0]
    field.send_keys("not-the-token")
    css(driver, "#token-submit")[0].click()
    wait(driver, lambda d: "refused the token" in css(d, "#message")[0].text, "the refusal")
    assert css(driver, "#token-form")[0].is_displayed()
    field.send_keys(API_TOKEN)
    css(driver, "#token-submit")[0].click()
    ready(driver, "list")
    assert not css(driver, "#token-form")[0].is_displayed() and not css(driver, "#message")[0].is_displayed()
    assert css(driver, 'li.identity[data-identity="g1"]')
    assert driver.execute_script("return window.sessionStorage.getItem(arguments[0]);", TOKEN_KEY) == API_TOKEN
    driver.refresh()  # kept for the tab: no second prompt
    ready(driver, "list")
    assert not css(driver, "#token-form")[0].is_displayed()
    assert css(driver, "#forget-token")[0].is_displayed()


def test_outages_are_shown_as_messages(driver, shared, serve, redis_server_factory) -> None:
    """Redis down: the API answers 503 and the page says so; the API gone: the page says it cannot reach it."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from keyreid_stream.matcher.api.queries import MatcherQueries

    server = redis_server_factory()
    client = redis.Redis.from_url(server.url, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        api = serve(MatcherQueries(client, shared.keys, shared.index))
        open_page(driver, api.url, "browser/", token=None)
        ready(driver, "list")
        assert css(driver, "#no-identities")  # an empty Redis: nothing to show, no error
        server.stop()
        driver.execute_script("window.location.hash = '#/?camera=cam-a';")
        wait(driver, lambda d: css(d, "#message")[0].is_displayed(), "the 503 message")
        assert css(driver, "#message")[0].text.startswith("The matcher cannot answer right now (503: the matcher's "
                                                          "Redis does not answer")
        api.stop()
        driver.execute_script("window.location.hash = '#/identity/g1';")
        wait(driver, lambda d: "Cannot reach the matcher's API" in css(d, "#message")[0].text, "the network error")
        assert css(driver, "#message")[0].text.endswith("Is the matcher running?")
    finally:
        client.close()


# ------------------------------------------------------------------------------------------ the list: paging, time


def page_ids(driver: object) -> list[str | None]:
    return attrs(driver, "li.identity", "data-identity")


def test_paging_reaches_the_oldest_identity(driver, matcher_url: str) -> None:
    """Four identities a page: the count, three pages, and the last one holds the oldest identity (g1)."""
    open_page(driver, matcher_url, "browser/#/?per=4")
    ready(driver, "list")
    assert page_ids(driver) == ["g11", "g10", "g9", "g8"]
    assert css(driver, "#identity-count")[0].get_attribute("data-total") == "10"
    assert css(driver, "#pager-top .where")[0].text == "page 1 of 3: 1\u20134 of 10"
    assert "disabled" in css(driver, "#pager-top .prev")[0].get_attribute("class")
    css(driver, "#pager-bottom .last")[0].click()
    wait(driver, lambda d: page_ids(d) == ["g2", "g1"], "the oldest page")
    assert "page=3" in driver.current_url and "per=4" in driver.current_url
    assert css(driver, "#pager-top .where")[0].text == "page 3 of 3: 9\u201310 of 10"
    assert "disabled" in css(driver, "#pager-top .next")[0].get_attribute("class")
    css(driver, "#pager-top .prev")[0].click()
    wait(driver, lambda d: page_ids(d) == ["g7", "g6", "g4", "g3"], "the middle page")
    css(driver, "#multi-camera")[0].click()  # a filter starts again at page 1, with its own count
    wait(driver, lambda d: page_ids(d) == ["g4", "g3", "g2", "g1"] and "page=" not in d.current_url, "filtered")
    assert css(driver, "#identity-count")[0].text == "4 identities"
    assert css(driver, "#pager-top .where")[0].text == "page 1 of 1: 1\u20134 of 4"
    assert javascript_errors(driver) == []


def test_time_range_filter(driver, matcher_url: str) -> None:
    """A range typed as UTC times keeps the identities with a tracklet ending in it; a bad time says why; the
    'last hour' preset slides with the clock (the scenario is from 2023: nothing)."""
    open_page(driver, matcher_url, "browser/#/")
    ready(driver, "list")
    from selenium.webdriver.support.ui import Select

    Select(css(driver, "#time-range")[0]).select_by_value("custom")
    since, until = css(driver, "#since")[0], css(driver, "#until")[0]
    since.send_keys("2023-11-14 22:18:20")  # T0 + 300
    until.send_keys("yesterday")
    css(driver, "#apply-range")[0].click()
    wait(driver, lambda d: "is not a time" in css(d, "#range-error")[0].text, "the error")
    assert page_ids(driver)[0] == "g11"  # nothing applied
    until.clear()
    until.send_keys("2023-11-14 22:18:50 UTC")  # T0 + 330
    css(driver, "#apply-range")[0].click()
    wait(driver, lambda d: page_ids(d) == ["g8", "g7", "g6"], "the identities of the range")
    assert f"since={1_700_000_300}" in driver.current_url and f"until={1_700_000_330}" in driver.current_url
    assert css(driver, "#identity-count")[0].text == "3 identities"
    assert css(driver, "#since")[0].get_attribute("value") == "2023-11-14 22:18:20 UTC"  # shown on its clock
    Select(css(driver, "#time-range")[0]).select_by_value("3600")
    wait(driver, lambda d: css(d, "#no-identities") and "last=3600" in d.current_url, "the last hour")
    assert css(driver, "#identity-count")[0].text == "0 identities"


def test_live_refresh_shows_new_identities_without_redrawing_the_filters(driver, private,
                                                                         serve) -> None:
    import numpy as np

    from keyreid_stream.contracts import TrackletMessage
    from keyreid_stream.matcher.api.queries import MatcherQueries
    from keyreid_stream.matcher.state.records import Decision
    from keyreid_stream.matcher.state.store import load_tracklets

    api = serve(MatcherQueries(private.client, private.keys, private.index))
    open_page(driver, api.url, "browser/#/?refresh=1", token=None)
    ready(driver, "list")
    assert page_ids(driver)[0] == "g11"
    driver.execute_script("window.filtersBefore = document.getElementById('filters');"
                          "document.getElementById('camera-filter').focus();")
    first = int(wait(driver, lambda d: css(d, "#updated")[0].get_attribute("data-updated"), "a first update"))
    wait(driver, lambda d: int(css(d, "#updated")[0].get_attribute("data-updated")) > first, "a refresh")
    updated = css(driver, "#updated")[0].text
    assert updated.startswith("updated ") and updated.endswith(" UTC")

    message = TrackletMessage("cam-b", 99, 1_700_000_500.0, 1_700_000_510.0, 12, np.ones(16, np.float32),
                              "testnet", "1")
    assert private.store.ingest([message]) == ["stored"]
    stored = {t.tracklet_id: t for t in load_tracklets(private.client, private.keys, [message.message_id])}
    private.store.commit_decisions([Decision(message.message_id, "g12", "new", 0.0, None, (), ())], stored,
                                   private.store.last_stream_id(), "lease-token")
    wait(driver, lambda d: page_ids(d)[:2] == ["g12", "g11"], "the new identity")
    assert css(driver, "#identity-count")[0].text == "11 identities"
    assert driver.execute_script("return window.filtersBefore === document.getElementById('filters') && "
                                 "document.activeElement.id === 'camera-filter';")  # not redrawn, focus kept
    assert javascript_errors(driver) == []


# ------------------------------------------------------------------------------------------ times and captions


# (seconds, short): the same rule and text in Python (keyreid_stream.clock) and in the page (common.js)
TIMES = [(0.0, False), (46.24, False), (46.25, False), (3723.96, True), (3723.96, False), (-1.5, False),
         (999_999_999.0, False), (1_000_000_000.0, False), (1_700_000_000.9, False), (1_700_000_000.9, True)]


def test_the_page_and_python_follow_one_clock_rule(driver, matcher_url: str) -> None:
    from keyreid_stream.clock import clock_note, format_time
    from keyreid_stream.contracts import short_track_id

    open_page(driver, matcher_url, "browser/")
    ready(driver, "list")
    page = driver.execute_async_script("""
        const [times, done] = arguments;
        import("./common.js").then((m) => done({
            when: times.map(([t, short]) => m.when(t, short)),
            notes: [m.clockNote([1, 2]), m.clockNote([2e9]), m.clockNote([1, 2e9]), m.clockNote([null])],
            parsed: ["0:01:20", "1:20", "80", "2023-11-14 22:13:20 UTC", "2023-11-14T22:13", "0:00:46.2 media"]
                .map(m.parseTime),
            track: m.trackLabel("cam1", 1733340000000012),
        }));""", [list(t) for t in TIMES])
    assert page["when"] == [format_time(t, short=short) for t, short in TIMES]
    assert page["notes"] == [clock_note([1, 2]), clock_note([2e9]), clock_note([1, 2e9]), clock_note([None])]
    assert page["parsed"] == [80, 80, 80, 1_700_000_000, 1_699_999_980, 46.2]
    assert page["track"] == f"cam1 #{short_track_id(1733340000000012)}" == "cam1 #12"


def test_media_time_is_shown_as_media_time_and_decisions_on_the_wall_clock(driver, media,
                                                                           serve) -> None:
    """Tracklets of files read faster than real time (media time) beside decisions taken on the matcher's clock:
    each says which clock it is on, so 'decided' is never before 'first seen' on one clock."""
    from keyreid_stream.matcher.api.queries import MatcherQueries

    api = serve(MatcherQueries(media.client, media.keys, media.index))
    open_page(driver, api.url, "browser/#/?multi=1", token=None)
    ready(driver, "list")
    assert css(driver, "#clock-note")[0].text.startswith("Times are media time (h:mm:ss from the start of the video")
    g1 = css(driver, 'li.identity[data-identity="g1"]')[0]
    assert "0:00:00.0 media\n4 tracklets \u00b7 50 s" in g1.text
    driver.execute_script("window.location.hash = '#/identity/g1';")
    ready(driver, "identity")
    assert "0:00:00.0 media \u2013 0:00:50.0 media" in css(driver, ".summary")[0].text
    assert "decisions are on the matcher's wall clock (UTC)" in css(driver, "#clock-note")[0].text
    decided = [row.find_elements("css selector", "td")[0].text for row in css(driver, "#decision-log tr.log-entry")]
    assert decided and all(text == "2023-11-14 22:30:02 UTC" for text in decided)  # T0 + 1002
    captions = [c.text for c in css(driver, 'section.camera-group[data-camera="cam-a"] figcaption')]
    assert captions == ["#1 \u00b7 0:00:00", "#1 \u00b7 0:00:05", "#3 \u00b7 0:00:40"]  # no 16-digit track ids
    start = [row.find_elements("css selector", "td")[3].text for row in css(driver, "#tracklets tr.tracklet-row")]
    assert start[0] == "0:00:00.0 media (10 s)"
    assert javascript_errors(driver) == []
