"""The query API against hostile HTTP, over real sockets: every response says ``nosniff``, half-sent requests are
cut off, error details quote at most a short prefix of what was sent, and the token is checked before the body."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from keyreid_stream.matcher.api.api import ApiServer, create_app

TOKEN = "s3cret-token"  # conftest.API_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_DETAIL_CHARS = 300  # api.MAX_DETAIL_CHARS


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), [
    ("GET", "/health", {}, None, 200), ("GET", "/openapi.json", {}, None, 200), ("GET", "/docs", {}, None, 200),
    ("GET", "/browser/", {}, None, 200), ("GET", "/", {}, None, 307), ("GET", "/identities", AUTH, None, 200),
    ("GET", "/tracklets/{p1_b}/thumbnail", AUTH, None, 200), ("GET", "/identities/g999", AUTH, None, 404),
    ("GET", "/nowhere", {}, None, 404), ("DELETE", "/stats", AUTH, None, 405), ("GET", "/stats", {}, None, 401),
    ("GET", "/identities?limit=0", AUTH, None, 400), ("POST", "/search/descriptor", AUTH, "x" * 5000, 413),
])
def test_every_response_says_nosniff(shared, serve, shared_queries, method: str, path: str, headers: dict,
                                     body: str | None, status: int) -> None:
    server = serve(shared_queries, token=TOKEN, max_body_bytes=4096)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.request(method, path.format(**shared.ids), headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.headers.get("x-content-type-options") == "nosniff"


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (reads nothing), failing after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    assert sock.recv(1024) == b"", "the server answered a request it had not fully received"
    return time.monotonic() - started


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body), however the server split its writes."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return data


@pytest.mark.parametrize("kept_alive", [False, True])
def test_a_half_sent_request_is_cut_off(shared_queries, kept_alive: bool) -> None:
    with ApiServer(create_app(shared_queries), "127.0.0.1", 0, header_timeout_s=0.5) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if kept_alive:  # one whole request first: the timeout also covers the next one on the same connection
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert _closed_within(sock, 5.0) < 3.0


def test_a_request_trickling_in_is_cut_off(shared_queries) -> None:
    with ApiServer(create_app(shared_queries), "127.0.0.1", 0, header_timeout_s=0.5) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):  # reset or broken pipe once the server has closed
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                sock.send(bytes([byte]))
                time.sleep(0.05)
                assert time.monotonic() - started < 4.0, "a trickling request was held open"
        assert time.monotonic() - started < 4.0
    assert ApiServer(create_app(shared_queries)).protocol.header_timeout_s == 10.0  # the default


LONG = "c" * 65536
URL_LONG = LONG[:7000]  # a request head is at most 16 KiB (h11)


@pytest.mark.parametrize(("method", "path", "body", "headers"), [
    ("GET", f"/identities?camera={URL_LONG}", None, {}),
    ("GET", f"/links?camera={URL_LONG}", None, {}),
    ("GET", f"/identities/g{URL_LONG}", None, {}),
    ("GET", f"/tracklets/{URL_LONG}", None, {}),
    ("GET", f"/identities?limit={'9' * 4000}", None, {}),
    ("POST", "/search/descriptor", json.dumps({"descriptor": [1.0] * 16, "space": LONG}), {}),
    ("POST", "/search/descriptor", json.dumps({"descriptor": [1.0] * 16, LONG: 1}), {}),
    ("POST", "/search/descriptor", json.dumps({"descriptor": [LONG] * 20}), {}),
    ("POST", "/search/image", "x", {"Content-Type": f"image/{URL_LONG}"}),
])
def test_error_details_quote_a_short_prefix(http: httpx.Client, method: str, path: str, body: str | None,
                                            headers: dict) -> None:
    headers = {"Content-Type": "application/json", **headers} if body else headers
    response = http.request(method, path, content=body, headers=headers)
    assert response.status_code in (400, 415), response.text
    detail = response.json()["detail"]
    assert len(detail) <= MAX_DETAIL_CHARS and "c" * 60 not in detail, detail


@pytest.mark.parametrize(("path", "body", "content_type"), [
    ("/search/descriptor", b"{not json", "application/json"),
    ("/search/descriptor", b'{"descriptor": "abc"}', "application/json"),
    ("/search/image", b"GIF89a", "image/gif"),
    ("/search/descriptor", b"[" * 10_000, "application/json"),  # over max_body_bytes: still 401 first
])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token"])
def test_the_token_is_checked_before_the_body(serve, shared_queries, path: str, body: bytes, content_type: str,
                                              authorization: str | None) -> None:
    server = serve(shared_queries, token=TOKEN, max_body_bytes=4096)
    headers = {"Content-Type": content_type, **({"Authorization": authorization} if authorization else {})}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.post(path, content=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized" and response.headers["www-authenticate"].startswith("Bearer")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post(path, content=body, headers={**headers, **AUTH}).status_code in (400, 413, 415)


def test_the_openapi_description_declares_what_the_server_checks(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert '"422"' not in json.dumps(spec) and "HTTPValidationError" not in json.dumps(spec)

    def parameter(path: str, name: str, method: str = "get") -> dict:
        return next(p["schema"] for p in spec["paths"][path][method]["parameters"] if p["name"] == name)

    assert parameter("/identities/{gid}", "gid")["pattern"] == "^g[0-9]{1,19}(?:-[0-9a-z]{1,13})?$"
    for path in ("/tracklets/{tid}", "/tracklets/{tid}/thumbnail", "/tracklets/{tid}/similar"):
        assert parameter(path, "tid")["pattern"] == "^[0-9a-f]{32}$"
    assert parameter("/links", "camera")["pattern"] == "^[A-Za-z0-9_.:-]{1,64}$"
    assert parameter("/links", "limit")["maximum"] == 50 == parameter("/tracklets/{tid}/similar", "k")["maximum"]
    assert parameter("/search/image", "k", "post")["minimum"] == 1
    query = spec["components"]["schemas"]["DescriptorQuery"]["properties"]
    assert query["k"]["maximum"] == 50 and query["descriptor"]["contains"] == {"not": {"const": 0}}
    assert "404" in spec["paths"]["/search/descriptor"]["post"]["responses"]


def test_a_request_that_is_not_http_gets_a_nosniff_400(api_server) -> None:
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        head = sock.recv(4096).split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400") and b"x-content-type-options: nosniff" in head
