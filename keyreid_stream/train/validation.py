"""Model selection data: a validation query/gallery carved from the training identities, never the test set.

A fraction of the training identities (only those seen by at least two cameras, so that they can be queried)
is held out. For each held-out identity, one tracklet of every camera but the last one it appears in becomes a
query; all its other tracklets form the gallery. On two-camera datasets (iLIDS-VID, PRID-2011) this is the test
protocol in miniature (query camera A, gallery camera B); on MARS it gives several queries per identity with a
cross-camera match each.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keyreid_stream.data.datasets import VideoTracklet

__all__ = ["TrainValSplit", "carve_validation"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainValSplit:
    train: tuple[VideoTracklet, ...]
    query: tuple[VideoTracklet, ...]
    gallery: tuple[VideoTracklet, ...]

    @property
    def held_out_ids(self) -> tuple[int, ...]:
        return tuple(sorted({t.person_id for t in self.query}))


def carve_validation(tracklets: Sequence[VideoTracklet], fraction: float, seed: int) -> TrainValSplit:
    """Hold out ``fraction`` of the identities (rounded, at least 2 when fraction > 0) for validation."""
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"fraction must be in [0, 0.5), got {fraction}")
    if fraction == 0.0:
        return TrainValSplit(tuple(tracklets), (), ())
    by_id: dict[int, list[VideoTracklet]] = defaultdict(list)
    for tracklet in tracklets:
        by_id[tracklet.person_id].append(tracklet)
    multi_camera = sorted(pid for pid, items in by_id.items() if len({t.camera_id for t in items}) >= 2)
    count = max(2, int(round(fraction * len(by_id))))
    if count > len(multi_camera) or len(by_id) - count < 2:
        raise ValueError(f"cannot hold out {count} of {len(by_id)} training identities for validation "
                         f"({len(multi_camera)} are seen by two cameras or more); lower data.validation_ids")
    rng = np.random.default_rng([seed, 7])
    held = {int(pid) for pid in rng.choice(multi_camera, size=count, replace=False)}
    query: list[VideoTracklet] = []
    gallery: list[VideoTracklet] = []
    for pid in sorted(held):
        items = sorted(by_id[pid], key=lambda t: (t.camera_id, t.key))
        cameras = sorted({t.camera_id for t in items})
        chosen = {cam: next(t for t in items if t.camera_id == cam) for cam in cameras[:-1]}
        query.extend(chosen.values())
        gallery.extend(t for t in items if t not in chosen.values())
    train = tuple(t for t in tracklets if t.person_id not in held)
    logger.info("validation: %d identities held out (%d query / %d gallery tracklets), %d train identities left",
                len(held), len(query), len(gallery), len(by_id) - len(held))
    return TrainValSplit(train, tuple(query), tuple(gallery))
