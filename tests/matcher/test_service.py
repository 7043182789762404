"""The matcher service end to end: real redis-server, real ZeroMQ sockets, the worker's real Publisher.

Covers the issue's acceptance checks: linking quality on generated descriptors with known identities, exactly-once
storage across a SIGKILL and restart of the matcher, a Redis restart mid-stream, a thousand malformed messages,
and several matchers sharing one Redis.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import redis
import zmq

from keyreid_stream import wire
from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.association.synthetic import generate_scene, pair_precision_recall
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.redis_server import free_port
from keyreid_stream.workers.publisher import Publisher

from matcher_harness import matcher_config, running_matcher, wait_until

pytestmark = [pytest.mark.zmq, pytest.mark.slow]
KEYS = Keys("krs")


def _publish(context: zmq.Context, endpoint: str, messages: Sequence[TrackletMessage], *,
             rate_per_s: float | None = None, ack_timeout_s: float = 1.0) -> Publisher:
    publisher = Publisher(context, endpoint, ack_timeout_s=ack_timeout_s, heartbeat_interval_s=0.5,
                          buffer_size=50_000, max_in_flight=512).start()
    if rate_per_s is None:
        for message in messages:
            publisher.publish(message)
        return publisher

    def paced() -> None:
        for i, message in enumerate(messages):
            publisher.publish(message)
            if i % 50 == 49:
                time.sleep(50 / rate_per_s)

    threading.Thread(target=paced, daemon=True).start()
    return publisher


def _all_acked(publisher: Publisher, count: int) -> bool:
    return publisher.stats().acked >= count


def _decided(client: redis.Redis, count: int) -> bool:
    """Everything stored and associated: the cursor reached the last stream entry."""
    if client.zcard(KEYS.by_ingest) < count:
        return False
    last = client.xrevrange(KEYS.stream, count=1)
    return bool(last) and client.get(KEYS.cursor) == last[0][0]


def _identities(client: redis.Redis, ids: Sequence[str]) -> list[str | None]:
    pipe = client.pipeline(transaction=False)
    for tracklet_id in ids:
        pipe.hget(KEYS.tracklet(tracklet_id), "identity")
    return [value.decode() if value else None for value in pipe.execute()]


def _assert_consistent(client: redis.Redis, ids: Sequence[str]) -> None:
    """Every tracklet is a member of exactly the identity it names, and of no other."""
    identities = _identities(client, ids)
    assert None not in identities
    owners: dict[str, str] = {}
    for gid in client.zrange(KEYS.identities, 0, -1):
        for member in client.zrange(KEYS.members(gid.decode()), 0, -1):
            assert member.decode() not in owners, f"tracklet {member} is in two identities"
            owners[member.decode()] = gid.decode()
    assert {i: owners.get(i) for i in ids} == dict(zip(ids, identities))


def _quality(client: redis.Redis, scene) -> tuple[float, float]:
    ids = [t.message.message_id for t in scene.tracklets]
    return pair_precision_recall([t.person for t in scene.tracklets], _identities(client, ids))


# ------------------------------------------------------------------------------------- linking


@pytest.mark.parametrize("seed", [0, 1])
def test_generated_scene_is_linked_with_high_precision_and_recall(redis_client, zmq_context, tmp_path, seed) -> None:
    scene = generate_scene(seed=seed)
    matcher = _link_scene(redis_client, zmq_context, tmp_path, scene)
    precision, recall = _quality(redis_client, scene)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    _assert_consistent(redis_client, [t.message.message_id for t in scene.tracklets])
    n = len(scene.tracklets)
    assert matcher.report.association.decided == n
    assert int(redis_client.hget(KEYS.stats, "stored")) == n


def test_the_threshold_rule_runs_in_the_matcher(redis_client, zmq_context, tmp_path) -> None:
    # noisy, alike descriptors: with the fixed 0.6 a running matcher finds 0.57 of the true pairs (precision 1.00);
    # with association.threshold_rule: midpoint it sets its thresholds from what it stores: measured 0.94 / 0.84
    scene = generate_scene(seed=0, noise=0.8, similar_people=0.5)
    _link_scene(redis_client, zmq_context, tmp_path, scene, threshold_rule="midpoint")
    precision, recall = _quality(redis_client, scene)
    assert precision >= 0.8 and recall >= 0.75, (precision, recall)
    _assert_consistent(redis_client, [t.message.message_id for t in scene.tracklets])


def _link_scene(redis_client, zmq_context, folder: Path, scene, **association):
    """Publish the scene to a running matcher with its topology file; return once every tracklet is decided and
    one re-clustering pass has run (the stopped matcher, with its report)."""
    config = matcher_config(_url(redis_client), topology=_write_topology(scene, folder), **association)
    with running_matcher(config) as matcher:
        publisher = _publish(zmq_context, matcher.endpoint, [t.message for t in scene.tracklets])
        n = len(scene.tracklets)
        wait_until(lambda: _all_acked(publisher, n), 60, "all acks")
        wait_until(lambda: _decided(redis_client, n), 60, "association")
        time.sleep(1.5)  # at least one re-clustering pass over the final state
        publisher.close(1.0)
    return matcher


def _write_topology(scene, folder: Path) -> str:
    """The scene's camera topology as the YAML file a user would write (JSON is YAML)."""
    topology = scene.topology
    path = folder / "topology.yaml"
    path.write_text(json.dumps({"strict": topology.strict, "transits": [
        {"from": a, "to": b, "min_s": lo, "max_s": hi, "symmetric": False}
        for (a, b), (lo, hi) in topology.transits.items()]}))
    return str(path)


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def test_wrong_descriptor_size_is_rejected_by_ack(redis_client, zmq_context) -> None:
    scene = generate_scene(num_people=2, distractors=0, seed=3)
    good = scene.tracklets[0].message
    bad = TrackletMessage(camera_id="cam9", track_id=1, start_time=good.start_time, end_time=good.end_time,
                          num_frames=3, descriptor=np.ones(7, np.float32), model_name=good.model_name,
                          model_version=good.model_version)
    with running_matcher(matcher_config(_url(redis_client))) as matcher:
        publisher = _publish(zmq_context, matcher.endpoint, [good])
        wait_until(lambda: _all_acked(publisher, 1), 20, "the first ack")
        publisher.publish(bad)
        wait_until(lambda: publisher.stats().rejected == 1, 20, "the rejection")
        assert publisher.close(1.0).acked == 1
    assert redis_client.hget(KEYS.stats, "rejected:descriptor_dim") == b"1"
    assert not redis_client.exists(KEYS.tracklet(bad.message_id))


