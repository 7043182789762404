"""Online association as a loop: whichever matcher holds the lease decides the identities of new tracklets.

Each :meth:`Associator.step` renews (or tries to take) the lease, reads the next stored tracklets from the
Redis stream after the shared cursor, decides them with :func:`~keyreid_stream.matcher.association.association.associate`
against the tracklets of the association window, and commits decisions and cursor in one transaction fenced
by the lease. Every ``recluster_every_s`` it runs :func:`~keyreid_stream.matcher.association.recluster.recluster` over
the recent tracklets and commits the merges and splits the same way; retention also runs here, so that only
one process deletes.

The window is cached in memory while the lease is held: every tracklet this process decided is in the cache,
and older ones are loaded from Redis once, when a batch reaches further back than what is loaded. Losing the
lease clears the cache (another matcher may then change identities), and so does a new store epoch (Redis lost its
data, see :meth:`~keyreid_stream.matcher.state.store.TrackletStore.recover`).
"""

from __future__ import annotations

import logging
import time
from collections import ChainMap
from dataclasses import dataclass, replace

from keyreid_stream.matcher.association.association import AssociationParams, associate
from keyreid_stream.matcher.association.calibration import calibrate
from keyreid_stream.matcher.association.recluster import recluster
from keyreid_stream.matcher.association.topology import Topology
from keyreid_stream.matcher.state.lease import Lease
from keyreid_stream.matcher.state.records import Decision, StoredTracklet
from keyreid_stream.matcher.state.store import LeaseLost, StoreReset, TrackletStore

__all__ = ["AssociationStats", "Associator"]

logger = logging.getLogger(__name__)


@dataclass
class AssociationStats:
    decided: int = 0
    new_identities: int = 0
    joined: int = 0
    continued: int = 0
    merges: int = 0
    splits: int = 0
    expired: int = 0
    lease_losses: int = 0
    last_decision_s: float = 0.0  # wall time of the last committed batch


REESTIMATE_AFTER = 32  # threshold_rule: tracklets between two estimates (each compares up to 1,500 of them)


