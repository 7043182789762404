"""The offline reference for online association: the best clustering the same descriptors and constraints allow.

The online matcher decides each tracklet once, when it arrives, from what it has seen so far (then corrects with
periodic re-clustering). Offline, with every tracklet at hand, agglomerative clustering by **average linkage**
over the tracks is the usual reference: :func:`offline_identities` starts from one identity per track (camera,
track id) and merges exactly as :func:`~keyreid_stream.matcher.association.recluster.recluster` does (mean cosine over the
cross-camera track pairs, best pair first, the same constraints: no two overlapping tracks of one camera, the
topology's transit times, ``window_s``) down to a threshold. :func:`offline_optimum` sweeps that threshold and
keeps the one that scores best against the ground truth: an upper reference that knows the answer, never a
setting to run with. The ratio ``online F1 / offline F1`` says how much the online decisions lose against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import count

import numpy as np

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.recluster import apply_changes, recluster
from keyreid_stream.matcher.association.topology import Topology
from keyreid_stream.matcher.state.records import StoredTracklet

__all__ = ["OfflineOptimum", "f1_score", "offline_identities", "offline_optimum"]

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 1.0, 0.005), 3))


def f1_score(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


@dataclass(frozen=True)
class OfflineOptimum:
    """The best threshold of the sweep, its identities (tracklet id -> identity) and score."""

    threshold: float
    identities: dict[str, str]
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        return f1_score(self.precision, self.recall)


def offline_identities(tracklets: Sequence[StoredTracklet], threshold: float, *, topology: Topology | None = None,
                       window_s: float = AssociationParams.window_s) -> dict[str, str]:
    """Tracklet id -> identity: average-linkage clustering of the tracks down to ``threshold`` (see the module
    docstring); the tracklets' own identities are ignored."""
    units = [dataclasses.replace(t, identity=f"{t.camera_id}\x1f{t.track_id}") for t in tracklets]
    params = AssociationParams(window_s=window_s, threshold=threshold, merge_threshold=threshold,
                               split_threshold=-1.0)
    numbers = count(1)
    changes = recluster(units, params, topology, lambda: f"offline{next(numbers)}")
    return apply_changes({t.tracklet_id: t.identity for t in units}, changes)  # type: ignore[misc]


def offline_optimum(tracklets: Sequence[StoredTracklet],
                    score: Callable[[Mapping[str, str]], tuple[float, float]], *,
                    topology: Topology | None = None, window_s: float = AssociationParams.window_s,
                    thresholds: Iterable[float] = THRESHOLDS) -> OfflineOptimum:
    """The threshold whose clustering has the best F1 under ``score`` (identities -> (precision, recall));
    ties: the higher threshold."""
    best: OfflineOptimum | None = None
    for threshold in sorted(thresholds, reverse=True):
        identities = offline_identities(tracklets, threshold, topology=topology, window_s=window_s)
        candidate = OfflineOptimum(threshold, identities, *score(identities))
        if best is None or candidate.f1 > best.f1:
            best = candidate
    if best is None:
        raise ValueError("offline_optimum: no threshold to try")
    return best
