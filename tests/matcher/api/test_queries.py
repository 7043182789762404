"""The matcher's read side against a real Redis: identities (timeline, merges), tracklets, links, cameras, stats,
health, descriptor search (including tracklets deleted by retention) and validation of every parameter."""

from __future__ import annotations

import itertools
import struct

import cv2
import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from keyreid_stream.matcher.api.answers import BadQuery, NotFound, Unavailable, Visit
from keyreid_stream.matcher.api.queries import MatcherQueries, merge_visits

T0 = 1_700_000_000.0
DIM = 16
PERSONS = ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11"]
PERSON_IDENTITY = {"p1": "g1", "p2": "g2", "p3": "g3", "p4": "g4", "p5": "g6", "p6": "g7", "p7": "g8", "p8": "g9",
                   "p9": "g10", "p10": "g11"}


def basis(person: str) -> list[float]:
    vector = [0.0] * DIM
    vector[PERSONS.index(person)] = 1.0
    return vector


@pytest.mark.parametrize(("spans", "expected"), [
    ([], []),
    ([("a", 0, 10)], [("a", 0, 10, 1)]),
    ([("a", 0, 10), ("a", 5, 15)], [("a", 0, 15, 2)]),  # overlap: one visit
    ([("a", 0, 10), ("a", 10, 12)], [("a", 0, 12, 2)]),  # touching (closed intervals): one visit
    ([("a", 0, 10), ("a", 11, 12)], [("a", 0, 10, 1), ("a", 11, 12, 1)]),
    ([("a", 0, 20), ("a", 2, 5), ("a", 6, 30)], [("a", 0, 30, 3)]),  # contained span, then extended
    ([("b", 20, 30), ("a", 0, 10), ("a", 40, 50), ("a", 5, 15)],  # unordered input, interleaved cameras
     [("a", 0, 15, 2), ("b", 20, 30, 1), ("a", 40, 50, 1)]),
    ([("a", 0, 10), ("b", 5, 8), ("a", 9, 20)], [("a", 0, 20, 2), ("b", 5, 8, 1)]),  # another camera in between
])
def test_merge_visits(spans: list[tuple[str, float, float]], expected: list[tuple[str, float, float, int]]) -> None:
    assert merge_visits(spans) == [Visit(*visit) for visit in expected]


def test_identity_timeline(populated, queries: MatcherQueries) -> None:
    view = queries.identity("g1")
    assert (view.requested_id, view.identity_id, view.merged_from) == ("g1", "g1", [])
    assert view.cameras == ["cam-a", "cam-b"] and view.num_tracklets == 4 and not view.truncated
    assert (view.first_seen, view.last_seen) == (T0, T0 + 50)
    assert [populated.name_of(t.tracklet_id) for t in view.tracklets] == ["p1_a1", "p1_a1b", "p1_b", "p1_a2"]
    assert [(v.camera_id, v.start_time - T0, v.end_time - T0, v.tracklets) for v in view.visits] == [
        ("cam-a", 0, 15, 2), ("cam-b", 20, 30, 1), ("cam-a", 40, 50, 1)]
    timeline = {entry.camera_id: [(v.start_time - T0, v.end_time - T0) for v in entry.visits]
                for entry in view.timeline}
    assert timeline == {"cam-a": [(0, 15), (40, 50)], "cam-b": [(20, 30)]}
    first = view.tracklets[0]
    assert (first.decision_kind, first.has_thumbnail, first.camera_id, first.track_id) == ("new", True, "cam-a", 1)
    assert view.tracklets[2].matched_tracklet == populated.ids["p1_a1"]
    assert [entry.kind for entry in view.log] == ["appearance", "appearance", "continuation", "new"]  # newest first
    assert view.log[0].tracklet == populated.ids["p1_a2"] and view.log[0].camera == "cam-a"


@pytest.mark.parametrize("asked", ["g5", "g4"])
def test_merged_identity_answers_its_target(populated, queries: MatcherQueries, asked: str) -> None:
    view = queries.identity(asked)
    assert (view.requested_id, view.identity_id) == (asked, "g4")
    assert view.merged_from == (["g5"] if asked == "g5" else [])
    assert {populated.name_of(t.tracklet_id) for t in view.tracklets} == {"p4_a", "p4_b", "p4_c", "p4_c2"}
    assert view.cameras == ["cam-a", "cam-b", "cam-c"]
    merge = next(entry for entry in view.log if entry.kind == "merge")
    assert (merge.source, merge.target, merge.score) == ("g5", "g4", 0.77)
    assert set(merge.tracklets or []) == {populated.ids["p4_c"], populated.ids["p4_c2"]}


