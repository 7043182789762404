"""What the identity browser needs from the query API, over real HTTP and a real Redis: identity summaries with
cameras and thumbnails, the ``min_cameras`` filter, look-alikes of a stored tracklet (``/tracklets/{id}/similar``),
the browser's static files (no token, safe headers, ``/`` redirects), and the client and CLI of the same."""

from __future__ import annotations

import argparse

import httpx
import pytest

from keyreid_stream.matcher.api.queries import MatcherQueries
from keyreid_stream.matcher.api.summaries import SUMMARY_TRACKLETS
from keyreid_stream.matcher.cli import add_commands
from keyreid_stream.query.client import QueryClient, QueryError

T0 = 1_700_000_000.0
TOKEN = "s3cret-token"  # conftest.API_TOKEN


# ------------------------------------------------------------------------------------------ identity summaries


def test_summaries_have_cameras_and_a_thumbnail_per_camera(shared, http: httpx.Client) -> None:
    rows = {row["identity_id"]: row for row in http.get("/identities").json()}
    assert [(gid, rows[gid]["cameras"]) for gid in ("g1", "g2", "g3", "g4", "g6")] == [
        ("g1", ["cam-a", "cam-b"]), ("g2", ["cam-b", "cam-c"]), ("g3", ["cam-a", "cam-c"]),
        ("g4", ["cam-a", "cam-b", "cam-c"]), ("g6", ["cam-a"])]
    # per camera, the latest tracklet that has a thumbnail (p1_a1 has one, the later p1_a1b and p1_a2 have none)
    assert rows["g1"]["thumbnails"] == {"cam-a": shared.ids["p1_a1"], "cam-b": shared.ids["p1_b"]}
    assert rows["g2"]["thumbnails"] == {"cam-b": shared.ids["p2_b"]} and rows["g4"]["thumbnails"] == {}
    assert all(row["cameras_complete"] for row in rows.values())
    assert (rows["g1"]["num_tracklets"], rows["g1"]["first_seen"], rows["g1"]["last_seen"]) == (4, T0, T0 + 50)
    thumb = http.get(f"/tracklets/{rows['g1']['thumbnails']['cam-b']}/thumbnail")
    assert thumb.status_code == 200 and thumb.content == shared.thumbnails["p1_b"]


@pytest.mark.parametrize(("query", "expected"), [
    ("min_cameras=2", ["g4", "g3", "g2", "g1"]),
    ("min_cameras=3", ["g4"]),
    ("min_cameras=4", []),
    ("min_cameras=2&limit=2", ["g4", "g3"]),
    ("min_cameras=2&camera=cam-b", ["g4", "g1", "g2"]),
    (f"min_cameras=2&until={T0 + 60}", ["g1", "g2", "g3"]),
    ("min_cameras=1&limit=3", ["g11", "g10", "g9"]),
])
def test_min_cameras_filter(http: httpx.Client, query: str, expected: list[str]) -> None:
    response = http.get(f"/identities?{query}")
    assert response.status_code == 200, response.text
    assert [row["identity_id"] for row in response.json()] == expected


def test_min_cameras_must_be_positive(http: httpx.Client) -> None:
    for value in ("0", "-1", "two"):
        response = http.get(f"/identities?min_cameras={value}")
        assert response.status_code == 400 and response.json()["error"] == "bad_request"
        assert "min_cameras" in response.json()["detail"]


def test_a_long_identity_is_summarised_from_its_recent_tracklets(private) -> None:
    """An identity with more tracklets than the summary reads says so (cameras_complete false)."""
    client, keys = private.client, private.keys
    extra = {f"{i:032x}": T0 + 6 + i / 1e4 for i in range(1000, 1000 + SUMMARY_TRACKLETS)}  # after p3_c
    for tracklet_id in extra:  # stand-ins that the summary reads: camera and thumbnail flag
        client.hset(keys.tracklet(tracklet_id), mapping={"camera": "cam-z", "thumb": "0", "identity": "g3"})
    client.zadd(keys.members("g3"), extra)
    summary = next(s for s in MatcherQueries(client, keys, private.index).identities() if s.identity_id == "g3")
    assert summary.num_tracklets == 2 + SUMMARY_TRACKLETS and not summary.cameras_complete
    assert summary.cameras == ["cam-a", "cam-z"]  # p3_a is among the most recent, p3_c (cam-c) is not


# ------------------------------------------------------------------------------------------ pages and counts

EVERYONE = ["g11", "g10", "g9", "g8", "g7", "g6", "g4", "g3", "g2", "g1"]


