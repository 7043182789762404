"""The HTTP query API over real HTTP on 127.0.0.1 (uvicorn in a thread) and a real Redis: every endpoint's
content, image search with a real (tiny, random-weight) re-ID model, every error class as JSON, bearer tokens,
the OpenAPI document, and the server's start and stop."""

from __future__ import annotations

import json
import logging
import socket
import time

import cv2
import httpx
import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.api.api import ApiServer, create_app
from keyreid_stream.matcher.api.queries import MatcherQueries
from keyreid_stream.matcher.index import GalleryIndex
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.records import Decision
from keyreid_stream.matcher.state.store import TrackletStore, load_tracklets

T0 = 1_700_000_000.0
TOKEN = "s3cret-token"  # conftest.API_TOKEN
PATHS = ["/cameras", "/health", "/identities", "/identities/count", "/identities/{gid}", "/links", "/search/descriptor",
         "/search/image", "/stats", "/tracklets/{tid}", "/tracklets/{tid}/similar", "/tracklets/{tid}/thumbnail"]


def basis(index: int) -> list[float]:
    return [1.0 if i == index else 0.0 for i in range(16)]


def names(populated, rows: list[dict], key: str = "tracklet_id") -> list[str]:
    return [populated.name_of(row[key]) for row in rows]


# ------------------------------------------------------------------------------------------ endpoints


@pytest.mark.parametrize(("path", "check"), [
    ("/health", lambda data, _: data == {"status": "ok", "redis": True, "problems": [], "service": {}}),
    ("/stats", lambda data, _: (data["tracklets"], data["identities"], data["stored"], data["duplicates"],
                                data["rejected"], data["spaces"], data["lease_owner"]) == (
        20, 10, 20, 1, {"truncated": 1}, {"testnet@1/16": 20}, "lease-token")),
    ("/cameras", lambda data, _: [(c["camera_id"], c["tracklets"], (c["last_heartbeat"] or {}).get("sequence"))
                                  for c in data] == [("cam-a", 8, 5), ("cam-b", 5, 9), ("cam-c", 7, None)]),
    ("/identities", lambda data, _: [i["identity_id"] for i in data][:3] == ["g11", "g10", "g9"] and len(data) == 10),
    (f"/identities?camera=cam-c&since={T0 + 20}&until={T0 + 100}&limit=5",
     lambda data, _: [(i["identity_id"], i["last_seen"], i["num_tracklets"]) for i in data] == [("g2", T0 + 70, 3)]),
    ("/identities/g5", lambda data, p: (data["requested_id"], data["identity_id"], data["merged_from"],
                                        sorted(names(p, data["tracklets"]))) == (
        "g5", "g4", ["g5"], ["p4_a", "p4_b", "p4_c", "p4_c2"])),
    ("/identities/g1", lambda data, _: [(v["camera_id"], v["start_time"] - T0, v["end_time"] - T0)
                                        for v in data["visits"]] == [("cam-a", 0, 15), ("cam-b", 20, 30),
                                                                     ("cam-a", 40, 50)]),
    ("/tracklets/{p1_b}", lambda data, p: (data["identity"], data["decision"]["kind"],
                                           data["decision"]["candidates"][0]["identity"],
                                           data["decision"]["rejected"], p.name_of(data["link"]["tracklet_id"])) == (
        "g1", "appearance", "g2", [{"identity": "g3", "reason": "transit_time"}], "p1_a1")),
    (f"/links?camera=cam-b&start={T0 + 31}&end={T0 + 50}",
     lambda data, p: [(p.name_of(link["tracklet_id"]), link["linked_camera"], link["identity"]) for link in data] == [
         ("p2_c", "cam-b", "g2"), ("p1_a2", "cam-b", "g1")]),
    ("/links?camera=cam-b", lambda data, p: names(p, data) == ["p1_b", "p2_c", "p1_a2", "p4_b"]),
])
def test_get_endpoints(shared, http: httpx.Client, path: str, check) -> None:
    response = http.get(path.format(**shared.ids))
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert check(response.json(), shared), response.text


def test_thumbnail(shared, http: httpx.Client) -> None:
    response = http.get(f"/tracklets/{shared.ids['p1_b']}/thumbnail")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == shared.thumbnails["p1_b"]


