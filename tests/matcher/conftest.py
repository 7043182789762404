"""Fixtures of the matcher's read side: a populated Redis state written through the real store, and API servers.

``populated`` ingests 20 tracklets of 3 cameras with known people through :class:`TrackletStore` (one of them
never associated), commits association decisions (appearance links, continuations, candidates and a rejection),
merges identity g5 into g4, records heartbeats of two cameras, and builds the vector index from the stored
tracklets. Its descriptors are one basis vector per person plus a little noise, so a person's basis vector finds
that person's identity first.

``populated`` empties the database for each test; ``private`` (one test) and ``shared`` (one module, read only)
use fresh key prefixes instead, so that module-scoped API servers (``api_server``, ``secured_server``) serve one
``shared`` scenario to many tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.matcher.index import GalleryIndex
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.records import Change, Decision, descriptor_space
from keyreid_stream.matcher.state.store import TrackletStore, load_tracklets

T0 = 1_700_000_000.0
DIM = 16
MODEL, VERSION = "testnet", "1"
SPACE = descriptor_space(MODEL, VERSION, DIM)
TOKEN = "lease-token"
API_TOKEN = "s3cret-token"

# name: (person, camera, track, start offset, end offset, thumbnail). Person p4 is first split over g4 and g5.
TRACKLETS = {
    "p1_a1": ("p1", "cam-a", 1, 0, 10, True), "p1_a1b": ("p1", "cam-a", 1, 5, 15, False),
    "p1_b": ("p1", "cam-b", 7, 20, 30, True), "p1_a2": ("p1", "cam-a", 3, 40, 50, False),
    "p2_b": ("p2", "cam-b", 2, 2, 12, True), "p2_c": ("p2", "cam-c", 4, 25, 35, False),
    "p2_c2": ("p2", "cam-c", 5, 60, 70, False),
    "p3_c": ("p3", "cam-c", 6, 5, 8, False), "p3_a": ("p3", "cam-a", 9, 100, 110, False),
    "p4_a": ("p4", "cam-a", 11, 200, 210, False), "p4_b": ("p4", "cam-b", 12, 215, 225, False),
    "p4_c": ("p4", "cam-c", 13, 230, 240, False), "p4_c2": ("p4", "cam-c", 14, 250, 260, False),
    "p5": ("p5", "cam-a", 20, 300, 305, False), "p6": ("p6", "cam-b", 21, 310, 315, False),
    "p7": ("p7", "cam-c", 22, 320, 325, False), "p8": ("p8", "cam-a", 23, 330, 335, False),
    "p9": ("p9", "cam-b", 24, 340, 345, False), "p10": ("p10", "cam-c", 25, 350, 355, False),
    "p11_new": ("p11", "cam-a", 26, 400, 405, False),  # stored, never associated
}
PERSONS = ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10", "p11"]
# name: (identity, kind, matched tracklet name, candidates as (identity, score, tracklet name), rejected)
DECISIONS = {
    "p1_a1": ("g1", "new", None, (), ()), "p1_a1b": ("g1", "continuation", "p1_a1", (), ()),
    "p1_b": ("g1", "appearance", "p1_a1", (("g2", 0.41, "p2_b"),), (("g3", "transit_time"),)),
    "p1_a2": ("g1", "appearance", "p1_b", (), ()),
    "p2_b": ("g2", "new", None, (), ()), "p2_c": ("g2", "appearance", "p2_b", (), ()),
    "p2_c2": ("g2", "appearance", "p2_c", (), ()),
    "p3_c": ("g3", "new", None, (), ()), "p3_a": ("g3", "appearance", "p3_c", (), ()),
    "p4_a": ("g4", "new", None, (), ()), "p4_b": ("g4", "appearance", "p4_a", (), ()),
    "p4_c": ("g5", "new", None, (), ()), "p4_c2": ("g5", "appearance", "p4_c", (), ()),
    "p5": ("g6", "new", None, (), ()), "p6": ("g7", "new", None, (), ()), "p7": ("g8", "new", None, (), ()),
    "p8": ("g9", "new", None, (), ()), "p9": ("g10", "new", None, (), ()), "p10": ("g11", "new", None, (), ()),
}
SCORES = {"new": 0.0, "continuation": 1.0, "appearance": 0.8}


def person_vector(person: str) -> np.ndarray:
    vector = np.zeros(DIM, np.float32)
    vector[PERSONS.index(person)] = 1.0
    return vector


def tiny_jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (16, 8, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


@dataclass
class Scenario:
    """The populated state: the client, keys, index and store, tracklet ids and thumbnails by name."""

    client: object
    keys: Keys
    index: GalleryIndex
    store: TrackletStore
    ids: dict[str, str] = field(default_factory=dict)
    thumbnails: dict[str, bytes] = field(default_factory=dict)

    def name_of(self, tracklet_id: str) -> str:
        return {v: k for k, v in self.ids.items()}[tracklet_id]


def populate(client: object, keys: Keys | None = None, *, t0: float = T0) -> Scenario:
    """The scenario under ``keys``; ``t0``: the time the tracklets' times count from (0: media time), while the
    matcher's own times (ingest, decisions, heartbeats) stay on the wall clock from T0 on."""
    keys = keys or Keys()
    store = TrackletStore(client, keys)  # type: ignore[arg-type]
    store.check_layout()
    rng = np.random.default_rng(7)
    scenario = Scenario(client, keys, GalleryIndex(), store)
    messages = []
    for position, (name, (person, camera, track, start, end, thumb)) in enumerate(TRACKLETS.items()):
        descriptor = person_vector(person) + rng.normal(0, 0.05, DIM).astype(np.float32)
        jpeg = tiny_jpeg(position) if thumb else None
        message = TrackletMessage(camera, track, t0 + start, t0 + end, 10 + position, descriptor, MODEL, VERSION,
                                  message_id=f"{position + 1:032x}", thumbnail_jpeg=jpeg)
        messages.append(message)
        scenario.ids[name] = message.message_id
        if jpeg:
            scenario.thumbnails[name] = jpeg
    assert store.ingest(messages, now=T0 + 1000) == ["stored"] * len(messages)
    assert store.ingest(messages[:1], now=T0 + 1001) == ["duplicate"]
    store.count({"received": len(messages) + 2, "rejected:truncated": 1})
    for camera, sequence in (("cam-a", 5), ("cam-b", 9)):
        store.record_heartbeat(Heartbeat(camera, T0 + 500, sequence, {"frames": 100 * sequence}), now=T0 + 501)
    client.set(keys.lease, TOKEN)  # type: ignore[attr-defined]
    stored = load_tracklets(client, keys, list(scenario.ids.values()))  # type: ignore[arg-type]
    tracklets = {t.tracklet_id: t for t in stored}
    decisions = []
    for name, (gid, kind, matched, candidates, rejected) in DECISIONS.items():
        ids = scenario.ids
        decisions.append(Decision(ids[name], gid, kind, SCORES[kind], ids[matched] if matched else None,
                                  tuple((g, s, ids[t]) for g, s, t in candidates), rejected))
    client.set(keys.identity_counter, 11)  # type: ignore[attr-defined]
    store.commit_decisions(decisions, tracklets, store.last_stream_id(), TOKEN, now=T0 + 1002)
    moved = (scenario.ids["p4_c"], scenario.ids["p4_c2"])
    store.commit_changes([Change("merge", "g5", "g4", 0.77, moved)], tracklets, TOKEN, now=T0 + 1003)
    for space in {t.space for t in tracklets.values()}:
        chosen = [t for t in tracklets.values() if t.space == space]
        scenario.index.add(space, [t.tracklet_id for t in chosen], np.stack([t.descriptor for t in chosen]))
    return scenario


