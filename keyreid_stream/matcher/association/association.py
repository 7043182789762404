"""Cross-camera association of tracklets into global identities: pure logic, no Redis, no sockets.

* :func:`associate` -- the identity of each tracklet of a new batch: the continuation of a known track, the best
  feasible identity above the threshold, or a new identity. Tracklets of one camera that overlap in time are
  different people, so they are assigned one-to-one (Hungarian, mutual best or greedy).
* :class:`AssociationParams` -- the parameters of association and of re-clustering.

The periodic correction pass (split and merge) is :mod:`keyreid_stream.matcher.association.recluster`; the camera
transit-time constraints are :mod:`keyreid_stream.matcher.association.topology`.

Descriptors are L2-normalised, so a cosine similarity is a dot product; tracklets of different descriptor spaces
are never compared. A *track* is all tracklets with one (camera_id, track_id): a worker may publish one track as
several consecutive segments. Transit constraints are checked on track spans (the union of the segments), so how
a track was segmented does not change what the topology allows.
"""

from __future__ import annotations

import logging
import operator
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy.optimize import linear_sum_assignment

from keyreid_stream.matcher.association.checks import finite_number, invalid
from keyreid_stream.matcher.association.topology import Topology, TransitTable
from keyreid_stream.matcher.state.records import Decision, StoredTracklet

__all__ = ["MAX_CANDIDATES", "MAX_REJECTED", "AssociationParams", "associate"]

log = logging.getLogger(__name__)

