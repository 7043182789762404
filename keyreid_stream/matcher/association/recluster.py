"""Re-clustering of associated tracklets: pure logic, no Redis, no sockets.

* :func:`recluster` -- the periodic correction pass: split off tracks that do not fit their identity, merge
  identities by average linkage.
* :func:`apply_changes` -- applies the result of :func:`recluster` to an identity map.

Descriptors are L2-normalised, so a cosine similarity is a dot product; tracklets of different descriptor spaces
are never compared. A *unit* is all tracklets with one (camera_id, track_id, identity): a worker may publish one
track as several consecutive segments. Transit constraints
(:class:`~keyreid_stream.matcher.association.topology.Topology`) are checked on unit spans (the union of the segments), so
how a track was segmented does not change what the topology allows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.topology import Topology, TransitTable
from keyreid_stream.matcher.state.records import Change, StoredTracklet, normalize

__all__ = ["apply_changes", "recluster"]

log = logging.getLogger(__name__)

_ROW_CHUNK = 1024  # recluster: rows per block of the identity-by-identity linkage matrix


# --------------------------------------------------------------------------- re-clustering


@dataclass
class _Units:
    """The units (camera, track_id, identity) of one descriptor space; ``ident`` indexes ``names`` (which grows
    with the identities split off)."""

    desc: np.ndarray  # (n, D) renormalised mean descriptor
    start: np.ndarray
    end: np.ndarray
    cam: np.ndarray
    track: np.ndarray
    ident: np.ndarray  # index into names
    tracklets: list[tuple[str, ...]]
    cameras: list[str]
    names: list[str]

    @classmethod
    def build(cls, tracklets: Sequence[StoredTracklet]) -> _Units:
        keys: dict[tuple[str, int, str], int] = {}
        unit = np.asarray([keys.setdefault((t.camera_id, t.track_id, t.identity), len(keys))  # type: ignore[arg-type]
                           for t in tracklets])
        order = np.argsort(unit, kind="stable")
        first = np.flatnonzero(np.r_[True, np.diff(unit[order]) != 0])
        desc = np.stack([tracklets[i].descriptor for i in order]).astype(np.float32)
        start = np.fromiter((tracklets[i].start_time for i in order), float, len(order))
        end = np.fromiter((tracklets[i].end_time for i in order), float, len(order))
        members = np.split(order, first[1:])
        cameras = sorted({key[0] for key in keys})
        names = sorted({key[2] for key in keys})
        camera_code = {name: i for i, name in enumerate(cameras)}
        name_code = {name: i for i, name in enumerate(names)}
        return cls(normalize(np.add.reduceat(desc, first, axis=0)), np.minimum.reduceat(start, first),
                   np.maximum.reduceat(end, first), np.asarray([camera_code[k[0]] for k in keys], np.int64),
                   np.asarray([k[1] for k in keys], np.int64), np.asarray([name_code[k[2]] for k in keys], np.int64),
                   [tuple(tracklets[i].tracklet_id for i in m) for m in members], cameras, names)


def _split(units: _Units, params: AssociationParams, new_identity: Callable[[], str],
           used: set[str]) -> list[Change]:
    """Split off, worst first, the units of an identity (>= 3 units) whose mean similarity to its units on other
    cameras is below ``split_threshold``; the identity's oldest unit stays."""
    changes: list[Change] = []
    order = np.argsort(units.ident, kind="stable")
    for active in np.split(order, np.flatnonzero(np.diff(units.ident[order])) + 1):
        code = int(units.ident[active[0]]) if active.size else -1
        oldest = active[np.lexsort((active, units.start[active]))[0]] if active.size else -1
        while active.size >= 3:
            other = units.cam[active][:, None] != units.cam[active][None, :]
            sims = units.desc[active] @ units.desc[active].T
            count = other.sum(axis=1)
            mean = np.where(count > 0, (sims * other).sum(axis=1) / np.maximum(count, 1), np.inf)
            mean[active == oldest] = np.inf
            worst = int(np.argmin(mean))
            if not mean[worst] < params.split_threshold:
                break
            name = new_identity()
            if not isinstance(name, str) or not name or name in used:
                raise ValueError(f"new_identity() must return a new non-empty identity string, got {name!r}")
            used.add(name)
            units.names.append(name)
            unit = active[worst]
            units.ident[unit] = len(units.names) - 1
            changes.append(Change("split", units.names[code], name, float(mean[worst]), units.tracklets[unit]))
            active = np.delete(active, worst)
    return changes


