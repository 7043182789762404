"""The static HTML report, written from a live query API over a real Redis and read back with html.parser: the
identities, their cameras, the inlined thumbnails, the timelines, the notes, no script or external resource, and
every text escaped (a hostile camera id, title and note)."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import pytest

from keyreid_stream.matcher.api.queries import MatcherQueries
from keyreid_stream.query.client import QueryClient, QueryError
from keyreid_stream.query.report import write_report

HOSTILE = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Every start tag with its attributes, the text, and the text and attributes inside each identity section."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.sections: dict[str, dict[str, list]] = {}
        self._section: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "section" and attributes.get("data-identity"):
            self._section, self._depth = attributes["data-identity"], 0
            self.sections[self._section] = {"cameras": [], "images": [], "rows": [], "bars": []}
        elif self._section is not None:
            if tag == "section":
                self._depth += 1
            part = self.sections[self._section]
            if tag == "div" and "camera" in (attributes.get("class") or "").split():
                part["cameras"].append(attributes["data-camera"])
            if tag == "img":
                part["images"].append(attributes)
            if tag == "g" and attributes.get("class") == "row":
                part["rows"].append(attributes["data-camera"])
            if tag == "rect":
                part["bars"].append(attributes["data-tracklet"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._section is not None:
            if self._depth == 0:
                self._section = None
            else:
                self._depth -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture
def hostile_api(private, serve):
    """The scenario with a tracklet whose stored camera id is hostile HTML (written into Redis directly: the wire
    codec would refuse it), served by a live API."""
    private.client.hset(private.keys.tracklet(private.ids["p3_c"]), "camera", HOSTILE)
    return serve(MatcherQueries(private.client, private.keys, private.index))


def test_report_shows_the_identities_cameras_thumbnails_and_timelines(private, hostile_api, tmp_path) -> None:
    path = tmp_path / "out" / "report.html"
    summary = write_report(QueryClient(hostile_api.url), path, title="Demo <b>run</b> & more",
                           notes=["models: keyreid_test@random-init", f"camera {HOSTILE}"], min_cameras=2)
    page = read(path)
    assert (summary.path, summary.size_bytes) == (path, path.stat().st_size)
    assert list(page.sections) == ["g4", "g3", "g2", "g1"]  # seen on two cameras or more, most recent first
    assert (summary.identities, summary.tracklets, summary.thumbnails) == (4, 13, 3)
    assert summary.cameras == tuple(sorted([HOSTILE, "cam-a", "cam-b", "cam-c"]))
    g1, g3, g4 = page.sections["g1"], page.sections["g3"], page.sections["g4"]
    assert g1["cameras"] == g1["rows"] == ["cam-a", "cam-b"] and g4["rows"] == ["cam-a", "cam-b", "cam-c"]
    assert sorted(g3["rows"]) == sorted([HOSTILE, "cam-a"])  # the hostile id is an attribute value, intact
    assert sorted(private.name_of(t) for t in g1["bars"]) == ["p1_a1", "p1_a1b", "p1_a2", "p1_b"]
    images = {attributes["data-tracklet"]: attributes["src"] for attributes in g1["images"]}
    assert sorted(private.name_of(t) for t in images) == ["p1_a1", "p1_b"]
    for tracklet_id, src in images.items():  # the very JPEG the worker sent, inlined
        assert src.startswith("data:image/jpeg;base64,")
        assert base64.b64decode(src.partition(",")[2]) == private.thumbnails[private.name_of(tracklet_id)]
    assert [a["data-tracklet"] for a in page.sections["g2"]["images"]] == [private.ids["p2_b"]]

    text = "".join(page.text)
    assert "Demo <b>run</b> & more" in text and "models: keyreid_test@random-init" in text
    assert f"camera {HOSTILE}" in text  # shown as text...
    assert not [tag for tag, _ in page.tags if tag in ("script", "b", "link", "iframe", "object")]  # ...never run
    assert all(not name.startswith("on") for _, attributes in page.tags for name in attributes)
    sources = [a.get("src") or a.get("href") for _, a in page.tags if a.get("src") or a.get("href")]
    assert sources and all(s.startswith(("data:image/", "#identity-")) for s in sources)  # nothing external
    raw = path.read_text(encoding="utf-8")
    assert HOSTILE not in raw and "&lt;script&gt;" in raw
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no partial file left behind


def test_report_of_every_identity_without_thumbnails(shared, api_server, tmp_path) -> None:
    path = tmp_path / "all.html"
    summary = write_report(QueryClient(api_server.url), path, title="all", thumbnails_per_camera=0, limit=50)
    page = read(path)
    assert list(page.sections) == ["g11", "g10", "g9", "g8", "g7", "g6", "g4", "g3", "g2", "g1"]
    assert summary.thumbnails == 0 and not [tag for tag, _ in page.tags if tag == "img"]
    assert page.sections["g6"]["rows"] == ["cam-a"] and "no thumbnail" in "".join(page.text)


def test_report_errors(shared, api_server, secured_server, tmp_path) -> None:
    with pytest.raises(QueryError, match="limit must be"):
        write_report(QueryClient(api_server.url), tmp_path / "r.html", title="t", limit=51)  # above max_results
    with pytest.raises(QueryError, match="HTTP 401"):
        write_report(QueryClient(secured_server.url), tmp_path / "r.html", title="t")
    assert not list(tmp_path.iterdir())
    summary = write_report(QueryClient(secured_server.url, token="s3cret-token"), tmp_path / "r.html", title="t",
                           min_cameras=3, limit=5)
    assert summary.identities == 1 and list(read(summary.path).sections) == ["g4"]


def test_report_highlights_cross_camera_identities_and_shows_the_link_check(shared, api_server, tmp_path) -> None:
    from keyreid_stream.demo.geometry import LinkQuality

    path = tmp_path / "report.html"
    write_report(QueryClient(api_server.url), path, title="t", thumbnails_per_camera=0, limit=50,
                 link_check=LinkQuality(true_pairs=10, predicted_pairs=8, correct_pairs=6),
                 link_check_note="Checked against the views' geometry.")
    page = read(path)
    highlighted = [a["data-identity"] for tag, a in page.tags if tag == "section" and "cross-camera" in a["class"]]
    assert highlighted == ["g4", "g3", "g2", "g1"]
    assert sum(1 for tag, a in page.tags if tag == "tr" and a.get("class") == "cross-camera") == 4
    text = " ".join("".join(page.text).split())
    assert "4 of 10 identities seen on more than one camera: g4 (cam-a, cam-b, cam-c), g3 (cam-a, cam-c)" in text
    assert "Links checked6 of 8 linked track pairs are right: precision 0.75; 6 of the 10 true pairs were found: " \
           "recall 0.60.Checked against the views' geometry." in text  # heading, numbers, how (no spaces between)
    assert "The times are UTC wall clock (live cameras, files read in real time); decisions are on the matcher's " \
           "wall clock (UTC)." in text


def test_report_shows_media_time_as_media_time(media, serve, tmp_path) -> None:
    """Tracklets of files read faster than real time: media time, said so; decisions: the matcher's wall clock."""
    path = tmp_path / "report.html"
    write_report(QueryClient(serve(MatcherQueries(media.client, media.keys, media.index)).url), path, title="t")
    text = " ".join("".join(read(path).text).split())
    assert "The times are media time (h:mm:ss from the start of the video: files read faster than real time)" in text
    assert "0:00:00.0 media to 0:00:50.0 media (50.0 s)" in text  # g1's span
    assert "decided (matcher's clock)" in text
    assert "2023-11-14 22:30:02 UTCnewcam-a #1" in text  # the cells of a log row
    assert "link-check" not in path.read_text()  # no check given, no section
