"""TrackletStore and Lease against a real redis-server: idempotent ingest, fencing, corrections, retention."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.lease import Lease
from keyreid_stream.matcher.state.records import Change, Decision
from keyreid_stream.matcher.state.store import LeaseLost, StoreError, TrackletStore

KEYS = Keys("test")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"


def message(camera: str = "cam1", track: int = 1, start: float = 100.0, dim: int = 8, seed: int = 0,
            model: str = "m", thumbnail: bytes | None = None) -> TrackletMessage:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return TrackletMessage(camera_id=camera, track_id=track, start_time=start, end_time=start + 5.0, num_frames=10,
                           descriptor=vector, model_name=model, model_version="1", thumbnail_jpeg=thumbnail)


@pytest.fixture
def store(redis_client) -> TrackletStore:
    store = TrackletStore(redis_client, KEYS)
    store.check_layout()
    return store


def test_ingest_stores_every_field_once(store: TrackletStore, redis_client) -> None:
    first = message(thumbnail=JPEG)
    assert store.ingest([first, message(track=2, seed=1)], now=50.0) == ["stored", "stored"]
    assert store.ingest([first]) == ["duplicate"]
    fields = redis_client.hgetall(KEYS.tracklet(first.message_id))
    assert fields[b"camera"] == b"cam1" and fields[b"track"] == b"1" and float(fields[b"end"]) == 105.0
    assert fields[b"space"] == b"m@1/8" and fields[b"thumb"] == b"1" and float(fields[b"ingested"]) == 50.0
    assert np.array_equal(np.frombuffer(fields[b"desc"], "<f4"), first.descriptor)
    assert redis_client.get(KEYS.thumbnail(first.message_id)) == JPEG
    assert redis_client.xlen(KEYS.stream) == 2 and redis_client.zcard(KEYS.by_ingest) == 2
    assert redis_client.zscore(KEYS.camera_tracklets("cam1"), first.message_id) == 105.0
    stats = redis_client.hgetall(KEYS.stats)
    assert stats[b"stored"] == b"2" and stats[b"duplicates"] == b"1"
    [loaded] = store.load([first.message_id])
    assert loaded.camera_id == "cam1" and loaded.identity is None
    assert np.isclose(np.linalg.norm(loaded.descriptor), 1.0)


@pytest.mark.parametrize(("expected_dim", "dims", "statuses"), [
    (None, (8, 8, 4), ["stored", "stored", "descriptor_dim"]),  # the first tracklet of a model fixes its size
    (8, (8, 4), ["stored", "descriptor_dim"]),
    (4, (8,), ["descriptor_dim"]),
])
def test_descriptor_size_is_checked_per_model(redis_client, expected_dim, dims, statuses) -> None:
    store = TrackletStore(redis_client, KEYS, expected_dim=expected_dim)
    batch = [message(track=i, dim=dim, seed=i) for i, dim in enumerate(dims)]
    assert store.ingest(batch) == statuses
    assert int(redis_client.hget(KEYS.stats, "rejected:descriptor_dim")) == statuses.count("descriptor_dim")
    # another model may have another size
    assert store.ingest([message(track=9, dim=4, model="other")]) == [
        "descriptor_dim" if expected_dim not in (None, 4) else "stored"]


def test_layout_version_is_checked(store: TrackletStore, redis_client) -> None:
    redis_client.hset(KEYS.meta, "layout", "999")
    with pytest.raises(StoreError, match="layout 999"):
        store.check_layout()


def test_heartbeats_and_counters(store: TrackletStore, redis_client) -> None:
    store.record_heartbeat(Heartbeat(camera_id="cam7", timestamp=1.0, sequence=3, counters={"frames": 9}))
    store.count({"received": 2, "rejected:truncated": 1, "zero": 0})
    record = json.loads(redis_client.hget(KEYS.cameras, "cam7"))
    assert record["sequence"] == 3 and record["counters"] == {"frames": 9}
    assert redis_client.hget(KEYS.stats, "rejected:truncated") == b"1"
    assert redis_client.hget(KEYS.stats, "zero") is None


def _decide(store: TrackletStore, messages: list[TrackletMessage], identities: list[str], token: str) -> dict:
    loaded = {t.tracklet_id: t for t in store.load([m.message_id for m in messages])}
    decisions = [Decision(m.message_id, gid, "new" if i == 0 else "appearance", 0.9 if i else 0.0,
                          matched_tracklet=None if i == 0 else messages[0].message_id)
                 for i, (m, gid) in enumerate(zip(messages, identities))]
    store.commit_decisions(decisions, loaded, store.last_stream_id(), token)
    return loaded


def test_decisions_are_fenced_by_the_lease(store: TrackletStore, redis_client) -> None:
    a, b = message("cam1", 1), message("cam2", 2, seed=1)
    store.ingest([a, b])
    lease = Lease(redis_client, KEYS, ttl_s=5)
    assert lease.refresh()
    with pytest.raises(LeaseLost):
        _decide(store, [a, b], ["g1", "g1"], token="someone-else")
    assert redis_client.hget(KEYS.tracklet(a.message_id), "identity") is None
    _decide(store, [a, b], ["g1", "g1"], token=lease.token)
    assert redis_client.hget(KEYS.tracklet(b.message_id), "identity") == b"g1"
    assert redis_client.hget(KEYS.tracklet(b.message_id), "link_to") == a.message_id.encode()
    assert set(redis_client.zrange(KEYS.members("g1"), 0, -1)) == {a.message_id.encode(), b.message_id.encode()}
    assert redis_client.zscore(KEYS.identities, "g1") == 105.0
    assert store.cursor() == store.last_stream_id()
    # the link is indexed on both cameras
    for camera in ("cam1", "cam2"):
        assert redis_client.zrange(KEYS.camera_links(camera), 0, -1) == [b.message_id.encode()]
    log = [json.loads(x) for x in redis_client.lrange(KEYS.identity_log("g1"), 0, -1)]
    assert [entry["kind"] for entry in log] == ["new", "appearance"]


def test_lease_takeover_after_expiry(redis_client) -> None:
    first, second = Lease(redis_client, KEYS, ttl_s=1), Lease(redis_client, KEYS, ttl_s=1)
    assert first.refresh() and not second.refresh()
    assert first.refresh()  # renewal
    time.sleep(1.1)
    assert second.refresh() and second.owner() == second.token
    assert not first.refresh()
    second.release()
    assert first.refresh()


def test_merge_and_split(store: TrackletStore, redis_client) -> None:
    a, b, c = message("cam1", 1), message("cam2", 2, seed=1), message("cam3", 3, seed=2)
    store.ingest([a, b, c])
    redis_client.set(KEYS.lease, "t")
    loaded = _decide(store, [a, b], ["g1", "g1"], "t") | _decide(store, [c], ["g2"], "t")
    # a merge moves every member of the source, also those it does not list (older than the horizon)
    store.commit_changes([Change("merge", "g2", "g1", 0.8, ())], loaded, "t")
    assert redis_client.hget(KEYS.tracklet(c.message_id), "identity") == b"g1"
    assert redis_client.hget(KEYS.identity("g2"), "merged_into") == b"g1"
    assert redis_client.zscore(KEYS.identities, "g2") is None
    assert redis_client.zcard(KEYS.members("g1")) == 3
    store.commit_changes([Change("split", "g1", "g3", 0.1, (b.message_id,))], loaded, "t")
    assert redis_client.hget(KEYS.tracklet(b.message_id), "identity") == b"g3"
    assert redis_client.hget(KEYS.identity("g3"), "split_from") == b"g1"
    assert redis_client.zcard(KEYS.members("g1")) == 2


def test_retention_deletes_old_tracklets_and_empty_identities(store: TrackletStore, redis_client) -> None:
    old, new = message("cam1", 1, thumbnail=JPEG), message("cam2", 2, seed=1)
    store.ingest([old], now=1000.0)
    store.ingest([new], now=5000.0)
    redis_client.set(KEYS.lease, "t")
    _decide(store, [old], ["g1"], "t")
    _decide(store, [new], ["g2"], "t")
    assert store.expire(ingested_before=2000.0) == 1
    assert not redis_client.exists(KEYS.tracklet(old.message_id), KEYS.thumbnail(old.message_id),
                                   KEYS.identity("g1"), KEYS.members("g1"))
    assert redis_client.zrange(KEYS.identities, 0, -1) == [b"g2"]
    assert redis_client.zrange(KEYS.by_ingest, 0, -1) == [new.message_id.encode()]
    assert redis_client.zcard(KEYS.camera_tracklets("cam1")) == 0
    assert store.expire(ingested_before=2000.0) == 0