def _group_sums(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct labels and the sum of the rows of ``values`` per label."""
    order = np.argsort(labels, kind="stable")
    first = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    return labels[order][first], np.add.reduceat(values[order], first, axis=0)


def _identity_links(units: _Units, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identity x identity (``local`` codes): the sum and the count of the similarities of their cross-camera unit
    pairs, from per-identity descriptor sums (all pairs minus the same-camera pairs)."""
    values = np.c_[units.desc, np.ones(len(local), np.float32)]  # the last column counts units
    _, sums = _group_sums(values, local)
    total, count = sums[:, :-1] @ sums[:, :-1].T, np.outer(sums[:, -1], sums[:, -1])
    for camera in np.unique(units.cam):
        on_camera = units.cam == camera
        ids, sums = _group_sums(values[on_camera], local[on_camera])
        total[np.ix_(ids, ids)] -= sums[:, :-1] @ sums[:, :-1].T
        count[np.ix_(ids, ids)] -= np.outer(sums[:, -1], sums[:, -1])
    return total, np.rint(count)  # float32: K x K matrices are the memory of a re-clustering pass


def _compatible(units: _Units, a: np.ndarray, b: np.ndarray, window_s: float, table: TransitTable | None) -> bool:
    """Whether the units ``a`` and ``b`` may be one person: no overlap of two tracks on one camera and, with a
    topology, every cross-camera pair within ``window_s`` allowed."""
    gap = np.maximum(units.start[b][None, :] - units.end[a][:, None], units.start[a][:, None] - units.end[b][None, :])
    cross = units.cam[a][:, None] != units.cam[b][None, :]
    if (~cross & (gap <= 0) & (units.track[a][:, None] != units.track[b][None, :])).any():
        return False
    if table is None:
        return True
    allowed = table.allows(units.cam[a], units.start[a][:, None], units.end[a][:, None],
                           units.cam[b], units.start[b], units.end[b])
    return not (cross & (gap <= window_s) & ~allowed).any()


def _merge(units: _Units, params: AssociationParams, topology: Topology | None,
           members: dict[str, list[str]]) -> list[Change]:
    """Agglomerative merging by average linkage over cross-camera unit pairs, best feasible pair first."""
    codes = np.unique(units.ident)
    if codes.size < 2:
        return []
    names = [units.names[c] for c in codes]
    local = np.searchsorted(codes, units.ident)
    total, count = _identity_links(units, local)
    order = np.argsort(local, kind="stable")
    groups = dict(enumerate(np.split(order, np.flatnonzero(np.diff(local[order])) + 1)))
    first_start, last_end = np.full(codes.size, np.inf), np.full(codes.size, -np.inf)
    np.minimum.at(first_start, local, units.start)
    np.maximum.at(last_end, local, units.end)
    alive = np.ones(codes.size, bool)
    table = topology.table(units.cameras) if topology is not None else None

    def linkage(i: np.ndarray | slice) -> np.ndarray:
        near = np.maximum(first_start[i, None] - last_end[None, :], first_start[None, :] - last_end[i, None])
        ok = (count[i] > 0) & (near <= params.window_s) & alive[None, :] & alive[i, None]
        result: np.ndarray = np.where(ok, total[i] / np.maximum(count[i], 1), np.float32(-np.inf))
        return result

    best = np.concatenate([linkage(slice(low, low + _ROW_CHUNK)) for low in range(0, codes.size, _ROW_CHUNK)])
    np.fill_diagonal(best, -np.inf)  # symmetric, -inf where merging is out of the question
    row_arg = np.argmax(best, axis=1)  # the best partner of each identity, kept up to date
    row_max = best[np.arange(codes.size), row_arg]

    def refresh(rows: np.ndarray) -> None:
        row_arg[rows] = np.argmax(best[rows], axis=1)
        row_max[rows] = best[rows, row_arg[rows]]

    changes: list[Change] = []
    while True:
        i = int(np.argmax(row_max))
        j, score = int(row_arg[i]), float(row_max[i])
        if not score >= params.merge_threshold:
            return changes
        if not _compatible(units, groups[i], groups[j], params.window_s, table):
            best[i, j] = best[j, i] = -np.inf
            refresh(np.asarray([i, j]))
            continue
        target, source = sorted((i, j), key=lambda c: (first_start[c], names[c]))
        for matrix in (total, count):
            matrix[target] += matrix[source]
            matrix[:, target] = matrix[target]
        groups[target] = np.r_[groups[target], groups.pop(source)]
        first_start[target] = min(first_start[target], first_start[source])
        last_end[target] = max(last_end[target], last_end[source])
        alive[source] = False
        best[source], best[:, source] = -np.inf, -np.inf
        best[target] = best[:, target] = linkage(np.asarray([target]))[0]
        best[target, target] = -np.inf
        stale = np.flatnonzero((row_arg == source) | (row_arg == target))
        better = best[:, target] > row_max
        row_arg[better], row_max[better] = target, best[better, target]
        refresh(np.r_[stale, target, source])
        moved = members.pop(names[source], [])
        members.setdefault(names[target], []).extend(moved)
        changes.append(Change("merge", names[source], names[target], score, tuple(moved)))


def recluster(tracklets: Sequence[StoredTracklet], params: AssociationParams, topology: Topology | None,
              new_identity: Callable[[], str]) -> list[Change]:
    """Corrections to the identities of ``tracklets`` (all associated), to be applied in order.

    Per descriptor space, on units (the tracklets of one camera, track and identity, mean descriptor):

    * split: of an identity with >= 3 units, a unit (never the oldest) whose mean similarity to the identity's
      units on other cameras is below ``split_threshold`` moves to a new identity, worst first;
    * merge: repeatedly the pair of identities with the highest average-linkage similarity (mean over their
      cross-camera unit pairs) >= ``merge_threshold``, if their spans are within ``window_s``, no two tracks of
      one camera overlap and the topology allows every cross-camera pair of units within ``window_s``; the
      identity that starts first (ties: the smaller name) is the target.

    ``Change.tracklets`` lists the moved tracklets among ``tracklets`` (a merge moves the whole source identity).
    Cost: the K x K identity linkage matrices (float32) of the identities of one space.
    """
    if any(t.identity is None for t in tracklets):
        raise ValueError("recluster: every tracklet needs an identity")
    members: dict[str, list[str]] = defaultdict(list)
    by_space: dict[str, list[StoredTracklet]] = defaultdict(list)
    for tracklet in tracklets:
        members[tracklet.identity].append(tracklet.tracklet_id)  # type: ignore[index]
        by_space[tracklet.space].append(tracklet)
    used = set(members)
    changes: list[Change] = []
    for group in by_space.values():
        units = _Units.build(group)
        splits = _split(units, params, new_identity, used)
        for change in splits:
            moved = set(change.tracklets)
            members[change.source] = [t for t in members[change.source] if t not in moved]
            members[change.target] = list(change.tracklets)
        changes += splits + _merge(units, params, topology, members)
    log.debug("recluster of %d tracklets: %d changes", len(tracklets), len(changes))
    return changes


def apply_changes(identities: Mapping[str, str], changes: Sequence[Change]) -> dict[str, str]:
    """``identities`` (tracklet id -> identity) after ``changes`` (in order): a merge moves every tracklet of the
    source, a split the listed tracklets (which must belong to the source)."""
    result = dict(identities)
    for change in changes:
        if change.kind == "merge":
            for tracklet_id, identity in result.items():
                if identity == change.source:
                    result[tracklet_id] = change.target
            continue
        for tracklet_id in change.tracklets:
            if result.get(tracklet_id) != change.source:
                raise ValueError(f"split of {change.source!r}: tracklet {tracklet_id} is not in it")
            result[tracklet_id] = change.target
    return result
