"""The association loop (Associator) against a real redis-server, one step at a time: the window cache (loaded from
Redis once, again only when a batch reaches further back), its pruning, and what losing the lease does."""

from __future__ import annotations

import numpy as np
import pytest

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.leader import Associator
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.lease import Lease
from keyreid_stream.matcher.state.store import TrackletStore

from matcher_harness import vec

KEYS = Keys("leader")


class CountingStore(TrackletStore):
    """The real store, counting the window loads; ``steal`` hands the lease to another matcher between the lease's
    renewal and the commit (as when this process stalls past the lease's TTL)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.window_loads: list[float] = []
        self.steal = False

    def ids_ending_after(self, time_s: float, limit: int) -> list[str]:
        self.window_loads.append(time_s)
        return super().ids_ending_after(time_s, limit)

    def read_stream(self, after: str, count: int) -> list[tuple[str, str]]:
        if self.steal:
            self.client.set(self.keys.lease, "another-matcher", px=60_000)
        return super().read_stream(after, count)


def tracklet(camera: str, start: float, degrees: float, track: int = 1) -> TrackletMessage:
    return TrackletMessage(camera_id=camera, track_id=track, start_time=start, end_time=start + 5.0, num_frames=10,
                           descriptor=vec(degrees), model_name="m", model_version="1")


@pytest.fixture
def store(redis_client) -> CountingStore:
    store = CountingStore(redis_client, KEYS)
    store.check_layout()
    return store


def associator(store: TrackletStore, window_s: float = 60.0, horizon_s: float = 60.0) -> Associator:
    return Associator(store, Lease(store.client, KEYS, ttl_s=30.0), AssociationParams(window_s=window_s),
                      recluster_every_s=0.0, recluster_horizon_s=horizon_s)


def decide(assoc: Associator, store: TrackletStore, *messages: TrackletMessage) -> list[str | None]:
    """Ingest, run one step, and return the identities Redis holds for the messages."""
    assert store.ingest(list(messages)) == ["stored"] * len(messages)
    assoc.step()
    return [t.identity for t in store.load([m.message_id for m in messages])]


def test_a_new_leader_loads_the_window_once(store: CountingStore) -> None:
    first = associator(store)
    [person] = decide(first, store, tracklet("cam-a", 1000.0, 0))
    assert person is not None and store.window_loads == [940.0]
    first.lease.release()
    second = associator(store)  # takes over with an empty cache: the window comes from Redis
    assert decide(second, store, tracklet("cam-b", 1010.0, 5)) == [person]
    assert store.window_loads == [940.0, 950.0]
    assert decide(second, store, tracklet("cam-c", 1020.0, 3)) == [person]  # covered by the cache
    assert store.window_loads == [940.0, 950.0]
    decide(second, store, tracklet("cam-d", 900.0, 90))  # reaches further back than what is loaded
    assert store.window_loads == [940.0, 950.0, 840.0]
    [other] = decide(second, store, tracklet("cam-e", 2000.0, 0))  # nothing of the person within the window
    assert other not in (None, person)


def test_the_cache_is_pruned_to_the_window_and_horizon(store: CountingStore) -> None:
    assoc = associator(store, window_s=10.0, horizon_s=10.0)
    first = tracklet("cam-a", 0.0, 0)
    [person] = decide(assoc, store, first)
    later = [tracklet(f"cam-{n}", 100.0 * n, 90, track=n) for n in range(1, 5)]
    identities = [decide(assoc, store, message)[0] for message in later]
    assert len(set(identities)) == 4 and person not in identities  # 100 s apart: never within the window
    assert set(assoc._cache) == {later[-1].message_id}  # ends before 405 - 2 * 10 s are gone
    assert assoc._loaded_from == 405.0 - 20.0
    loads = len(store.window_loads)
    # a late tracklet of the first person: its window was pruned from the cache, so it is loaded again from Redis
    assert decide(assoc, store, tracklet("cam-z", 12.0, 2)) == [person]
    assert len(store.window_loads) == loads + 1


def test_a_lease_taken_between_steps_stops_deciding(store: CountingStore, redis_client) -> None:
    assoc = associator(store)
    decide(assoc, store, tracklet("cam-a", 1000.0, 0))
    cursor = store.cursor()
    redis_client.set(KEYS.lease, "another-matcher", px=60_000)
    assert decide(assoc, store, tracklet("cam-b", 1010.0, 0)) == [None]
    assert not assoc.leading and assoc._cache == {} and store.cursor() == cursor
    assert assoc.stats.lease_losses == 0  # never held during a commit: it just follows


def test_a_lease_lost_during_the_commit_writes_nothing(store: CountingStore, redis_client) -> None:
    assoc = associator(store)
    [person] = decide(assoc, store, tracklet("cam-a", 1000.0, 0))
    cursor = store.cursor()
    store.steal = True
    late = tracklet("cam-b", 1010.0, 0)
    assert decide(assoc, store, late) == [None]  # the fenced commit failed: no identity, no cursor
    assert assoc.stats.lease_losses == 1 and not assoc.leading and assoc._cache == {}
    assert store.cursor() == cursor and redis_client.hget(KEYS.tracklet(late.message_id), "decision") is None
    store.steal, loads = False, len(store.window_loads)
    redis_client.delete(KEYS.lease)  # the other matcher went away
    assoc.step()
    assert assoc.leading and store.load([late.message_id])[0].identity == person
    assert len(store.window_loads) == loads + 1  # the forgotten window was read again from Redis
    assert np.isfinite(assoc.stats.last_decision_s)