Assignment = Literal["hungarian", "mutual_best", "greedy"]
Linkage = Literal["max", "mean"]
ThresholdRule = Literal["fixed", "midpoint"]
MAX_CANDIDATES = 3  # Decision.candidates: the best feasible identities, best first
MAX_REJECTED = 8  # Decision.rejected: the best-scoring identities excluded by a constraint
_FORBIDDEN = 1e6  # Hungarian cost of a forbidden pair (never chosen: every row may stay unassigned at cost 0)
_REASONS = ("", "same_camera_overlap", "transit")


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class AssociationParams:
    """The association and re-clustering parameters (see :func:`associate` and
    :func:`~keyreid_stream.matcher.association.recluster.recluster`).

    ``threshold_rule``: "fixed" uses the thresholds as given; "midpoint" sets them from the tracklets the decision
    sees (:func:`~keyreid_stream.matcher.association.calibration.calibrate`, called by whoever runs the association).

    Invariants: ``window_s > 0``, ``0 < threshold <= 1``, ``0 < merge_threshold <= 1`` and
    ``-1 <= split_threshold < min(threshold, merge_threshold)`` (so a unit split off is never merged back).
    """

    window_s: float = 600.0
    threshold: float = 0.6
    assignment: Assignment = "hungarian"
    linkage: Linkage = "max"
    same_camera: bool = False
    merge_threshold: float = 0.7
    split_threshold: float = 0.35
    threshold_rule: ThresholdRule = "fixed"

    def __post_init__(self) -> None:
        owner = "AssociationParams"
        for name in ("window_s", "threshold", "merge_threshold", "split_threshold"):
            object.__setattr__(self, name, finite_number(owner, name, getattr(self, name)))
        if self.window_s <= 0:
            raise ValueError(f"{owner}.window_s: expected > 0, got {self.window_s}")
        for name in ("threshold", "merge_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{owner}.{name}: expected a cosine similarity in (0, 1], got {getattr(self, name)}")
        if not -1 <= self.split_threshold < min(self.threshold, self.merge_threshold):
            raise ValueError(f"{owner}.split_threshold: expected -1 <= split_threshold < min(threshold, "
                             f"merge_threshold) = {min(self.threshold, self.merge_threshold)}, "
                             f"got {self.split_threshold}")
        for name, allowed in (("assignment", get_args(Assignment)), ("linkage", get_args(Linkage)),
                              ("threshold_rule", get_args(ThresholdRule))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}.{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not isinstance(self.same_camera, bool):
            invalid(f"{owner}.same_camera: expected a bool, got {self.same_camera!r}")


# --------------------------------------------------------------------------- association


_FIELDS = operator.attrgetter("tracklet_id", "camera_id", "track_id", "start_time", "end_time", "descriptor")


class _Pool:
    """The tracklets of one descriptor space that new ones are compared with, as flat arrays: first the known
    ones sorted by identity (``base`` of them), then those decided in this call. ``track_*`` are per-track
    aggregates indexed by track code (the span of the track and its latest segment)."""

    def __init__(self, known: Sequence[StoredTracklet], capacity: int, dim: int) -> None:
        self.cameras: dict[str, int] = {}
        self.identities: dict[str, int] = {}
        self.tracks: dict[tuple[str, int], int] = {}
        codes = np.asarray([self.identities.setdefault(t.identity, len(self.identities))  # type: ignore[arg-type]
                            for t in known], np.int64)
        self.names = list(self.identities)
        order = np.argsort(codes, kind="stable")
        size = len(known) + capacity
        self.ids: list[str] = []
        self.desc = np.zeros((size, dim), np.float32)
        self.start, self.end = np.zeros(size), np.zeros(size)
        self.cam, self.track, self.tcode, self.ident = (np.zeros(size, np.int64) for _ in range(4))
        self.track_start, self.track_end = np.full(size, np.inf), np.full(size, -np.inf)
        self.track_last = np.full(size, -1, np.int64)
        self.size = 0
        self.add([known[i] for i in order], codes[order])
        self.base = self.size

    def camera(self, name: str) -> int:
        return self.cameras.setdefault(name, len(self.cameras))

    def identity(self, name: str) -> int:
        if name not in self.identities:
            self.identities[name] = len(self.names)
            self.names.append(name)
        return self.identities[name]

    def add(self, tracklets: Sequence[StoredTracklet], codes: Sequence[int] | np.ndarray) -> None:
        low, high = self.size, self.size + len(tracklets)
        if low == high:
            return
        ids, cameras, tracks, starts, ends, descriptors = zip(*map(_FIELDS, tracklets))
        self.ids.extend(ids)
        self.desc[low:high] = descriptors
        self.start[low:high], self.end[low:high], self.ident[low:high] = starts, ends, codes
        self.track[low:high] = tracks
        self.cam[low:high] = [self.cameras.setdefault(c, len(self.cameras)) for c in cameras]
        self.tcode[low:high] = [self.tracks.setdefault(key, len(self.tracks)) for key in zip(cameras, tracks)]
        tcode = self.tcode[low:high]
        np.minimum.at(self.track_start, tcode, self.start[low:high])
        np.maximum.at(self.track_end, tcode, self.end[low:high])
        previous = self.track_last[tcode]
        members = np.r_[np.arange(low, high), previous[previous >= 0]]
        member_tracks = np.r_[tcode, tcode[previous >= 0]]
        order = np.lexsort((self.end[members], member_tracks))  # the latest end of each track last
        sorted_tracks = member_tracks[order]
        is_last = np.r_[sorted_tracks[1:] != sorted_tracks[:-1], True]
        self.track_last[sorted_tracks[is_last]] = members[order][is_last]
        self.size = high


@dataclass(frozen=True)
class _Head:
    """The first new segment of a track that is not a continuation, with its later segments in this batch;
    ``start``/``end``: the span of all of them."""

    segments: tuple[tuple[int, StoredTracklet], ...]  # (index in `new`, tracklet), by start time
    start: float
    end: float

    @classmethod
    def of(cls, segments: Sequence[tuple[int, StoredTracklet]]) -> _Head:
        return cls(tuple(segments), min(t.start_time for _, t in segments), max(t.end_time for _, t in segments))

    @property
    def tracklet(self) -> StoredTracklet:
        return self.segments[0][1]


@dataclass(frozen=True)
class _Links:
    """Heads (rows) against identities (columns, by pool identity code), aggregated over some pool members;
    ``parts`` keeps (masked similarities, member indices sorted by identity, their identity codes) to find the
    best member."""

    best: np.ndarray  # (g, K) max similarity over the eligible members, -inf where none
    total: np.ndarray  # (g, K) sum of similarities over the eligible members
    count: np.ndarray  # (g, K) eligible members
    conflict: np.ndarray  # (g, K) a member overlaps the head on its camera (another track)
    transit: np.ndarray  # (g, K) the topology forbids a member within the window
    parts: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]

    def take(self, rows: np.ndarray) -> _Links:
        return _Links(self.best[rows], self.total[rows], self.count[rows], self.conflict[rows], self.transit[rows],
                      tuple((sims[rows], members, codes) for sims, members, codes in self.parts))

    def combine(self, other: _Links) -> _Links:
        return _Links(np.maximum(self.best, other.best), self.total + other.total, self.count + other.count,
                      self.conflict | other.conflict, self.transit | other.transit, self.parts + other.parts)

    def score(self, linkage: Linkage) -> np.ndarray:
        if linkage == "max":
            return self.best
        return np.where(self.count > 0, self.total / np.maximum(self.count, 1), -np.inf)

    def reason(self) -> np.ndarray:
        """Index into _REASONS per (head, identity): 0 when no constraint is violated."""
        return np.where(self.conflict, 1, np.where(self.transit, 2, 0))

    def best_member(self, row: int, code: int) -> int:
        """The pool index of the most similar eligible member of identity ``code`` for head ``row``."""
        found, best = -1, -np.inf
        for sims, members, codes in self.parts:
            low, high = np.searchsorted(codes, code), np.searchsorted(codes, code, side="right")
            if high > low:
                i = low + int(np.argmax(sims[row, low:high]))
                if sims[row, i] > best:
                    found, best = int(members[i]), float(sims[row, i])
        return found


