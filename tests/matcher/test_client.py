"""``keyreid-stream query`` against a live query API (uvicorn in a thread, real Redis): every subcommand as a
summary and as JSON, and every failure as one readable line (connection refused, HTTP errors, bad files)."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from keyreid_stream.matcher.api.queries import MatcherQueries
from keyreid_stream.matcher.cli import add_commands
from keyreid_stream.query.client import QueryError, parse_time
from keyreid_stream.redis_server import free_port

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
API_TOKEN = "s3cret-token"  # conftest.API_TOKEN


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYREID_API_TOKEN", raising=False)


@pytest.fixture
def query(capsys: pytest.CaptureFixture[str]):
    """``query(*argv)`` -> (exit status, stdout) of ``keyreid-stream query ARGV``."""

    def run(*argv: str) -> tuple[int, str]:
        parser = argparse.ArgumentParser(prog="keyreid-stream")
        add_commands(parser.add_subparsers())
        args = parser.parse_args(["query", *argv])
        code = args.handler(args)
        return code, capsys.readouterr().out

    return run


def basis(index: int) -> list[float]:
    return [1.0 if i == index else 0.0 for i in range(16)]


@pytest.fixture
def files(tmp_path):
    """Descriptor and image files for ``search``."""
    np.save(tmp_path / "p2.npy", np.asarray(basis(1), np.float32))
    (tmp_path / "p3.json").write_text(json.dumps({"descriptor": basis(2)}))
    (tmp_path / "p4.json").write_text(json.dumps(basis(3)))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "strings.json").write_text('["a", "b"]')
    np.save(tmp_path / "matrix.npy", np.zeros((2, 16), np.float32))
    (tmp_path / "vector.txt").write_text("1 2 3")
    (tmp_path / "crop.jpg").write_bytes(cv2.imencode(".jpg", np.zeros((16, 8, 3), np.uint8))[1].tobytes())
    (tmp_path / "fake.jpg").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize(("argv", "expected"), [
    (["health"], ["status: ok", "redis: reachable"]),
    (["stats"], ["tracklets: 20   identities: 10", "received: 22   stored: 20   duplicates: 1   rejected: truncated=1",
                 "index: testnet@1/16=20", "association lag: 0.0 s   lease owner: lease-token"]),
    (["cameras"], ["camera  tracklets  last heartbeat            sequence",
                   "cam-a   8          2023-11-14T22:21:41.000Z  5", "cam-c   7          -                         -"]),
    (["identities", "--limit", "2"], ["identity  last seen", "g11       2023-11-14T22:19:15.000Z", "g10"]),
    (["identities", "--camera", "cam-c", "--since", "2023-11-14T22:13:40Z", "--until", str(T0 + 100)],
     ["g2        2023-11-14T22:14:30.000Z  2023-11-14T22:13:22.000Z  3"]),
    (["identity", "g5"], ["identity g4 (asked for g5, merged: g5 -> g4)", "on cam-a, cam-b, cam-c; 4 tracklets",
                          "visits:", "cam-c   2023-11-14T22:17:10.000Z  2023-11-14T22:17:20.000Z  1"]),
    (["tracklet", "{p1_b}"], ["tracklet {p1_b}: camera cam-b track 7", "identity: g1", "thumbnail: yes",
                              "decision: appearance score 0.800 via {p1_a1}", "candidate g2 0.410 ({p2_b})",
                              "rejected g3: transit_time", "link: appearance to {p1_a1} on cam-a score 0.800"]),
    (["tracklet", "{p11_new}"], ["identity: - (not associated yet)"]),
    (["links", "--camera", "cam-b", "--start", str(T0 + 31), "--end", "2023-11-14T22:14:10+00:00"],
     ["{p2_c}  cam-c   2023-11-14T22:13:55.000Z  g2        {p2_b}", "{p1_a2}  cam-a"]),
    (["links", "--camera", "cam-b", "--start", str(T0 + 1000)], ["(none)"]),
    (["search", "--descriptor", "{dir}/p2.npy"], ["rank  identity  score", "1     g2        0.99"]),
    (["search", "--descriptor", "{dir}/p3.json", "--k", "1"], ["1     g3        0.9"]),
    (["search", "--descriptor", "{dir}/p4.json", "--space", "testnet@1/16"], ["1     g4        0.9"]),
])
def test_subcommands(shared, api_server, files, query, argv: list[str], expected: list[str]) -> None:
    argv = [arg.format(dir=files, **shared.ids) for arg in argv]
    code, out = query("--url", api_server.url, *argv)
    assert code == 0
    for text in expected:
        assert text.format(**shared.ids) in out, out
    if argv[0] == "identities" and len(argv) > 3:
        assert "g4" not in out and "g3" not in out


@pytest.mark.parametrize(("argv", "path"), [
    (["health"], "/health"), (["stats"], "/stats"), (["cameras"], "/cameras"),
    (["identities", "--since", str(T0 + 260)], f"/identities?since={T0 + 260}"),
    (["identity", "g1"], "/identities/g1"), (["tracklet", "{p2_c}"], "/tracklets/{p2_c}"),
    (["links", "--camera", "cam-a", "--end", str(T0 + 60)], f"/links?camera=cam-a&end={T0 + 60}"),
])
def test_json_output_is_the_api_answer(shared, api_server, http, query, argv: list[str], path: str) -> None:
    code, out = query("--url", api_server.url, "--json", *[arg.format(**shared.ids) for arg in argv])
    assert code == 0 and json.loads(out) == http.get(path.format(**shared.ids)).json()


def test_search_json(api_server, files, query) -> None:
    code, out = query("--url", api_server.url, "--json", "search", "--descriptor", str(files / "p2.npy"), "--k", "2")
    hits = json.loads(out)
    assert code == 0 and [hit["identity_id"] for hit in hits][:1] == ["g2"] and len(hits) == 2


def test_token_from_the_environment(secured_server, query, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_API_TOKEN", API_TOKEN)
    code, out = query("--url", secured_server.url, "--token-env", "MY_API_TOKEN", "identity", "g3")
    assert code == 0 and "identity g3" in out
    monkeypatch.setenv("KEYREID_API_TOKEN", API_TOKEN)
    assert query("--url", secured_server.url, "stats")[0] == 0


@pytest.mark.parametrize("placement", ["before", "after", "both"])
def test_options_before_or_after_the_query_command(shared, api_server, query, monkeypatch: pytest.MonkeyPatch,
                                                  placement: str) -> None:
    """``query --url U identities`` and ``query identities --url U`` (README's form) are the same request; an
    option given after the command wins over the same option before it."""
    monkeypatch.setenv("MY_API_TOKEN", API_TOKEN)
    options = ["--url", api_server.url, "--json", "--timeout", "5", "--token-env", "MY_API_TOKEN"]
    argv = {"before": [*options, "identities", "--limit", "2"],
            "after": ["identities", "--limit", "2", *options],
            "both": ["--url", "http://127.0.0.1:9", "identities", *options, "--limit", "2"]}[placement]
    code, out = query(*argv)
    assert code == 0 and [item["identity_id"] for item in json.loads(out)] == ["g11", "g10"]


def test_option_defaults_without_any_given() -> None:
    parser = argparse.ArgumentParser(prog="keyreid-stream")
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["query", "stats"])
    assert (args.url, args.json, args.timeout, args.token_env) == ("http://127.0.0.1:8080", False, 10.0,
                                                                   "KEYREID_API_TOKEN")


def test_degraded_health_exits_1(shared, serve, query) -> None:
    server = serve(MatcherQueries(shared.client, shared.keys, shared.index, status=lambda: {"index_ready": False}))
    code, out = query("--url", server.url, "health")
    assert code == 1 and "status: degraded" in out and "problem: index_ready is false" in out


def test_no_subcommand_prints_help(query) -> None:
    code, out = query()
    assert code == 2 and "query commands" in out


def _one_line_error(query, *argv: str) -> str:
    with pytest.raises(QueryError) as caught:
        query(*argv)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_connection_refused(query) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    message = _one_line_error(query, "--url", url, "--timeout", "2", "stats")
    assert message == f"cannot reach the matcher API at {url}: Connection refused"


@pytest.mark.parametrize(("token", "expected"), [
    (None, ("GET /stats: HTTP 401 unauthorized: this API needs 'Authorization: Bearer <token>' (the API needs a "
            "token: put it in the environment variable named by --token-env)")),
    ("wrong", "GET /stats: HTTP 401 unauthorized: wrong bearer token"),
])
def test_unauthorized(secured_server, query, monkeypatch: pytest.MonkeyPatch, token: str | None,
                      expected: str) -> None:
    if token:
        monkeypatch.setenv("KEYREID_API_TOKEN", token)
    assert _one_line_error(query, "--url", secured_server.url, "stats") == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["identity", "g999"], "GET /identities/g999: HTTP 404 not_found: identity g999 not found"),
    (["identity", "bob"], "GET /identities/bob: HTTP 400 bad_request: bad identity id 'bob'"),
    (["tracklet", "0" * 32], f"GET /tracklets/{'0' * 32}: HTTP 404 not_found: tracklet {'0' * 32} not found"),
    (["links", "--camera", "cam a"], "GET /links: HTTP 400 bad_request: bad camera id 'cam a'"),
    (["identities", "--since", str(T0 + 9), "--until", str(T0)],
     "GET /identities: HTTP 400 bad_request: since (1700000009.0) is after until (1700000000.0)"),
    (["search", "--descriptor", "{dir}/p2.npy", "--space", "other@1/16"],
     "POST /search/descriptor: HTTP 404 not_found: unknown descriptor space"),
    (["search", "--image", "{dir}/crop.jpg"],
     "POST /search/image: HTTP 501 not_implemented: image search is not enabled"),
    (["search", "--descriptor", "{dir}/missing.npy"], "cannot read {dir}/missing.npy: No such file or directory"),
    (["search", "--descriptor", "{dir}/vector.txt"], "{dir}/vector.txt: a descriptor file must be .npy or .json"),
    (["search", "--descriptor", "{dir}/bad.json"], "{dir}/bad.json: not a valid descriptor file"),
    (["search", "--descriptor", "{dir}/strings.json"], "{dir}/strings.json: expected a JSON list of numbers"),
    (["search", "--descriptor", "{dir}/matrix.npy"],
     "{dir}/matrix.npy: expected one numeric vector, got float32 (2, 16)"),
    (["search", "--image", "{dir}/fake.jpg"], "{dir}/fake.jpg: not a JPEG or PNG image"),
])
def test_errors_are_one_line(api_server, files, query, argv: list[str], expected: str) -> None:
    message = _one_line_error(query, "--url", api_server.url, *[arg.format(dir=files) for arg in argv])
    assert message.startswith(expected.format(dir=files)), message


def test_bad_url(query) -> None:
    assert "--url must be http://" in _one_line_error(query, "--url", "ftp://example.org", "stats")


@pytest.mark.parametrize(("text", "expected"), [
    ("1700000000", T0), ("1700000000.25", T0 + 0.25), ("2023-11-14T22:13:20Z", T0),
    ("2023-11-14T22:13:20", T0), ("2023-11-14T23:13:20+01:00", T0), ("2023-11-14 22:13:20.5+00:00", T0 + 0.5),
])
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "nan", "inf", "2023-13-01"])
def test_bad_times_are_usage_errors(query, text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        query("identities", "--since", text)
    assert caught.value.code == 2 and "--since" in capsys.readouterr().err


def test_summaries_show_media_time_as_media_time() -> None:
    """The query CLI follows the clock rule: ISO-8601 UTC for wall-clock times, media time said so."""
    from keyreid_stream.query.client import format_identities

    rows = [{"identity_id": "g2", "last_seen": 75.8, "first_seen": 4.6, "num_tracklets": 3, "cameras": ["cam1"]},
            {"identity_id": "g1", "last_seen": T0 + 50, "first_seen": T0, "num_tracklets": 1, "cameras": ["cam2"]}]
    lines = format_identities(rows).splitlines()
    assert lines[1].split()[:5] == ["g2", "0:01:15.8", "media", "0:00:04.6", "media"]
    assert "2023-11-14T22:14:10.000Z  2023-11-14T22:13:20.000Z" in lines[2]
