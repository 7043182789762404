"""Matcher roles: a query-only matcher (``keyreid-stream matcher --api-only``: ``ingest.enabled: false`` and
``association.enabled: false``) next to a normal one on one Redis, as the identity browser and API replicas run.

It must answer queries about what the other matcher ingested and decided, bind no ZeroMQ socket, never take the
association lease (not even when nobody else holds it), and report its ingest as disabled, not as down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis

from keyreid_stream.cli import main
from keyreid_stream.matcher.association.synthetic import generate_scene
from keyreid_stream.matcher.config import AssociationConfig, IngestConfig
from keyreid_stream.matcher.service import MatcherThread, run_matcher
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.redis_server import free_port
from keyreid_stream.workers.publisher import Publisher

from matcher_harness import matcher_config, running_matcher, wait_until

KEYS = Keys("krs")
TOKEN = "role-test-token"


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def _get(base: str, path: str, token: str | None = TOKEN) -> tuple[int, object]:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _post(base: str, path: str, body: dict) -> object:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _health(base: str) -> dict | None:
    try:
        return _get(base, "/health", token=None)[1]  # type: ignore[return-value]
    except OSError:  # not listening yet
        return None


def _listening_ports(pid: int) -> set[int]:
    psutil = pytest.importorskip("psutil")  # installed with the worker's extra (ultralytics needs it)

    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def _decided(client: redis.Redis, count: int) -> bool:
    if client.zcard(KEYS.by_ingest) < count:
        return False
    last = client.xrevrange(KEYS.stream, count=1)
    return bool(last) and client.get(KEYS.cursor) == last[0][0]


@pytest.mark.slow
def test_api_only_matcher_serves_what_another_matcher_ingested(redis_client, zmq_context, tmp_path: Path) -> None:
    """The real command line (as the browser container runs it) beside a normal matcher on one Redis."""
    url, port = _url(redis_client), free_port()
    token_file = tmp_path / "api_token"
    token_file.write_text(TOKEN + "\n")
    log = tmp_path / "api-only.log"
    env = {k: v for k, v in os.environ.items() if k != "KEYREID_API_TOKEN"}
    command = [sys.executable, "-m", "keyreid_stream", "matcher", "--api-only", "--redis", url,
               "--http", f"127.0.0.1:{port}", "--token-file", str(token_file), "association.lease_ttl_s=1"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: (_health(base) or {}).get("status") == "ok" or process.poll() is not None, 60,
                   "the API-only matcher")
        assert process.poll() is None, log.read_text()
        health = _health(base)
        service = health["service"]
        assert service["ingest_enabled"] is False and "ingest_running" not in service, health  # disabled, not down
        assert service["association_enabled"] is False and service["listen"] is None
        assert health["problems"] == [] and health["redis"] is True
        assert _listening_ports(process.pid) == {port}  # the HTTP API and no ZeroMQ socket
        time.sleep(1.5)  # many association cycles of a matcher that would associate
        assert redis_client.get(KEYS.lease) is None

        scene = generate_scene(num_people=20, distractors=5, seed=11)
        messages = [t.message for t in scene.tracklets]
        n = len(messages)
        with running_matcher(matcher_config(url)) as matcher:
            publisher = Publisher(zmq_context, matcher.endpoint, ack_timeout_s=1.0, heartbeat_interval_s=0.5,
                                  buffer_size=10_000, max_in_flight=256).start()
            for message in messages:
                publisher.publish(message)
            wait_until(lambda: publisher.stats().acked >= n, 60, "all acks")
            wait_until(lambda: _decided(redis_client, n), 60, "association by the normal matcher")
            publisher.close(1.0)
            owner = redis_client.get(KEYS.lease)
            assert owner is not None  # the normal matcher decides

            wait_until(lambda: (_health(base) or {}).get("service", {}).get("index_size") == n, 30,
                       "the API-only matcher's index following the stream")
            status, stats = _get(base, "/stats")
            assert status == 200 and stats["tracklets"] == n and stats["stored"] == n
            assert stats["lease_owner"] == owner.decode() and stats["service"]["ingest_enabled"] is False
            assert _get(base, "/stats", token=None)[0] == 401  # the token file is read

            _, identities = _get(base, "/identities?limit=1000")
            assert sum(row["num_tracklets"] for row in identities) == n
            assert len(identities) == redis_client.zcard(KEYS.identities)
            probe = messages[0]
            _, tracklet = _get(base, f"/tracklets/{probe.message_id}")
            stored_identity = redis_client.hget(KEYS.tracklet(probe.message_id), "identity").decode()
            assert tracklet["identity"] == stored_identity and tracklet["decision"] is not None
            hits = _post(base, "/search/descriptor", {"descriptor": np.asarray(probe.descriptor).tolist(), "k": 3})
            assert hits[0]["identity_id"] == stored_identity and hits[0]["best_tracklet"] == probe.message_id
        assert matcher.report.association.decided == n and matcher.report.ingest.stored == n

        assert redis_client.get(KEYS.lease) is None  # released by the normal matcher at its stop
        time.sleep(2.5)  # past lease_ttl_s: a matcher that associates would have taken the free lease by now
        assert redis_client.get(KEYS.lease) is None
        assert (_health(base) or {}).get("status") == "ok"
        assert _get(base, f"/identities/{stored_identity}")[0] == 200
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        returncode = process.wait(30)
    output = log.read_text()
    assert returncode == 0, output
    assert "no ingest socket (query only)" in output and "0 decided" in output, output


def test_api_only_matcher_in_a_thread_binds_nothing(redis_client, monkeypatch) -> None:
    """``ingest.enabled: false`` skips the ROUTER socket and the Ingestor entirely (no ZeroMQ context either)."""
    from keyreid_stream.matcher import service

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an API-only matcher must not bind a ZeroMQ socket")

    monkeypatch.setattr(service, "bind_router", forbidden)
    monkeypatch.setattr(service.zmq, "Context", forbidden)
    port = free_port()
    base = matcher_config(_url(redis_client), http=f"127.0.0.1:{port}")
    config = replace(base, ingest=replace(base.ingest, enabled=False),
                     association=replace(base.association, enabled=False))
    with MatcherThread(config) as matcher:
        wait_until(lambda: (_health(f"http://127.0.0.1:{port}") or {}).get("status") == "ok", 30, "health ok")
        assert redis_client.get(KEYS.lease) is None
    report = matcher.report
    assert report.endpoint == "" and report.ingest.frames == 0 and report.association.decided == 0
    assert report.http == f"127.0.0.1:{port}"


def test_a_matcher_with_nothing_to_do_is_refused() -> None:
    from keyreid_stream.matcher.config import ApiConfig, MatcherConfig

    config = MatcherConfig(ingest=IngestConfig(enabled=False), association=AssociationConfig(enabled=False),
                           api=ApiConfig(http=""))
    with pytest.raises(ValueError, match="nothing"):
        run_matcher(config, threading.Event())


def test_api_only_flags(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse: --listen and --api-only exclude each other
        main(["matcher", "--api-only", "--listen", "tcp://*:5555", "--http", ":8080"])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert main(["matcher", "--api-only", "--http", ""]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--api-only" in err and "--http" in err


def test_api_only_sets_both_roles_off() -> None:
    from keyreid_stream.cli import build_parser
    from keyreid_stream.matcher.cli import _load

    args = build_parser().parse_args(["matcher", "--api-only", "--redis", "redis://redis:6379/0", "--http", ":8080",
                                      "ingest.enabled=true", "association.enabled=true"])  # the flag wins
    config = _load(args)
    assert not config.ingest.enabled and not config.association.enabled and config.api.http == ":8080"
