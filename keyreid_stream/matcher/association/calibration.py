"""The link threshold from the data the matcher sees, without labels (``AssociationParams.threshold_rule``).

A fixed cosine threshold suits one descriptor on one kind of scene: where the descriptors are noisier the same
person's sightings are less alike, and a threshold set for clean descriptors loses most links (on the synthetic
scenes, noise 0.8 and look-alikes 0.5, the default 0.6 keeps 0.55 of the true pairs). Two things the matcher can
see tell it where to cut, with no ground truth:

* **certain negatives**: two tracklets of one camera, of different tracks, that overlap in time are two people.
  Their similarities are the high end of what different people score (same camera, same light);
* **likely positives**: a tracklet and the most similar tracklet of another camera that the constraints allow
  (within ``window_s``, the topology's transit times), when each is the other's best ("mutual best"). Most of
  these are one person seen twice; people seen once (distractors) add some negatives.

``"midpoint"``: the threshold is half-way between the 0.9 quantile of the certain negatives and the median of the
mutual-best similarities; with ``spread`` the distance between those two, re-clustering merges identities above
``threshold - 0.1 x spread`` (its average linkage over whole tracks is steadier than one tracklet's best match)
and splits tracks off below ``threshold - spread``, so all three follow the descriptor's own scale. The rule
(which statistics, which quantile, the two offsets) was chosen on synthetic scenes of five kinds (seeds 0-2)
against the online F1 at every threshold, and is reported on other seeds and on the demo's views in
``docs/benchmarks.md``. Too little evidence (fewer than :data:`MIN_NEGATIVES` negative pairs or
:data:`MIN_POSITIVES` mutual-best pairs in the descriptor space with the most tracklets): the configured
thresholds stay.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.topology import Topology
from keyreid_stream.matcher.state.records import StoredTracklet

__all__ = ["MAX_TRACKLETS", "MIN_NEGATIVES", "MIN_POSITIVES", "NEGATIVE_QUANTILE", "Calibration", "calibrate",
           "estimate_threshold"]

log = logging.getLogger(__name__)

NEGATIVE_QUANTILE = 0.9
MIN_NEGATIVES = 100
MIN_POSITIVES = 30
MERGE_BELOW = 0.1  # merge_threshold = threshold - MERGE_BELOW x spread (positive median - negative quantile)
SPLIT_BELOW = 1.0  # split_threshold = threshold - SPLIT_BELOW x spread
MAX_TRACKLETS = 1500  # the most recent tracklets (by end time) the estimate looks at: bounded time and memory
_LOWEST, _HIGHEST = 0.05, 0.99  # the estimated threshold is kept inside these


@dataclass(frozen=True)
class Calibration:
    """The evidence behind a threshold: the statistics and how many pairs each rests on."""

    threshold: float
    negative_quantile: float
    negatives: int
    positive_median: float
    positives: int


def estimate_threshold(tracklets: Sequence[StoredTracklet], *, topology: Topology | None = None,
                       window_s: float = AssociationParams.window_s, min_negatives: int = MIN_NEGATIVES,
                       min_positives: int = MIN_POSITIVES) -> Calibration | None:
    """The ``"midpoint"`` threshold of the tracklets of the most common descriptor space (module docstring), or
    None when there is too little evidence (fewer pairs than ``min_negatives`` / ``min_positives``)."""
    if not tracklets:
        return None
    space = Counter(t.space for t in tracklets).most_common(1)[0][0]
    chosen = sorted((t for t in tracklets if t.space == space), key=lambda t: t.end_time)[-MAX_TRACKLETS:]
    names = sorted({t.camera_id for t in chosen})
    code = {name: i for i, name in enumerate(names)}
    cam = np.asarray([code[t.camera_id] for t in chosen])
    track = np.asarray([t.track_id for t in chosen])
    start = np.asarray([t.start_time for t in chosen])
    end = np.asarray([t.end_time for t in chosen])
    desc = np.stack([t.descriptor for t in chosen]).astype(np.float32)
    sims = desc @ desc.T
    gap = np.maximum(start[None, :] - end[:, None], start[:, None] - end[None, :])
    same = cam[:, None] == cam[None, :]
    negatives = sims[np.triu(same & (track[:, None] != track[None, :]) & (gap <= 0), 1)]
    feasible = ~same & (gap <= window_s)
    if topology is not None:
        feasible &= topology.table(names).allows(cam, start[:, None], end[:, None], cam, start, end)
    scores = np.where(feasible, sims, -np.inf)
    best = np.argmax(scores, axis=1)
    rows = np.arange(len(chosen))
    mutual = np.isfinite(scores[rows, best]) & (best[best] == rows) & (rows < best)  # each pair once
    positives = scores[rows[mutual], best[mutual]]
    if negatives.size < max(min_negatives, 1) or positives.size < max(min_positives, 1):
        return None
    low, high = float(np.quantile(negatives, NEGATIVE_QUANTILE)), float(np.median(positives))
    threshold = float(np.clip((low + high) / 2, _LOWEST, _HIGHEST))
    return Calibration(threshold, low, int(negatives.size), high, int(positives.size))


def calibrate(tracklets: Sequence[StoredTracklet], params: AssociationParams, *, topology: Topology | None = None,
              min_negatives: int = MIN_NEGATIVES, min_positives: int = MIN_POSITIVES) -> AssociationParams:
    """``params`` with the thresholds its ``threshold_rule`` sets on ``tracklets`` (the ones the next decision
    sees); ``"fixed"`` or too little evidence (:func:`estimate_threshold`): ``params`` as they are."""
    if params.threshold_rule == "fixed":
        return params
    found = estimate_threshold(tracklets, topology=topology, window_s=params.window_s, min_negatives=min_negatives,
                               min_positives=min_positives)
    if found is None:
        return params
    spread = max(found.positive_median - found.negative_quantile, 0.0)
    merge = float(np.clip(found.threshold - MERGE_BELOW * spread, _LOWEST, 1.0))
    split = float(np.clip(found.threshold - SPLIT_BELOW * spread, -1.0, min(found.threshold, merge) - 1e-6))
    log.debug("threshold %.3f from %d negative pairs (q%.2f %.3f) and %d mutual-best pairs (median %.3f)",
              found.threshold, found.negatives, NEGATIVE_QUANTILE, found.negative_quantile, found.positives,
              found.positive_median)
    return dataclasses.replace(params, threshold=found.threshold, merge_threshold=merge, split_threshold=split)