@pytest.mark.parametrize(("person", "identity"), [(0, "g1"), (1, "g2"), (3, "g4"), (9, "g11")])
def test_search_descriptor(http: httpx.Client, person: int, identity: str) -> None:
    response = http.post("/search/descriptor", json={"descriptor": basis(person), "k": 2})
    assert response.status_code == 200, response.text
    hits = response.json()
    assert len(hits) == 2 and hits[0]["identity_id"] == identity and hits[0]["score"] > 0.95
    assert set(hits[0]) == {"identity_id", "score", "best_tracklet", "best_camera", "tracklets_hit"}


# ------------------------------------------------------------------------------------------ image search


def encode(image: np.ndarray, kind: str) -> bytes:
    ok, data = cv2.imencode(kind, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("kind", [".png", ".jpg"])
def test_search_image_with_the_reid_model(module_redis, serve, crop_embedder, kind: str) -> None:
    """Five people, one crop each, stored with the crop's descriptor: each crop, sent as an image, finds its own."""
    redis_client, keys = module_redis, Keys(f"images{kind[1:]}")
    store = TrackletStore(redis_client, keys)
    rng = np.random.default_rng(3)
    crops = [encode(rng.integers(0, 255, (96 + 8 * i, 48, 3), dtype=np.uint8), kind) for i in range(5)]
    messages = []
    for i, data in enumerate(crops):  # the descriptor of the crop as the server decodes it
        space, descriptor = crop_embedder(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
        messages.append(TrackletMessage(f"cam-{i % 2}", i, T0 + i, T0 + i + 1, 1, descriptor, "keyreid_test",
                                        "random-init", message_id=f"{i + 1:032x}"))
    assert space == "keyreid_test@random-init/800"
    store.ingest(messages, now=T0)
    redis_client.set(keys.lease, "t")
    tracklets = {t.tracklet_id: t for t in load_tracklets(redis_client, keys, [m.message_id for m in messages])}
    store.commit_decisions([Decision(m.message_id, f"g{i + 1}", "new", 0.0) for i, m in enumerate(messages)],
                           tracklets, None, "t")
    index = GalleryIndex()
    index.add(space, list(tracklets), np.stack([t.descriptor for t in tracklets.values()]))
    server = serve(MatcherQueries(redis_client, keys, index, embed_crop=crop_embedder))
    content_type = "image/png" if kind == ".png" else "image/jpeg"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i, data in enumerate(crops):
            response = http.post("/search/image?k=3", content=data, headers={"Content-Type": content_type})
            assert response.status_code == 200, response.text
            hits = response.json()
            assert hits[0]["identity_id"] == f"g{i + 1}" and hits[0]["score"] > 0.99
            assert hits[0]["best_tracklet"] == messages[i].message_id and len(hits) == 3
        broken = http.post("/search/image", content=b"\x89PNG\r\n\x1a\nbroken", headers={"Content-Type": "image/png"})
        assert broken.status_code == 400 and broken.json()["error"] == "bad_request"
        frame = encode(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), kind)  # not a person crop: refused
        wide = http.post("/search/image", content=frame, headers={"Content-Type": content_type})
        assert wide.status_code == 400 and "160x120 pixels, wider than tall" in wide.json()["detail"], wide.text


def test_search_image_without_a_model(http: httpx.Client) -> None:
    image = encode(np.zeros((8, 4, 3), np.uint8), ".png")
    response = http.post("/search/image", content=image, headers={"Content-Type": "image/png"})
    assert response.status_code == 501
    assert response.json() == {"error": "not_implemented", "detail": "image search is not enabled on this matcher "
                                                                     "(configure search.arch and search.checkpoint)"}


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(("method", "path", "body", "status", "match"), [
    ("GET", "/identities/g999", None, 404, "identity g999 not found"),
    ("GET", "/tracklets/" + "e" * 32, None, 404, "not found"),
    ("GET", "/tracklets/{p2_c}/thumbnail", None, 404, "has no thumbnail"),
    ("GET", "/nowhere", None, 404, "Not Found"),
    ("GET", "/identities/alice", None, 400, "bad identity id"),
    ("GET", "/tracklets/XYZ", None, 400, "bad tracklet id"),
    ("GET", "/tracklets/XYZ/thumbnail", None, 400, "bad tracklet id"),
    ("GET", "/identities?limit=0", None, 400, "limit must be"),
    ("GET", "/identities?limit=51", None, 400, "limit must be"),
    ("GET", "/identities?limit=ten", None, 400, "limit: "),
    ("GET", "/identities?since=yesterday", None, 400, "since: "),
    ("GET", f"/identities?since={T0 + 5}&until={T0}", None, 400, "is after"),
    ("GET", "/identities?camera=no%20spaces", None, 400, "bad camera id"),
    ("GET", "/links", None, 400, "camera: Field required"),
    ("GET", f"/links?camera=cam-a&start={T0 + 9}&end={T0}", None, 400, "is after"),
    ("POST", "/search/descriptor", {"descriptor": [1.0] * 7}, 404, "no descriptor space of dimension 7"),
    ("POST", "/search/descriptor", {"descriptor": []}, 400, "descriptor: "),
    ("POST", "/search/descriptor", {"descriptor": "abc"}, 400, "descriptor: "),
    ("POST", "/search/descriptor", {"descriptor": [1.0] * 16, "k": 0}, 400, "k: "),
    ("POST", "/search/descriptor", {"descriptor": [1.0] * 16, "colour": "red"}, 400, "colour: "),
    ("POST", "/search/descriptor", {"descriptor": [1.0] * 16, "space": "x@1/16"}, 404, "unknown descriptor space"),
    ("POST", "/search/descriptor", {"k": 3}, 400, "descriptor: Field required"),
    ("POST", "/search/descriptor", '{"descriptor": [NaN' + ", 0" * 15 + "]}", 400, "NaN or infinite"),
    ("POST", "/search/descriptor", "{not json", 400, "JSON decode error"),
    ("DELETE", "/stats", None, 405, "Method Not Allowed"),
])
def test_errors(shared, http: httpx.Client, method: str, path: str, body: object, status: int,
                match: str) -> None:
    content = body if isinstance(body, str) else None if body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"} if content is not None else {}
    response = http.request(method, path.format(**shared.ids), content=content, headers=headers)
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"error", "detail"} and match in data["detail"]
    expected = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}[status]
    assert data["error"] == expected