def _links(pool: _Pool, heads: Sequence[_Head], members: np.ndarray, params: AssociationParams,
           table: TransitTable | None, width: int) -> _Links:
    """Aggregate the links of ``heads`` to the pool ``members`` per identity (``width`` identity codes)."""
    members = members[np.argsort(pool.ident[members], kind="stable")]
    g = len(heads)
    best, total = np.full((g, width), -np.inf), np.zeros((g, width))
    count, conflict, transit = np.zeros((g, width), np.int64), np.zeros((g, width), bool), np.zeros((g, width), bool)
    if not members.size:
        return _Links(best, total, count, conflict, transit, ())
    codes = pool.ident[members]
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    present = codes[first]
    cam = np.asarray([pool.cameras[h.tracklet.camera_id] for h in heads])[:, None]
    start, end = np.asarray([h.start for h in heads])[:, None], np.asarray([h.end for h in heads])[:, None]
    track = np.asarray([h.tracklet.track_id for h in heads])[:, None]
    gap = np.maximum(pool.start[members] - end, start - pool.end[members])
    within, overlap = gap <= params.window_s, gap <= 0
    same_cam, other_track = pool.cam[members] == cam, pool.track[members] != track
    eligible = within & ~same_cam
    if params.same_camera:
        eligible |= within & same_cam & other_track & ~overlap
    low, high = int(members.min()), int(members.max()) + 1  # a product with a slice: no copy of descriptors
    sims = (np.stack([h.tracklet.descriptor for h in heads]).astype(np.float32) @ pool.desc[low:high].T)
    sims = sims[:, members - low]
    masked = np.where(eligible, sims, -np.inf)
    best[:, present] = np.maximum.reduceat(masked, first, axis=1)
    total[:, present] = np.add.reduceat(np.where(eligible, sims, 0.0), first, axis=1)
    count[:, present] = np.add.reduceat(eligible.astype(np.int64), first, axis=1)
    conflict[:, present] = np.logical_or.reduceat(same_cam & other_track & overlap, first, axis=1)
    if table is not None:
        tcode = pool.tcode[members]
        allowed = table.allows(cam[:, 0], start, end, pool.cam[members], pool.track_start[tcode],
                               pool.track_end[tcode])
        transit[:, present] = np.logical_or.reduceat(within & ~same_cam & ~allowed, first, axis=1)
    return _Links(best, total, count, conflict, transit, ((masked, members, codes),))


def _hungarian(sub: np.ndarray) -> list[tuple[int, int]]:
    """Maximum total score; every row may stay unassigned (a dummy column of cost 0 per row)."""
    rows, cols = sub.shape
    cost = np.zeros((rows, cols + rows))
    cost[:, :cols] = np.where(np.isfinite(sub), -sub, _FORBIDDEN)
    return [(int(r), int(c)) for r, c in zip(*linear_sum_assignment(cost)) if c < cols and np.isfinite(sub[r, c])]


def _mutual_best(sub: np.ndarray) -> list[tuple[int, int]]:
    """Repeatedly assign the pairs that are each other's best among the rows and columns still free."""
    sub, pairs = sub.copy(), []
    while np.isfinite(sub).any():
        row_best, col_best = np.argmax(sub, axis=1), np.argmax(sub, axis=0)
        found = [(r, int(c)) for r, c in enumerate(row_best) if np.isfinite(sub[r, c]) and col_best[c] == r]
        if not found:  # cannot happen (the first maximum is mutual); a guard against an endless loop
            break
        for r, c in found:
            sub[r, :], sub[:, c] = -np.inf, -np.inf
        pairs += found
    return pairs


