"""The matcher and the life of its Redis: started before Redis answers (observable: /health 503 with the reason,
then serving), stopped while waiting (clean exit), and a Redis restarted without persistence under a running
matcher (detected, recovered: a new store epoch, no identity id reused, the vector index rebuilt).

Real redis-servers on free ports, real ZeroMQ sockets (the worker's Publisher), the real HTTP API.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import httpx
import numpy as np
import pytest
import redis
import zmq

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.service import MatcherThread
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.records import IDENTITY_ID_PATTERN
from keyreid_stream.matcher.state.store import StoreReset, TrackletStore
from keyreid_stream.redis_server import RedisServer, free_port
from keyreid_stream.workers.publisher import Publisher

from matcher_harness import matcher_config, running_matcher, wait_until

pytestmark = [pytest.mark.zmq, pytest.mark.slow]
KEYS = Keys("krs")


def _health(url: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}/health", timeout=5)
    return response.status_code, response.json()


def _messages(people: int, first_track: int, t0: float) -> list[TrackletMessage]:
    """Two cameras see the same ``people`` one after the other: each person should become one identity."""
    rng = np.random.default_rng(first_track)
    basis = rng.normal(size=(people, 32)).astype(np.float32)
    messages = []
    for person, vector in enumerate(basis):
        for camera, offset in (("cam-a", 0.0), ("cam-b", 20.0)):
            start = t0 + person * 60 + offset
            noisy = vector + rng.normal(0, 0.05, 32).astype(np.float32)
            messages.append(TrackletMessage(camera, first_track + person, start, start + 5, 12, noisy, "m", "1"))
    return messages


def _publish_all(context: zmq.Context, endpoint: str, messages: Sequence[TrackletMessage]) -> None:
    publisher = Publisher(context, endpoint, ack_timeout_s=0.5, heartbeat_interval_s=0.5).start()
    try:
        for message in messages:
            publisher.publish(message)
        wait_until(lambda: publisher.stats().acked == len(messages), 30, "every ack")
    finally:
        stats = publisher.close(1.0)
    assert (stats.acked, stats.dropped) == (len(messages), 0)


def _decided_identities(client: redis.Redis, messages: Sequence[TrackletMessage]) -> set[str] | None:
    pipe = client.pipeline(transaction=False)
    for message in messages:
        pipe.hget(KEYS.tracklet(message.message_id), "identity")
    found = pipe.execute()
    return None if None in found else {value.decode() for value in found}


# ------------------------------------------------------------------------------- started before Redis


def test_matcher_started_before_redis_answers_health_503_then_serves(zmq_context, tmp_path) -> None:
    redis_port, http_port = free_port(), free_port()
    config = matcher_config(f"redis://127.0.0.1:{redis_port}/0", http=f"127.0.0.1:{http_port}")
    url = f"http://127.0.0.1:{http_port}"
    matcher = MatcherThread(config, context=zmq_context)
    server = RedisServer(port=redis_port, data_dir=tmp_path / "redis")
    try:
        matcher.start(timeout_s=15)  # returns once the socket and the API are bound, Redis or not
        status, body = _health(url)
        assert status == 503 and body["status"] == "degraded" and body["redis"] is False
        problems = " | ".join(body["problems"])
        assert "waiting for redis" in problems and "ConnectionError" in problems, problems
        assert body["service"]["redis_connected"] is False
        assert httpx.get(f"{url}/identities", timeout=5).status_code == 503
        server.start()
        wait_until(lambda: _health(url)[0] == 200, 30, "/health 200 once Redis answers")
        messages = _messages(2, 1, 1_700_000_000.0)
        _publish_all(zmq_context, matcher.endpoint, messages)  # the socket was bound all along
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        wait_until(lambda: _decided_identities(client, messages), 30, "association")
        client.close()
    finally:
        matcher.stop()
        server.stop()


def test_ctrl_c_while_waiting_for_redis_exits_cleanly(tmp_path) -> None:
    redis_port, http_port = free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "keyreid_stream", "matcher", "--redis", f"redis://127.0.0.1:{redis_port}/0",
         "--listen", f"tcp://127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{http_port}",
         "redis.backoff_s=[0.05, 0.5]"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{http_port}"

        def answers() -> bool:
            try:
                return _health(url)[0] == 503
            except httpx.HTTPError:
                return process.poll() is not None  # ended: the assertions below say why

        wait_until(answers, 60, "/health answering 503 while Redis is down")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    after_signal = log[log.index("SIGINT"):]
    assert "query API on" not in after_signal and "ingest on" not in after_signal, after_signal
    assert "stopped while waiting for redis" in after_signal
    assert "matcher ran" in stdout.decode()


# ------------------------------------------------------------------------- Redis lost its data


def test_redis_restart_without_persistence_is_detected_and_no_identity_id_is_reused(zmq_context, tmp_path,
                                                                                      caplog) -> None:
    caplog.set_level(logging.INFO)
    redis_port, http_port = free_port(), free_port()
    server = RedisServer(port=redis_port, data_dir=tmp_path / "redis")  # persistence "none"
    server.start()
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    url = f"http://127.0.0.1:{http_port}"
    before, after = _messages(3, 1, 1_700_000_000.0), _messages(3, 100, 1_700_001_000.0)
    later = _messages(3, 200, 1_700_002_000.0)
    config = matcher_config(server.url, http=f"127.0.0.1:{http_port}")
    try:
        with running_matcher(config) as matcher:
            _publish_all(zmq_context, matcher.endpoint, before)
            wait_until(lambda: _decided_identities(client, before), 30, "association before the restart")
            old_ids = _decided_identities(client, before)
            wait_until(lambda: httpx.get(f"{url}/stats", timeout=5).json()["spaces"] == {"m@1/32": 6}, 30,
                       "the vector index holding the first tracklets")

            server.stop()  # a restart without persistence: every key is gone
            time.sleep(0.5)
            server.start()
            _publish_all(zmq_context, matcher.endpoint, after)
            wait_until(lambda: _decided_identities(client, after), 30, "association after the restart")
            new_ids = _decided_identities(client, after)
            assert not old_ids & new_ids, f"identity ids reused after the restart: {old_ids & new_ids}"
            wait_until(lambda: httpx.get(f"{url}/stats", timeout=5).json()["spaces"] == {"m@1/32": 6}, 10,
                       "the vector index holding only what Redis holds now")
            layout, new_epoch = client.hmget(KEYS.meta, ["layout", "epoch"])
            health = httpx.get(f"{url}/health", timeout=5).json()
        with running_matcher(config) as matcher:  # a matcher started afterwards continues, reusing nothing
            _publish_all(zmq_context, matcher.endpoint, later)
            wait_until(lambda: _decided_identities(client, later), 30, "association by a restarted matcher")
            later_ids = _decided_identities(client, later)
    finally:
        client.close()
        server.stop()
    assert not later_ids & (old_ids | new_ids), f"identity ids reused: {later_ids & (old_ids | new_ids)}"
    assert layout is not None, "the layout marker was not recreated"
    new_epoch = new_epoch.decode()
    assert len(old_ids) == len(new_ids) == 3
    assert all(re.fullmatch(IDENTITY_ID_PATTERN, gid) for gid in old_ids | new_ids)
    assert all(gid.endswith(f"-{new_epoch}") for gid in new_ids)
    assert health["service"]["store_epoch"] == new_epoch and health["service"]["store_recoveries"] == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "redis lost the matcher's data" in errors[0] and new_epoch in errors[0], errors


def test_store_notices_lost_data_and_recovers_with_a_new_epoch(redis_client) -> None:
    """The store's checks one by one: the marker gone, the counter behind, the stream behind, another matcher's
    recovery; allocation refuses to run in an epoch that is not the store's."""
    store, other = TrackletStore(redis_client, KEYS), TrackletStore(redis_client, KEYS)
    epoch = store.check_layout()
    assert other.check_layout() == epoch and store.lost_data() is None
    first = store.allocate_identity()
    assert first == f"g1-{epoch}"
    redis_client.set(KEYS.identity_counter, 3)  # an older snapshot: the counter went back
    assert "identity counter went back" in store.lost_data()
    for _ in range(63):  # the rest of the block reserved before the counter went back
        store.allocate_identity()
    with pytest.raises(StoreReset):
        store.allocate_identity()
    old, new = store.recover()
    assert (old, new) == (epoch, store.epoch) and new != epoch
    assert store.allocate_identity() == f"g4-{new}" and store.lost_data() is None
    assert "store epoch changed" in other.lost_data()  # the other matcher adopts the new epoch
    assert other.recover() == (epoch, new)
    redis_client.flushall()  # a restart without persistence
    assert "marker is gone" in store.lost_data()
    with pytest.raises(StoreReset):
        other.allocate_identity()
    _, newest = store.recover()
    assert newest not in (epoch, new) and redis_client.hget(KEYS.meta, "layout") is not None
    assert store.allocate_identity() == f"g1-{newest}"
    redis_client.xadd(KEYS.stream, {"id": "x"}, id="5-0")
    assert store.lost_data("5-0") is None
    assert "stream went back" in store.lost_data("9-0")