@pytest.mark.parametrize("chunked", [False, True])
def test_body_too_large(serve, shared_queries: MatcherQueries, chunked: bool) -> None:
    server = serve(shared_queries, max_body_bytes=1024)
    body = json.dumps({"descriptor": [0.5] * 400}).encode()  # ~2 kB
    content = iter([body[:700], body[700:]]) if chunked else body  # chunked: no Content-Length, the size counts
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.post("/search/descriptor", content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json() == {"error": "payload_too_large", "detail": "the request body is larger than 1024 bytes"}
        image = http.post("/search/image", content=iter([b"\x89PNG" + b"0" * 600] * 2),
                          headers={"Content-Type": "image/png"})
        assert image.status_code == 413 and image.json()["error"] == "payload_too_large"
    with httpx.Client(base_url=server.url, timeout=10) as http:  # a fresh connection: the server closed the last
        small = http.post("/search/descriptor", json={"descriptor": basis(0), "k": 1})
        assert small.status_code == 200 and small.json()[0]["identity_id"] == "g1"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json", "image/gif", "image/pngx"])
def test_search_image_media_types(http: httpx.Client, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/search/image", content=b"GIF89a", headers=headers)
    assert response.status_code == 415 and response.json()["error"] == "unsupported_media_type"


def test_unexpected_error_is_a_generic_500(private, serve, caplog: pytest.LogCaptureFixture) -> None:
    tracklet_id = private.ids["p3_c"]
    private.client.hset(private.keys.tracklet(tracklet_id), "track", "not-a-number")  # a corrupt record
    server = serve(MatcherQueries(private.client, private.keys, private.index))
    with caplog.at_level(logging.ERROR, logger="keyreid_stream.matcher.api.api"):
        response = httpx.get(f"{server.url}/tracklets/{tracklet_id}", timeout=10)
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "internal server error"}
    record = next(r for r in caplog.records if r.name == "keyreid_stream.matcher.api.api" and r.levelno >= logging.ERROR)
    assert record.exc_info is not None and f"/tracklets/{tracklet_id}" in record.getMessage()


def test_redis_down_is_503(shared, serve, redis_server_factory) -> None:
    server = redis_server_factory()
    client = redis.Redis.from_url(server.url, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        api = serve(MatcherQueries(client, shared.keys, shared.index))
        with httpx.Client(base_url=api.url, timeout=10) as http:
            assert http.get("/identities").status_code == 200
            server.stop()
            for path in ("/stats", "/identities", "/identities/g1", "/cameras", "/links?camera=cam-a"):
                response = http.get(path)
                assert response.status_code == 503, path
                assert response.json() == {"error": "redis_unavailable",
                                           "detail": "the matcher's Redis does not answer; try again later"}
            health = http.get("/health")
            assert health.status_code == 503
            assert (health.json()["status"], health.json()["redis"]) == ("degraded", False)
    finally:
        client.close()


def test_health_reports_the_service_state(shared, serve) -> None:
    state = {"index_ready": False, "role": "follower"}
    api = serve(MatcherQueries(shared.client, shared.keys, shared.index, status=lambda: state))
    with httpx.Client(base_url=api.url, timeout=10) as http:
        response = http.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "degraded", "redis": True, "problems": ["index_ready is false"],
                                   "service": state}
        state["index_ready"] = True
        assert http.get("/health").status_code == 200
        assert http.get("/stats").json()["service"] == state


# ------------------------------------------------------------------------------------------ tokens


@pytest.mark.parametrize("path", ["/stats", "/cameras", "/identities", "/identities/g1", "/tracklets/{p1_b}",
                                  "/tracklets/{p1_b}/thumbnail", "/tracklets/{p1_b}/similar", "/links?camera=cam-a",
                                  "/search/descriptor", "/search/image"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic czNjcmV0LXRva2Vu", "Bearer",
                                           f"Bearer {TOKEN}x"])
def test_token_required(shared, secured_server, path: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    method = "POST" if path.startswith("/search") else "GET"
    with httpx.Client(base_url=secured_server.url, timeout=10) as http:
        response = http.request(method, path.format(**shared.ids), headers=headers, json={"descriptor": [1.0]})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


def test_token_accepted_and_public_paths(secured_server) -> None:
    with httpx.Client(base_url=secured_server.url, timeout=10) as http:
        for path in ("/health", "/openapi.json", "/docs"):
            assert http.get(path).status_code == 200, path
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get("/identities/g4", headers=auth).json()["num_tracklets"] == 4
        found = http.post("/search/descriptor", json={"descriptor": basis(2)}, headers=auth)
        assert found.status_code == 200 and found.json()[0]["identity_id"] == "g3"


def test_openapi_document(secured_server) -> None:
    with httpx.Client(base_url=secured_server.url, timeout=10) as http:
        spec = http.get("/openapi.json").json()
    assert sorted(spec["paths"]) == PATHS
    assert spec["components"]["securitySchemes"] == {"bearer": {
        "type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token>, the token the matcher "
                                                           "was started with"}}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert operation["summary"] and operation["description"], path
            assert (operation.get("security") == [{"bearer": []}]) == (path != "/health"), path
    schemas = spec["components"]["schemas"]
    assert {"IdentityView", "TrackletView", "SearchHit", "Stats", "ErrorBody", "DescriptorQuery"} <= set(schemas)
    image = spec["paths"]["/search/image"]["post"]
    assert set(image["requestBody"]["content"]) == {"image/jpeg", "image/png"}
    assert "415" in image["responses"] and "501" in image["responses"]


def test_no_security_scheme_without_a_token(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})


# ------------------------------------------------------------------------------------------ server


def test_server_binds_a_free_port_and_stops_promptly(shared_queries: MatcherQueries) -> None:
    server = ApiServer(create_app(shared_queries), "127.0.0.1", 0)
    with server:
        assert server.port and server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
        http = httpx.Client(base_url=server.url, timeout=10)  # keeps an idle keep-alive connection open
        assert http.get("/health").status_code == 200
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    http.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_port_in_use(shared_queries: MatcherQueries, api_server: ApiServer) -> None:
    with pytest.raises(OSError):
        ApiServer(create_app(shared_queries), "127.0.0.1", api_server.port).start()