def test_merge_chain_and_cycle(populated, queries: MatcherQueries) -> None:
    client, keys = populated.client, populated.keys
    client.hset(keys.identity("g20"), "merged_into", "g5")  # g20 -> g5 -> g4
    view = queries.identity("g20")
    assert (view.identity_id, view.merged_from) == ("g4", ["g20", "g5"])
    client.hset(keys.identity("g30"), "merged_into", "g31")
    client.hset(keys.identity("g31"), "merged_into", "g30")
    with pytest.raises(NotFound, match="merge chain"):
        queries.identity("g30")
    client.hset(keys.identity("g40"), "merged_into", "g41")  # merged into an identity retention removed
    with pytest.raises(NotFound, match="no longer exists"):
        queries.identity("g40")


def test_truncated_identity(populated) -> None:
    small = MatcherQueries(populated.client, populated.keys, populated.index, max_results=2)
    view = small.identity("g1")
    assert view.num_tracklets == 4 and view.truncated
    assert [populated.name_of(t.tracklet_id) for t in view.tracklets] == ["p1_b", "p1_a2"]  # the most recent


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, ["g11", "g10", "g9", "g8", "g7", "g6", "g4", "g3", "g2", "g1"]),
    ({"limit": 3}, ["g11", "g10", "g9"]),
    ({"since": T0 + 260}, ["g11", "g10", "g9", "g8", "g7", "g6", "g4"]),
    ({"until": T0 + 60}, ["g1", "g2", "g3"]),  # ordered by their latest tracklet ending within the range
    ({"since": T0 + 30, "until": T0 + 40}, ["g2", "g1"]),
    ({"camera": "cam-c"}, ["g11", "g8", "g4", "g2", "g3"]),
    ({"camera": "cam-c", "since": T0 + 20, "until": T0 + 100}, ["g2"]),
    ({"camera": "cam-a", "until": T0 + 10}, ["g1"]),
    ({"camera": "cam-z"}, []),
])
def test_identities(queries: MatcherQueries, kwargs: dict, expected: list[str]) -> None:
    assert [s.identity_id for s in queries.identities(**kwargs)] == expected


def test_identity_summaries(queries: MatcherQueries) -> None:
    summaries = {s.identity_id: s for s in queries.identities()}
    assert (summaries["g4"].num_tracklets, summaries["g4"].first_seen, summaries["g4"].last_seen) == (
        4, T0 + 200, T0 + 260)
    in_range = queries.identities(camera="cam-a", until=T0 + 20)
    assert [(s.identity_id, s.last_seen) for s in in_range] == [("g1", T0 + 15)]


def test_tracklet_decision_and_link(populated, queries: MatcherQueries) -> None:
    view = queries.tracklet(populated.ids["p1_b"])
    assert (view.camera_id, view.track_id, view.start_time, view.end_time) == ("cam-b", 7, T0 + 20, T0 + 30)
    assert (view.space, view.dim, view.model_name, view.model_version) == ("testnet@1/16", 16, "testnet", "1")
    assert view.identity == "g1" and view.has_thumbnail and view.ingested_at == T0 + 1000
    decision = view.decision
    assert decision is not None and (decision.kind, decision.score) == ("appearance", 0.8)
    assert decision.matched_tracklet == populated.ids["p1_a1"] and decision.decided_at == T0 + 1002
    assert [(c.identity, c.score, c.tracklet_id) for c in decision.candidates] == [("g2", 0.41, populated.ids["p2_b"])]
    assert [(r.identity, r.reason) for r in decision.rejected] == [("g3", "transit_time")]
    assert view.link is not None
    assert (view.link.tracklet_id, view.link.camera_id, view.link.kind) == (populated.ids["p1_a1"], "cam-a",
                                                                            "appearance")
    merged = queries.tracklet(populated.ids["p4_c2"])
    assert merged.identity == "g4"  # re-clustering moved it