@pytest.mark.parametrize(("filters", "expected"), [
    ("", EVERYONE),
    ("min_cameras=2", ["g4", "g3", "g2", "g1"]),
    ("camera=cam-b", ["g10", "g7", "g4", "g1", "g2"]),
    ("camera=cam-b&min_cameras=2", ["g4", "g1", "g2"]),
    (f"until={T0 + 330}", ["g8", "g7", "g6", "g4", "g3", "g2", "g1"]),
    (f"since={T0 + 300}&until={T0 + 330}", ["g8", "g7", "g6"]),
    (f"since={T0 + 300}", ["g11", "g10", "g9", "g8", "g7", "g6"]),
    (f"since={T0 + 1000}", []),
])
def test_pages_reach_every_identity_once_and_the_count_agrees(http: httpx.Client, filters: str,
                                                              expected: list[str]) -> None:
    for per in (1, 3, 4, 50):
        listed = []
        for offset in range(0, len(expected) + per, per):
            response = http.get(f"/identities?{filters}&limit={per}&offset={offset}")
            assert response.status_code == 200, response.text
            listed += [row["identity_id"] for row in response.json()]
        assert listed == expected, per
    count = http.get(f"/identities/count?{filters}")
    assert count.status_code == 200 and count.json() == {"total": len(expected), "exact": True}


def test_a_count_that_runs_out_of_budget_says_so(shared) -> None:
    from keyreid_stream.matcher.api.summaries import count_identities

    counted = count_identities(shared.client, shared.keys, camera=None, low="-inf", high=repr(T0 + 1000),
                               budget=5)  # 5 of the 19 decided tracklets read
    assert not counted.exact and 1 <= counted.total <= 5
    assert count_identities(shared.client, shared.keys, camera=None, low="-inf", high="+inf", min_cameras=2,
                            budget=3).exact is False


@pytest.mark.parametrize(("query", "match"), [
    ("offset=-1", "offset"), ("offset=1000001", "offset"), ("offset=one", "offset"), ("limit=51", "limit must be"),
])
def test_bad_pages(http: httpx.Client, query: str, match: str) -> None:
    response = http.get(f"/identities?{query}")
    assert response.status_code == 400 and match in response.json()["detail"]