def _greedy(sub: np.ndarray) -> list[tuple[int, int]]:
    """Pairs by descending score, skipping rows and columns already taken."""
    rows, cols = np.nonzero(np.isfinite(sub))
    pairs, used_rows, used_cols = [], set(), set()
    for i in np.argsort(-sub[rows, cols], kind="stable"):
        r, c = int(rows[i]), int(cols[i])
        if r not in used_rows and c not in used_cols:
            pairs.append((r, c))
            used_rows.add(r)
            used_cols.add(c)
    return pairs


_MATCHERS: dict[str, Callable[[np.ndarray], list[tuple[int, int]]]] = {
    "hungarian": _hungarian, "mutual_best": _mutual_best, "greedy": _greedy,
}


def _overlap_components(heads: Sequence[_Head]) -> list[list[int]]:
    """Connected components of "overlaps in time" among heads sorted by start."""
    components: list[list[int]] = []
    reach = -np.inf
    for index, head in enumerate(heads):
        if head.start > reach:
            components.append([])
        components[-1].append(index)
        reach = max(reach, head.end)
    return components


def _assign(score: np.ndarray, feasible: np.ndarray, heads: Sequence[_Head],
            params: AssociationParams) -> list[int | None]:
    """The identity code chosen for each head of one camera, or None (a new identity)."""
    choice: list[int | None] = [None] * len(heads)
    allowed = feasible & (score >= params.threshold)
    for component in _overlap_components(heads):
        rows = np.asarray(component)
        cols = np.flatnonzero(allowed[rows].any(axis=0))
        if cols.size:
            sub = np.where(allowed[np.ix_(rows, cols)], score[np.ix_(rows, cols)], -np.inf)
            for r, c in _MATCHERS[params.assignment](sub):
                choice[int(rows[r])] = int(cols[c])
    return choice


def _ranked(score: np.ndarray, mask: np.ndarray, limit: int) -> np.ndarray:
    codes = np.flatnonzero(mask)
    return codes[np.argsort(-score[codes], kind="stable")][:limit]


def _continuations(segments: Sequence[tuple[int, StoredTracklet]], identity: str,
                   previous: str) -> list[tuple[int, Decision]]:
    out = []
    for index, tracklet in segments:
        out.append((index, Decision(tracklet.tracklet_id, identity, "continuation", 1.0, previous)))
        previous = tracklet.tracklet_id
    return out


def _fresh_identity(pool: _Pool, new_identity: Callable[[], str]) -> int:
    name = new_identity()
    if not isinstance(name, str) or not name or name in pool.identities:
        raise ValueError(f"new_identity() must return a new non-empty identity string, got {name!r}")
    return pool.identity(name)


def _decide_heads(pool: _Pool, heads: Sequence[_Head], links: _Links, params: AssociationParams,
                  new_identity: Callable[[], str]) -> list[tuple[int, Decision]]:
    """Decide the heads of one camera (and their later segments), then add them to the pool."""
    score, reason = links.score(params.linkage), links.reason()
    feasible = np.isfinite(score) & (reason == 0)
    out: list[tuple[int, Decision]] = []
    added, codes = [], []
    for row, (head, code) in enumerate(zip(heads, _assign(score, feasible, heads, params))):
        candidates = tuple((pool.names[k], float(score[row, k]), pool.ids[links.best_member(row, k)])
                           for k in _ranked(score[row], feasible[row], MAX_CANDIDATES))
        rejected = tuple((pool.names[k], _REASONS[reason[row, k]])
                         for k in _ranked(score[row], np.isfinite(score[row]) & (reason[row] > 0), MAX_REJECTED))
        tracklet = head.tracklet
        if code is None:
            code = _fresh_identity(pool, new_identity)
            best = candidates[0][1] if candidates else 0.0
            decision = Decision(tracklet.tracklet_id, pool.names[code], "new", best, None, candidates, rejected)
        else:
            decision = Decision(tracklet.tracklet_id, pool.names[code], "appearance", float(score[row, code]),
                                pool.ids[links.best_member(row, code)], candidates, rejected)
        out.append((head.segments[0][0], decision))
        out += _continuations(head.segments[1:], pool.names[code], tracklet.tracklet_id)
        added += [t for _, t in head.segments]
        codes += [code] * len(head.segments)
    pool.add(added, codes)
    return out


def _plan(pool: _Pool, items: Sequence[tuple[int, StoredTracklet]]) -> tuple[list[list[tuple[int, StoredTracklet]]], list[_Head]]:
    """The tracks of one camera's new tracklets: continuations of pool tracks and heads (both by start)."""
    by_track: dict[int, list[tuple[int, StoredTracklet]]] = defaultdict(list)
    for index, tracklet in sorted(items, key=lambda it: (it[1].start_time, it[1].end_time, it[0])):
        by_track[tracklet.track_id].append((index, tracklet))
    continued, heads = [], []
    for segments in by_track.values():
        tracklet = segments[0][1]
        if (tracklet.camera_id, tracklet.track_id) in pool.tracks:
            continued.append(segments)
        else:
            heads.append(_Head.of(segments))
    return continued, heads