# ------------------------------------------------------------------------------- crash safety


def _matcher_process(redis_url: str, port: int, log: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "keyreid_stream", "matcher", "--redis", redis_url,
               "--listen", f"tcp://127.0.0.1:{port}", "--http", "", "association.recluster_every_s=0", *extra]
    env = dict(os.environ, KEYREID_API_TOKEN="")
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)


def test_sigkill_and_restart_store_every_tracklet_exactly_once(redis_client, zmq_context, tmp_path) -> None:
    messages = [t.message for t in generate_scene(num_people=400, distractors=200, seed=4).tracklets]
    n, port, log = len(messages), free_port(), tmp_path / "matcher.log"
    process = _matcher_process(_url(redis_client), port, log)
    try:
        publisher = _publish(zmq_context, f"tcp://127.0.0.1:{port}", messages, rate_per_s=150)
        wait_until(lambda: publisher.stats().acked >= n // 3, 60, "a third of the acks")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        acked_at_kill = publisher.stats().acked
        assert acked_at_kill < n, "the matcher was killed too late to test anything"
        stored_at_kill = redis_client.zcard(KEYS.by_ingest)
        process = _matcher_process(_url(redis_client), port, log)
        wait_until(lambda: _all_acked(publisher, n), 90, "all acks after the restart")
        stats = publisher.close(1.0)
        wait_until(lambda: _decided(redis_client, n), 60, "association")
    finally:
        process.terminate()
        process.wait(20)
    assert (stats.acked, stats.rejected, stats.dropped) == (n, 0, 0)
    ids = [m.message_id for m in messages]
    assert redis_client.zcard(KEYS.by_ingest) == n and redis_client.xlen(KEYS.stream) == n
    assert int(redis_client.hget(KEYS.stats, "stored")) == n
    assert all(redis_client.exists(KEYS.tracklet(i)) for i in ids[:: max(1, n // 50)])
    _assert_consistent(redis_client, ids)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert stored_at_kill >= acked_at_kill  # nothing acknowledged was missing from Redis


def test_redis_restart_mid_stream(redis_server_factory, zmq_context, tmp_path) -> None:
    server = redis_server_factory(persistence="aof", port=free_port(), data_dir=tmp_path / "redis",
                                  extra_args=["--appendfsync", "always"])
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    messages = [t.message for t in generate_scene(num_people=300, distractors=100, seed=5).tracklets]
    n = len(messages)
    try:
        with running_matcher(matcher_config(server.url)) as matcher:
            publisher = _publish(zmq_context, matcher.endpoint, messages, rate_per_s=200)
            wait_until(lambda: publisher.stats().acked >= n // 3, 60, "a third of the acks")
            server.kill()  # a crash: no shutdown save; the AOF (fsync always) has every acknowledged write
            time.sleep(1.5)
            assert publisher.stats().acked < n
            server.start()
            wait_until(lambda: _all_acked(publisher, n), 90, "all acks after the Redis restart")
            wait_until(lambda: _decided(client, n), 60, "association")
            stats = publisher.close(1.0)
        assert (stats.acked, stats.dropped) == (n, 0)
        assert client.zcard(KEYS.by_ingest) == n and client.xlen(KEYS.stream) == n
        _assert_consistent(client, [m.message_id for m in messages])
        assert matcher.report.ingest.redis_retries > 0
    finally:
        client.close()


# ------------------------------------------------------------------------------------ bad input


def _malformed(valid: bytes, index: int, rng: np.random.Generator) -> list[bytes]:
    """One of ten kinds of bad frame (as the frames a DEALER sends)."""
    kind = index % 10
    if kind == 0:
        return [rng.bytes(int(rng.integers(1, 300)))]
    if kind == 1:
        return [b""]
    if kind == 2:
        return [valid[: len(valid) - 5]]
    if kind == 3:
        return [pickle.dumps({"camera_id": "cam1", "descriptor": [0.1] * 8})]
    if kind == 4:
        return [valid.replace(b"schema_version\x01", b"schema_version\x02", 1)]
    if kind == 5:
        return [valid[: len(valid) - 4] + np.float32(np.nan).tobytes()]
    if kind == 6:
        return [wire.WIRE_MAGIC + b"\xff" * (wire.MAX_MESSAGE_BYTES + 512 * 1024)]
    if kind == 7:
        return [valid, b"second frame"]
    if kind == 8:
        return [b'{"camera_id": "cam1", "descriptor": [1, 2, 3]}']
    return [valid[:8] + b"\xc1" * (len(valid) - 8)]  # msgpack's never-used byte


def test_a_thousand_malformed_messages_leave_the_matcher_serving(redis_client, zmq_context, caplog) -> None:
    scene = generate_scene(num_people=10, distractors=5, seed=6)
    valid = [t.message for t in scene.tracklets]
    rng = np.random.default_rng(0)
    caplog.set_level(logging.WARNING, logger="keyreid_stream.matcher.ingest")
    http = f"127.0.0.1:{free_port()}"
    with running_matcher(matcher_config(_url(redis_client), http=http)) as matcher:
        dealer = zmq_context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(matcher.endpoint)
        template = wire.encode(valid[0])
        for i in range(1000):
            dealer.send_multipart(_malformed(template, i, rng))
        publisher = _publish(zmq_context, matcher.endpoint, valid)
        wait_until(lambda: _all_acked(publisher, len(valid)), 60, "the valid messages' acks")
        wait_until(lambda: matcher_rejections(redis_client) >= 1000, 30, "1000 counted rejections")
        # rejections with a readable id were answered with their code
        answers = []
        while dealer.poll(200):
            answers.append(wire.decode_ack(dealer.recv()))
        dealer.close()
        publisher.close(1.0)
        health = json.loads(urllib.request.urlopen(f"http://{http}/health", timeout=10).read())
        stats = json.loads(urllib.request.urlopen(f"http://{http}/stats", timeout=10).read())
    assert health["status"] == "ok", health
    assert sum(stats["rejected"].values()) == 1000 and stats["stored"] == len(valid), stats
    assert matcher_rejections(redis_client) == 1000
    assert {a.status for a in answers} == {"truncated", "schema_version", "non_finite", "multipart"}
    assert all(a.message_id == valid[0].message_id for a in answers)
    assert redis_client.zcard(KEYS.by_ingest) == len(valid)
    warnings = [r.getMessage() for r in caplog.records if "rejected a worker message" in r.getMessage()]
    codes = {"bad_magic", "truncated", "schema_version", "non_finite", "oversized", "multipart",
             "malformed_header"}
    assert sorted(w.split("(")[1].split(")")[0] for w in warnings) == sorted(codes)  # once per cause


def matcher_rejections(client: redis.Redis) -> int:
    stats = client.hgetall(KEYS.stats)
    return sum(int(v) for k, v in stats.items() if k.startswith(b"rejected:"))


# ---------------------------------------------------------------------------- several matchers


def test_several_matchers_share_one_redis(redis_client, zmq_context, tmp_path) -> None:
    scene = generate_scene(seed=7)
    cameras = sorted({t.message.camera_id for t in scene.tracklets})
    configs = [matcher_config(_url(redis_client), topology=_write_topology(scene, tmp_path)) for _ in range(3)]
    routes = {camera: i % 3 for i, camera in enumerate(cameras)}  # each worker talks to one matcher
    by_matcher = [[t.message for t in scene.tracklets if routes[t.message.camera_id] == i] for i in range(3)]
    n = len(scene.tracklets)
    with ExitStack() as stack:
        first = stack.enter_context(running_matcher(configs[0]))  # started first: it takes the lease
        wait_until(lambda: redis_client.get(KEYS.lease) is not None, 10, "a lease owner")
        owner = redis_client.get(KEYS.lease)
        others = [stack.enter_context(running_matcher(config)) for config in configs[1:]]
        publishers = [_publish(zmq_context, m.endpoint, part, rate_per_s=100)
                      for m, part in zip([first, *others], by_matcher)]
        wait_until(lambda: publishers[0].stats().acked >= len(by_matcher[0]) // 2, 60, "half of the first")
        first.stop()  # the lease holder stops halfway (and releases its lease): another one takes over
        wait_until(lambda: redis_client.get(KEYS.lease) not in (None, owner), 10, "a new lease owner")
        again = stack.enter_context(running_matcher(configs[0]))  # restarted on the same port
        for publisher, part in zip(publishers, by_matcher):
            count = len(part)
            wait_until(lambda p=publisher, c=count: _all_acked(p, c), 90, "all acks")
        wait_until(lambda: _decided(redis_client, n), 60, "association")
        time.sleep(1.5)
        for publisher in publishers:
            publisher.close(1.0)
    reports = [first.report, again.report, *(m.report for m in others)]
    decided = [r.association.decided for r in reports]
    assert sum(decided) == n and decided[0] > 0 and sum(decided[1:]) > 0, decided  # exactly once, two deciders
    assert sum(r.ingest.stored for r in reports) == n
    _assert_consistent(redis_client, [t.message.message_id for t in scene.tracklets])
    precision, recall = _quality(redis_client, scene)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_retention_deletes_old_tracklets_while_running(redis_client, zmq_context) -> None:
    from dataclasses import replace

    from keyreid_stream.matcher.config import RetentionConfig

    scene = generate_scene(num_people=5, distractors=2, seed=8)
    config = replace(matcher_config(_url(redis_client)), retention=RetentionConfig(max_age_s=1.0, every_s=0.2))
    with running_matcher(config) as matcher:
        publisher = _publish(zmq_context, matcher.endpoint, [t.message for t in scene.tracklets])
        wait_until(lambda: _all_acked(publisher, len(scene.tracklets)), 30, "all acks")
        publisher.close(1.0)
        wait_until(lambda: redis_client.zcard(KEYS.by_ingest) == 0, 30, "retention")
        wait_until(lambda: redis_client.zcard(KEYS.identities) == 0, 10, "empty identities removed")
    assert matcher.report.association.expired == len(scene.tracklets)
    assert not any(redis_client.exists(KEYS.tracklet(t.message.message_id)) for t in scene.tracklets)


def test_killed_lease_holder_is_replaced_by_another_process(redis_client, zmq_context, tmp_path) -> None:
    """Two matcher processes; the one deciding identities is killed with SIGKILL (no release): its lease expires,
    the other takes over from the shared cursor, and every tracklet is still decided exactly once."""
    scene = generate_scene(num_people=150, distractors=50, seed=9)
    messages = [t.message for t in scene.tracklets]
    cameras = sorted({m.camera_id for m in messages})
    parts = [[m for m in messages if cameras.index(m.camera_id) % 2 == i] for i in range(2)]
    ports, log = [free_port(), free_port()], tmp_path / "matchers.log"
    extra = ("association.lease_ttl_s=2", f"association.topology={_write_topology(scene, tmp_path)}")
    url = _url(redis_client)
    first = _matcher_process(url, ports[0], log, *extra)
    processes = [first]
    try:
        wait_until(lambda: redis_client.get(KEYS.lease) is not None, 60, "the first matcher's lease")
        holder = redis_client.get(KEYS.lease)
        processes.append(_matcher_process(url, ports[1], log, *extra))
        publishers = [_publish(zmq_context, f"tcp://127.0.0.1:{port}", part, rate_per_s=100)
                      for port, part in zip(ports, parts)]
        wait_until(lambda: redis_client.zcard(KEYS.by_ingest) >= len(messages) // 3, 60, "a third stored")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        wait_until(lambda: redis_client.get(KEYS.lease) not in (None, holder), 30, "the lease taken over")
        processes.append(_matcher_process(url, ports[0], log, *extra))  # the killed one comes back
        for publisher, part in zip(publishers, parts):
            count = len(part)
            wait_until(lambda p=publisher, c=count: _all_acked(p, c), 90, "all acks")
        wait_until(lambda: _decided(redis_client, len(messages)), 60, "association")
        for publisher in publishers:
            publisher.close(1.0)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(20)
    ids = [m.message_id for m in messages]
    _assert_consistent(redis_client, ids)
    decided = []
    for gid in redis_client.zrange(KEYS.identities, 0, -1):
        entries = [json.loads(e) for e in redis_client.lrange(KEYS.identity_log(gid.decode()), 0, -1)]
        decided += [e["tracklet"] for e in entries if e["kind"] in ("new", "appearance", "continuation")]
    assert sorted(decided) == sorted(ids)  # one decision per tracklet, whoever made it
    precision, recall = _quality(redis_client, scene)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)