def test_paging_and_counting_are_in_the_openapi_document(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    parameters = {p["name"]: p for p in document["paths"]["/identities"]["get"]["parameters"]}
    schema = parameters["offset"]["schema"]
    assert (schema["minimum"], schema["maximum"], schema["default"]) == (0, 1_000_000, 0)
    count = document["paths"]["/identities/count"]["get"]
    assert {p["name"] for p in count["parameters"]} == {"camera", "since", "until", "min_cameras"}
    assert count["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/IdentityCount")
    assert "media time" in document["info"]["description"]


def test_stats_give_the_association_thresholds(shared, serve) -> None:
    from keyreid_stream.matcher.api.answers import Thresholds

    assert httpx.get(f"{serve(MatcherQueries(shared.client, shared.keys, shared.index)).url}/stats"
                     ).json()["thresholds"] is None
    api = serve(MatcherQueries(shared.client, shared.keys, shared.index, thresholds=Thresholds(0.62, 0.7, 0.3)))
    assert httpx.get(f"{api.url}/stats").json()["thresholds"] == {"link": 0.62, "merge": 0.7, "split": 0.3}


# ------------------------------------------------------------------------------------------ look-alikes


@pytest.mark.parametrize(("name", "identity"), [("p1_b", "g1"), ("p2_c", "g2"), ("p4_c2", "g4"), ("p9", "g10")])
def test_similar_finds_the_tracklets_own_identity_first(shared, http: httpx.Client, name: str,
                                                        identity: str) -> None:
    response = http.get(f"/tracklets/{shared.ids[name]}/similar?k=3")
    assert response.status_code == 200, response.text
    hits = response.json()
    assert len(hits) == 3 and hits[0]["identity_id"] == identity and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert hits[0]["best_tracklet"] == shared.ids[name]
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    assert set(hits[0]) == {"identity_id", "score", "best_tracklet", "best_camera", "tracklets_hit"}


def test_similar_without_the_tracklet_itself(shared, http: httpx.Client) -> None:
    hits = http.get(f"/tracklets/{shared.ids['p1_b']}/similar", params={"k": 2, "exclude_self": "true"}).json()
    assert hits[0]["identity_id"] == "g1" and hits[0]["best_tracklet"] != shared.ids["p1_b"]
    assert 0.9 < hits[0]["score"] < 1.0 and hits[0]["tracklets_hit"] == 3
    alone = http.get(f"/tracklets/{shared.ids['p9']}/similar", params={"k": 1, "exclude_self": "true"}).json()
    assert alone[0]["identity_id"] != "g10" and alone[0]["score"] < 0.5  # p9 is g10's only tracklet


def test_similar_leaves_out_unassociated_tracklets(shared, http: httpx.Client) -> None:
    hits = http.get(f"/tracklets/{shared.ids['p11_new']}/similar?k=2").json()
    assert len(hits) == 2 and all(hit["best_tracklet"] != shared.ids["p11_new"] for hit in hits)


@pytest.mark.parametrize(("path", "status", "match"), [
    ("/tracklets/XYZ/similar", 400, "bad tracklet id"),
    ("/tracklets/" + "e" * 32 + "/similar", 404, "not found"),
    ("/tracklets/{p1_b}/similar?k=0", 400, "k must be"),
    ("/tracklets/{p1_b}/similar?k=51", 400, "k must be"),
    ("/tracklets/{p1_b}/similar?k=many", 400, "k: "),
    ("/tracklets/{p1_b}/similar?exclude_self=perhaps", 400, "exclude_self: "),
])
def test_similar_errors(shared, http: httpx.Client, path: str, status: int, match: str) -> None:
    response = http.get(path.format(**shared.ids))
    assert response.status_code == status, response.text
    assert match in response.json()["detail"]


def test_similar_with_a_token(shared, secured_server) -> None:
    path = f"/tracklets/{shared.ids['p2_b']}/similar"
    with httpx.Client(base_url=secured_server.url, timeout=10) as http:
        assert http.get(path).status_code == 401
        hits = http.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert hits[0]["identity_id"] == "g2"


# ------------------------------------------------------------------------------------------ static files


def test_root_redirects_to_the_browser(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 307 and response.headers["location"] == "browser/"
    page = http.get("/", follow_redirects=True)
    assert page.status_code == 200 and str(page.url).endswith("/browser/")
    assert http.get("/browser", follow_redirects=True).url.path == "/browser/"


@pytest.mark.parametrize(("path", "media", "needle"), [
    ("/browser/", "text/html", 'src="browser.js"'),
    ("/browser/index.html", "text/html", 'href="browser.css"'),
    ("/browser/browser.js", "javascript", 'from "./list.js"'),
    ("/browser/search.js", "javascript", "tracklets/${encodeURIComponent(tid)}/similar"),
    ("/browser/list.js", "javascript", 'request("identities/count"'),
    ("/browser/common.js", "javascript", "Authorization = `Bearer ${secret}`"),
    ("/browser/browser.css", "text/css", ".search-hit"),
])
def test_browser_files_need_no_token(secured_server, path: str, media: str, needle: str) -> None:
    with httpx.Client(base_url=secured_server.url, timeout=10) as http:
        response = http.get(path)
        assert response.status_code == 200 and media in response.headers["content-type"]
        assert needle in response.text
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        text = response.text.replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not a resource
        assert "http://" not in text and "https://" not in text and "//" + "cdn" not in text  # nothing external
        assert http.get("/identities").status_code == 401  # the data still needs the token


@pytest.mark.parametrize("path", ["/browser/nothing.js", "/browser/../api.py", "/browser/%2e%2e/api.py"])
def test_browser_serves_only_its_files(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_browser_routes_stay_out_of_the_openapi_document(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(path.startswith("/browser") for path in paths)
    assert "min_cameras" in {p["name"] for p in paths["/identities"]["get"]["parameters"]}


# ------------------------------------------------------------------------------------------ client and CLI


def test_query_client_methods(shared, api_server) -> None:
    client = QueryClient(api_server.url)
    assert [row["identity_id"] for row in client.identities(min_cameras=3)] == ["g4"]
    assert client.identity("g5")["identity_id"] == "g4"
    assert client.similar(shared.ids["p2_c"], 1)[0]["identity_id"] == "g2"
    assert client.similar(shared.ids["p2_c"], 1, exclude_self=True)[0]["best_tracklet"] != shared.ids["p2_c"]
    assert client.thumbnail(shared.ids["p1_a1"]) == shared.thumbnails["p1_a1"]
    with pytest.raises(QueryError, match="has no thumbnail") as caught:
        client.thumbnail(shared.ids["p2_c"])
    assert caught.value.status == 404


def test_cli_similar_and_min_cameras(shared, api_server, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYREID_API_TOKEN", raising=False)
    parser = argparse.ArgumentParser(prog="keyreid-stream")
    add_commands(parser.add_subparsers())
    for argv, expected in ((["similar", shared.ids["p3_a"], "--k", "2"], "1     g3        1.000"),
                           (["identities", "--min-cameras", "3"], "cam-a,cam-b,cam-c")):
        args = parser.parse_args(["query", "--url", api_server.url, *argv])
        assert args.handler(args) == 0
        out = capsys.readouterr().out
        assert expected in out, out