def _associate_space(pool: _Pool, cameras: Mapping[str, Sequence[tuple[int, StoredTracklet]]],
                     params: AssociationParams, topology: Topology | None,
                     new_identity: Callable[[], str]) -> list[tuple[int, Decision]]:
    order = sorted(cameras, key=lambda c: (min(t.start_time for _, t in cameras[c]), c))
    plans = [_plan(pool, cameras[camera]) for camera in order]
    for camera in order:
        pool.camera(camera)
    table = topology.table(list(pool.cameras)) if topology is not None else None
    out: list[tuple[int, Decision]] = []
    for continued, _ in plans:  # first: they extend known tracks, whose spans the transit checks use
        for segments in continued:
            tracklet = segments[0][1]
            last = int(pool.track_last[pool.tracks[(tracklet.camera_id, tracklet.track_id)]])
            out += _continuations(segments, pool.names[pool.ident[last]], pool.ids[last])
            pool.add([t for _, t in segments], [int(pool.ident[last])] * len(segments))
    all_heads = [head for _, heads in plans for head in heads]
    if not all_heads:
        return out
    width = len(pool.names) + len(all_heads)
    low = min(h.start for h in all_heads) - params.window_s
    high = max(h.end for h in all_heads) + params.window_s
    near = np.flatnonzero((pool.end[:pool.base] >= low) & (pool.start[:pool.base] <= high))
    base = _links(pool, all_heads, near, params, table, width)  # the known tracklets, once for all cameras
    offset = 0
    for _, heads in plans:
        if heads:
            rows = np.arange(offset, offset + len(heads))
            offset += len(heads)
            recent = _links(pool, heads, np.arange(pool.base, pool.size), params, table, width)
            out += _decide_heads(pool, heads, base.take(rows).combine(recent), params, new_identity)
    return out


def associate(new: Sequence[StoredTracklet], known: Sequence[StoredTracklet], params: AssociationParams,
              topology: Topology | None, new_identity: Callable[[], str]) -> list[Decision]:
    """The identity of each tracklet of ``new`` (decisions in the order of ``new``).

    Per descriptor space, the new tracklets are decided one camera at a time (cameras in order of their earliest
    start); each decided camera joins the known ones, so a later camera of the same call can link to it:

    1. a tracklet of a track already seen (same camera and track id, known or earlier in the batch) continues its
       identity; these are decided first;
    2. otherwise the candidates are the members of known identities within ``window_s``: other cameras, and with
       ``same_camera`` the same camera's other tracks that do not overlap it in time;
    3. an identity is infeasible when one of its members within the window overlaps the tracklet on its camera
       (another track) or, with a topology, its track cannot be reached in the transit time;
    4. identity score = max (or mean) similarity over its candidate members; the new tracks of one camera that
       overlap in time are assigned one-to-one with ``params.assignment`` over scores >= threshold; the others
       get a new identity from ``new_identity()``.

    Each decision lists the best :data:`MAX_CANDIDATES` feasible identities (the chosen one included, also below
    the threshold) and up to :data:`MAX_REJECTED` identities that had a candidate member but were excluded, with
    the reason ("same_camera_overlap" or "transit").
    """
    if any(t.identity is None for t in known):
        raise ValueError("associate: every known tracklet needs an identity")
    known_by_space: dict[str, list[StoredTracklet]] = defaultdict(list)
    for tracklet in known:
        known_by_space[tracklet.space].append(tracklet)
    new_by_space: dict[str, dict[str, list[tuple[int, StoredTracklet]]]] = defaultdict(lambda: defaultdict(list))
    for index, tracklet in enumerate(new):
        new_by_space[tracklet.space][tracklet.camera_id].append((index, tracklet))
    decisions: list[Decision | None] = [None] * len(new)
    for space, cameras in new_by_space.items():
        count = sum(len(items) for items in cameras.values())
        dim = next(iter(cameras.values()))[0][1].descriptor.shape[0]
        pool = _Pool(known_by_space[space], count, dim)
        for index, decision in _associate_space(pool, cameras, params, topology, new_identity):
            decisions[index] = decision
    log.debug("associated %d new tracklets against %d known", len(new), len(known))
    return decisions  # type: ignore[return-value]