def test_unassociated_tracklet(populated, queries: MatcherQueries) -> None:
    view = queries.tracklet(populated.ids["p11_new"])
    assert view.identity is None and view.decision is None and view.link is None and not view.has_thumbnail


def test_thumbnail(populated, queries: MatcherQueries) -> None:
    assert queries.thumbnail(populated.ids["p2_b"]) == populated.thumbnails["p2_b"]
    with pytest.raises(NotFound, match="has no thumbnail"):
        queries.thumbnail(populated.ids["p2_c"])
    with pytest.raises(NotFound, match="not found"):
        queries.thumbnail("f" * 32)


@pytest.mark.parametrize(("camera", "start", "end", "expected"), [
    ("cam-b", None, None, ["p1_b", "p2_c", "p1_a2", "p4_b"]),  # linked from cam-b or to cam-b, by end time
    ("cam-b", T0 + 31, T0 + 50, ["p2_c", "p1_a2"]),
    ("cam-b", T0 + 226, None, []),
    ("cam-c", None, T0 + 100, ["p2_c", "p2_c2"]),
    ("cam-a", T0 + 200, T0 + 300, ["p4_b"]),
])
def test_links(populated, queries: MatcherQueries, camera: str, start: float | None, end: float | None,
               expected: list[str]) -> None:
    links = queries.links(camera, start, end)
    assert [populated.name_of(link.tracklet_id) for link in links] == expected
    for link in links:
        assert camera in (link.camera_id, link.linked_camera)
        assert (start or 0) <= link.end_time <= (end or float("inf"))


def test_link_fields(populated, queries: MatcherQueries) -> None:
    (link,) = queries.links("cam-c", T0 + 30, T0 + 40)
    assert (link.camera_id, link.identity, link.linked_camera, link.score, link.kind) == (
        "cam-c", "g2", "cam-b", 0.8, "appearance")
    assert link.linked_tracklet == populated.ids["p2_b"]


def test_cameras(queries: MatcherQueries) -> None:
    cameras = {c.camera_id: c for c in queries.cameras()}
    assert {name: c.tracklets for name, c in cameras.items()} == {"cam-a": 8, "cam-b": 5, "cam-c": 7}
    heartbeat = cameras["cam-b"].last_heartbeat
    assert heartbeat is not None and (heartbeat.sequence, heartbeat.timestamp, heartbeat.received_at) == (
        9, T0 + 500, T0 + 501)
    assert heartbeat.counters == {"frames": 900}
    assert cameras["cam-c"].last_heartbeat is None


def test_stats(populated, queries: MatcherQueries) -> None:
    stats = queries.stats()
    assert (stats.received, stats.stored, stats.duplicates, stats.rejected) == (22, 20, 1, {"truncated": 1})
    assert (stats.tracklets, stats.identities, stats.spaces) == (20, 10, {"testnet@1/16": 20})
    assert stats.lease_owner == "lease-token" and stats.association_lag_s == 0.0
    assert stats.assoc_cursor == stats.stream_last_id
    last_ms = int(stats.stream_last_id.split("-")[0])
    populated.client.set(populated.keys.cursor, f"{last_ms - 2500}-3")
    assert queries.stats().association_lag_s == 2.5


def test_stats_of_an_empty_store(redis_client) -> None:
    from keyreid_stream.matcher.index import GalleryIndex
    from keyreid_stream.matcher.state.keys import Keys

    stats = MatcherQueries(redis_client, Keys(), GalleryIndex()).stats()
    assert (stats.tracklets, stats.identities, stats.stored, stats.spaces) == (0, 0, 0, {})
    assert stats.association_lag_s is None and stats.stream_last_id is None and stats.lease_owner is None


@pytest.mark.parametrize(("status", "expected", "problem"), [
    (None, "ok", None),
    (lambda: {"index_ready": True, "role": "leader"}, "ok", None),
    (lambda: {"index_ready": False}, "degraded", "index_ready is false"),
    (lambda: {"redis_connected": False}, "degraded", "redis_connected is false"),
    (lambda: 1 / 0, "degraded", "service status failed: ZeroDivisionError"),
])
def test_health(populated, status, expected: str, problem: str | None) -> None:
    health = MatcherQueries(populated.client, populated.keys, populated.index, status=status).health()
    assert health.status == expected and health.redis
    assert health.problems == ([problem] if problem else [])
    if status is not None and expected == "ok":
        assert health.service["role"] == "leader"