class Associator:
    """One matcher's share of association: active only while it holds the lease."""

    def __init__(self, store: TrackletStore, lease: Lease, params: AssociationParams, *,
                 topology: Topology | None = None, batch_size: int = 64, max_candidates: int = 50_000,
                 recluster_every_s: float = 30.0, recluster_horizon_s: float = 900.0,
                 retention_s: float = 0.0, retention_every_s: float = 60.0) -> None:
        self.store, self.lease, self.params, self.topology = store, lease, params, topology
        self.batch_size, self.max_candidates = batch_size, max_candidates
        self.recluster_every_s, self.recluster_horizon_s = recluster_every_s, recluster_horizon_s
        self.retention_s, self.retention_every_s = retention_s, retention_every_s
        self.stats = AssociationStats()
        self._cache: dict[str, StoredTracklet] = {}
        self._loaded_from = float("inf")  # the cache holds every decided tracklet ending at or after this time
        self._latest_end = float("-inf")
        self._last_recluster = time.monotonic()
        self._last_retention = 0.0
        self._epoch = store.epoch
        self._tuned, self._since_tuned = params, REESTIMATE_AFTER  # the threshold rule's latest estimate

    @property
    def leading(self) -> bool:
        return self.lease.held

    def step(self) -> int:
        """One cycle; returns how many tracklets were decided (0 when following or idle)."""
        was_leading = self.lease.held
        if not self.lease.refresh():
            self._forget()
            return 0
        if not was_leading or self._epoch != self.store.epoch:
            self._epoch = self.store.epoch
            self._forget()
        try:
            decided = self._decide_next()
            self._maybe_recluster()
            self._maybe_expire()
        except LeaseLost:
            self.stats.lease_losses += 1
            self.lease.lost()
            self._forget()
            return 0
        except StoreReset as exc:  # Redis lost the data: wait for the index thread's recovery (a new epoch)
            logger.debug("association paused: %s", exc)
            self._forget()
            return 0
        return decided

    def _forget(self) -> None:
        self._cache.clear()
        self._loaded_from, self._latest_end = float("inf"), float("-inf")

    # ------------------------------------------------------------------------------- deciding

    def _decide_next(self) -> int:
        entries = self.store.read_stream(self.store.cursor(), self.batch_size)
        if not entries:
            return 0
        loaded = self.store.load([tracklet_id for _, tracklet_id in entries])
        new = [t for t in loaded if t.identity is None and t.tracklet_id not in self._cache]
        decisions = []
        if new:
            known = self._window(min(t.start_time for t in new) - self.params.window_s)
            params = self._thresholds([*known, *new], len(new))
            decisions = associate(new, known, params, self.topology, self.store.allocate_identity)
        lookup = ChainMap({t.tracklet_id: t for t in new}, self._cache)
        self.store.commit_decisions(decisions, lookup, entries[-1][0], self.lease.token)
        self._remember(new, decisions)
        return len(decisions)

    def _remember(self, new: list[StoredTracklet], decisions: list[Decision]) -> None:
        identity = {d.tracklet_id: d.identity for d in decisions}
        for tracklet in new:
            self._cache[tracklet.tracklet_id] = _with_identity(tracklet, identity[tracklet.tracklet_id])
            self._latest_end = max(self._latest_end, tracklet.end_time)
        for decision in decisions:
            self.stats.decided += 1
            kind = {"new": "new_identities", "appearance": "joined", "continuation": "continued"}[decision.kind]
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)
        self.stats.last_decision_s = time.time()
        self._prune()

    def _thresholds(self, tracklets: list[StoredTracklet], arrived: int) -> AssociationParams:
        """The thresholds to decide with: the configured ones, or those ``params.threshold_rule`` sets on
        ``tracklets``, estimated again once :data:`REESTIMATE_AFTER` tracklets arrived since the last estimate."""
        if self.params.threshold_rule == "fixed":
            return self.params
        self._since_tuned += arrived
        if self._since_tuned >= REESTIMATE_AFTER:
            self._tuned, self._since_tuned = calibrate(tracklets, self.params, topology=self.topology), 0
        return self._tuned

    def _window(self, since: float) -> list[StoredTracklet]:
        """Decided tracklets ending at or after ``since`` (loading what the cache does not cover yet)."""
        if since < self._loaded_from:
            ids = [i for i in self.store.ids_ending_after(since, self.max_candidates) if i not in self._cache]
            for tracklet in self.store.load(ids):
                if tracklet.identity is not None:
                    self._cache[tracklet.tracklet_id] = tracklet
            self._loaded_from = since
        return [t for t in self._cache.values() if t.end_time >= since]

    def _prune(self) -> None:
        """Keep the cache to the association window and the re-clustering horizon behind the latest tracklet."""
        keep_from = self._latest_end - 2 * max(self.params.window_s, self.recluster_horizon_s)
        if len(self._cache) > self.max_candidates or keep_from > self._loaded_from + self.params.window_s:
            self._cache = {k: t for k, t in self._cache.items() if t.end_time >= keep_from}
            self._loaded_from = max(self._loaded_from, keep_from)

    # ---------------------------------------------------------------------------- corrections

    def _maybe_recluster(self) -> None:
        if not self.recluster_every_s or time.monotonic() - self._last_recluster < self.recluster_every_s:
            return
        self._last_recluster = time.monotonic()
        recent = [t for t in self._cache.values() if t.end_time >= self._latest_end - self.recluster_horizon_s]
        changes = recluster(recent, self._thresholds(recent, 0), self.topology, self.store.allocate_identity)
        if not changes:
            return
        self.store.commit_changes(changes, self._cache, self.lease.token)
        for change in changes:
            moved = set(change.tracklets) & self._cache.keys()
            if change.kind == "merge":  # every member moves, also those older than the horizon
                moved |= {k for k, t in self._cache.items() if t.identity == change.source}
            for tracklet_id in moved:
                self._cache[tracklet_id] = _with_identity(self._cache[tracklet_id], change.target)
            if change.kind == "merge":
                self.stats.merges += 1
            else:
                self.stats.splits += 1
            logger.info("re-clustering: %s %s -> %s (score %.3f, %d tracklets)", change.kind, change.source,
                        change.target, change.score, len(change.tracklets))

    def _maybe_expire(self) -> None:
        if not self.retention_s or time.monotonic() - self._last_retention < self.retention_every_s:
            return
        self._last_retention = time.monotonic()
        cutoff = time.time() - self.retention_s
        while (removed := self.store.expire(cutoff)) > 0:
            self.stats.expired += removed
        self._cache = {k: t for k, t in self._cache.items() if t.ingested_at >= cutoff}


def _with_identity(tracklet: StoredTracklet, identity: str) -> StoredTracklet:
    return replace(tracklet, identity=identity)