def drop(client: object, keys: Keys) -> None:
    """Delete every key under ``keys``' prefix."""
    names = list(client.scan_iter(match=f"{keys.root}:*", count=1000))  # type: ignore[attr-defined]
    if names:
        client.delete(*names)  # type: ignore[attr-defined]


_PREFIXES = itertools.count()


@pytest.fixture
def populated(redis_client: object) -> Scenario:
    """The scenario in an emptied database (function scope: tests may change it)."""
    return populate(redis_client)


@pytest.fixture(scope="module")
def module_redis(redis_server: object) -> Iterator[object]:
    """A client of the session's Redis that does NOT empty it: use fresh key prefixes (``private``, ``shared``)."""
    import redis

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def private(module_redis: object) -> Iterator[Scenario]:
    """The scenario under a fresh key prefix, for one test that may change it."""
    scenario = populate(module_redis, Keys(f"private{next(_PREFIXES)}"))
    yield scenario
    drop(module_redis, scenario.keys)


@pytest.fixture
def media(module_redis: object) -> Iterator[Scenario]:
    """The scenario on media time (tracklet times from 0, as files read faster than real time give them) under a
    fresh key prefix, for one test."""
    scenario = populate(module_redis, Keys(f"media{next(_PREFIXES)}"), t0=0.0)
    yield scenario
    drop(module_redis, scenario.keys)


@pytest.fixture(scope="module")
def shared(module_redis: object) -> Iterator[Scenario]:
    """The scenario under a fresh key prefix, shared by a module's tests: read it, never change it."""
    scenario = populate(module_redis, Keys(f"shared{next(_PREFIXES)}"))
    yield scenario
    drop(module_redis, scenario.keys)


def start_api(queries: object, **kwargs: object) -> object:
    from keyreid_stream.matcher.api.api import ApiServer, create_app

    return ApiServer(create_app(queries, **kwargs), "127.0.0.1", 0).start()  # type: ignore[arg-type]


@pytest.fixture
def serve() -> Iterator[Callable[..., object]]:
    """``serve(queries, **create_app_kwargs)`` -> a started ApiServer on a free port; all stopped at teardown."""
    servers: list[object] = []

    def start(queries: object, **kwargs: object) -> object:
        servers.append(start_api(queries, **kwargs))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()  # type: ignore[attr-defined]


@pytest.fixture
def queries(populated: Scenario) -> object:
    from keyreid_stream.matcher.api.queries import MatcherQueries

    return MatcherQueries(populated.client, populated.keys, populated.index, max_results=50)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shared_queries(shared: Scenario) -> object:
    from keyreid_stream.matcher.api.queries import MatcherQueries

    return MatcherQueries(shared.client, shared.keys, shared.index, max_results=50)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api_server(shared_queries: object) -> Iterator[object]:
    """The query API over the ``shared`` scenario, without a token (module scope)."""
    server = start_api(shared_queries)
    yield server
    server.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def secured_server(shared_queries: object) -> Iterator[object]:
    """The query API over the ``shared`` scenario with the bearer token :data:`API_TOKEN` (module scope)."""
    server = start_api(shared_queries, token=API_TOKEN)
    yield server
    server.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def crop_embedder() -> object:
    """Image search's embedder with the tiny random-weight re-ID model."""
    from keyreid_stream.inference.loading import load_embedding_model
    from keyreid_stream.matcher.api.search import CropEmbedder

    return CropEmbedder(load_embedding_model("keyreid_test"))


@pytest.fixture
def http(api_server: object) -> Iterator[object]:
    """An httpx client of ``api_server``."""
    import httpx

    with httpx.Client(base_url=api_server.url, timeout=10) as client:  # type: ignore[attr-defined]
        yield client