def test_health_without_redis(populated, redis_server_factory) -> None:
    server = redis_server_factory()
    client = redis.Redis.from_url(server.url, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        server.stop()
        health = MatcherQueries(client, populated.keys, populated.index).health()
        assert (health.status, health.redis) == ("degraded", False)
        assert health.problems == ["redis unreachable: ConnectionError"]
        with pytest.raises(redis.ConnectionError):
            MatcherQueries(client, populated.keys, populated.index).stats()
    finally:
        client.close()


@pytest.mark.parametrize("person", list(PERSON_IDENTITY))
def test_search_descriptor_finds_the_person(queries: MatcherQueries, person: str) -> None:
    hits = queries.search_descriptor([3.0 * v for v in basis(person)], k=3)  # any scale: the query is normalised
    assert len(hits) == 3 and hits[0].identity_id == PERSON_IDENTITY[person]
    assert hits[0].score > 0.95 and all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert len({hit.identity_id for hit in hits}) == 3


def test_search_groups_tracklets_by_identity(populated, queries: MatcherQueries) -> None:
    best = queries.search_descriptor(basis("p4"), k=1, space="testnet@1/16")[0]
    assert (best.identity_id, best.tracklets_hit) == ("g4", 4)  # merged: g5's tracklets count for g4
    assert populated.name_of(best.best_tracklet).startswith("p4_")
    assert best.best_camera == populated.client.hget(populated.keys.tracklet(best.best_tracklet), "camera").decode()
    found = {hit.identity_id for hit in queries.search_descriptor(basis("p11"), k=50)}
    assert "g5" not in found and len(found) == 10  # the unassociated tracklet has no identity to return


def test_search_skips_and_unindexes_deleted_tracklets(populated, queries: MatcherQueries) -> None:
    for name in ("p5",):  # as retention does: the hash goes, the index still holds the vector
        populated.client.delete(populated.keys.tracklet(populated.ids[name]))
    assert populated.ids["p5"] in populated.index
    hits = queries.search_descriptor(basis("p5"), k=3)
    assert "g6" not in {hit.identity_id for hit in hits} and len(hits) == 3
    assert populated.ids["p5"] not in populated.index and len(populated.index) == 19


@pytest.mark.parametrize(("call", "message"), [
    (lambda q: q.identity("x12"), "bad identity id"),
    (lambda q: q.identity("g"), "bad identity id"),
    (lambda q: q.identity("g1; DROP"), "bad identity id"),
    (lambda q: q.tracklet("ABCDEF" * 5 + "00"), "bad tracklet id"),
    (lambda q: q.tracklet("0" * 31), "bad tracklet id"),
    (lambda q: q.thumbnail("../etc/passwd"), "bad tracklet id"),
    (lambda q: q.identities(camera="cam a"), "bad camera id"),
    (lambda q: q.identities(camera="c" * 65), "bad camera id"),
    (lambda q: q.identities(limit=0), "limit must be"),
    (lambda q: q.identities(limit=51), "limit must be"),
    (lambda q: q.identities(since=T0 + 10, until=T0), "is after"),
    (lambda q: q.identities(since=float("nan")), "finite"),
    (lambda q: q.links("cam-a", T0 + 10, T0 + 5), "is after"),
    (lambda q: q.links("cam/a"), "bad camera id"),
    (lambda q: q.links("cam-a", limit=-1), "limit must be"),
    (lambda q: q.search_descriptor([]), "non-empty"),
    (lambda q: q.search_descriptor([[1.0] * 16]), "1-D"),
    (lambda q: q.search_descriptor([float("nan")] + [0.0] * 15), "NaN or infinite"),
    (lambda q: q.search_descriptor([float("inf")] + [0.0] * 15), "NaN or infinite"),
    (lambda q: q.search_descriptor([0.0] * 16), "all zeros"),
    (lambda q: q.search_descriptor(["a"] * 16), "list of numbers"),
    (lambda q: q.search_descriptor([1.0] * 8, space="testnet@1/16"), "dimension 8"),
    (lambda q: q.search_descriptor([1.0] * 16, k=0), "k must be"),
    (lambda q: q.search_descriptor([1.0] * 16, k=51), "k must be"),
])
def test_bad_queries(queries: MatcherQueries, call, message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        call(queries)


@pytest.mark.parametrize(("call", "message"), [
    (lambda q: q.identity("g12345"), "identity g12345 not found"),
    (lambda q: q.tracklet("e" * 32), "not found"),
    (lambda q: q.search_descriptor([1.0] * 8), "no descriptor space of dimension 8"),
    (lambda q: q.search_descriptor([1.0] * 16, space="other@1/16"), "unknown descriptor space"),
])
def test_not_found(queries: MatcherQueries, call, message: str) -> None:
    with pytest.raises(NotFound, match=message):
        call(queries)


def test_search_image_needs_an_embedder_and_an_image(populated, queries: MatcherQueries) -> None:
    with pytest.raises(Unavailable, match="image search is not enabled"):
        queries.search_image(b"\xff\xd8\xff\xd9")

    def embed(image: np.ndarray) -> tuple[str, np.ndarray]:
        raise AssertionError("an undecodable image must not reach the model")

    with_model = MatcherQueries(populated.client, populated.keys, populated.index, embed_crop=embed)
    huge_png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", 100_000, 100_000) + b"\x08\x02\x00\x00\x00"
    huge_jpeg = cv2.imencode(".jpg", np.zeros((4100, 4100, 3), np.uint8))[1].tobytes()
    frame = cv2.imencode(".png", np.zeros((576, 768, 3), np.uint8))[1].tobytes()  # a whole camera frame
    for bad, message in ((b"", "not a JPEG or PNG"), (b"GIF89a...", "not a JPEG or PNG"),
                         (frame, "768x576 pixels, wider than tall: a whole frame or a scene, not a person crop"),
                         (b"\x89PNG\r\n\x1a\n truncated", "not IHDR"), (b"\xff\xd8\xff\xe0 broken", "no frame header"),
                         (huge_png, "100000 x 100000 pixels"), (huge_jpeg, "4100 x 4100 pixels")):
        with pytest.raises(BadQuery, match=message):
            with_model.search_image(bad)


def test_truncated_index_candidates_are_rescored_with_full_descriptors(redis_client) -> None:
    """``index.max_dim``: the index sees only the first values (here both tracklets look the same to it); the
    answer ranks and scores them with the cosine of their full stored descriptors."""
    from keyreid_stream.contracts import TrackletMessage
    from keyreid_stream.matcher.index import GalleryIndex
    from keyreid_stream.matcher.state.keys import Keys
    from keyreid_stream.matcher.state.records import Decision, normalize
    from keyreid_stream.matcher.state.store import TrackletStore

    keys = Keys("rescore")
    store = TrackletStore(redis_client, keys)
    head = [1.0, 0.0]
    vectors = {"gA": np.array(head + [1.0, 0.0], np.float32), "gB": np.array(head + [0.0, 1.0], np.float32)}
    messages = {gid: TrackletMessage(camera_id="cam1", track_id=i, start_time=T0, end_time=T0 + 1, num_frames=2,
                                     descriptor=vector, model_name="m", model_version="1")
                for i, (gid, vector) in enumerate(vectors.items())}
    store.ingest(list(messages.values()))
    redis_client.set(keys.lease, "t")
    loaded = {t.tracklet_id: t for t in store.load([m.message_id for m in messages.values()])}
    store.commit_decisions([Decision(m.message_id, gid, "new", 0.0) for gid, m in messages.items()], loaded, None,
                           "t")
    index = GalleryIndex(max_dim=2)
    index.add("m@1/4", list(loaded), np.stack([t.descriptor for t in loaded.values()]))
    query = np.array(head + [0.0, 1.0], np.float32)
    hits = MatcherQueries(redis_client, keys, index).search_descriptor(query, k=2)
    assert [h.identity_id for h in hits] == ["gB", "gA"]
    expected = [float(normalize(vectors[g]) @ normalize(query)) for g in ("gB", "gA")]
    assert [h.score for h in hits] == pytest.approx(expected, abs=1e-5)  # 1.0 and 0.5, not 1.0 and 1.0
