"""How right the demo's cross-view links are, checked against the geometry of the two views.

The two views are column ranges of one video, so a box in one view is a box in the source frame after shifting
it by the view's first column. Two tracks, one per view, are the same person when their boxes coincide in the
source frame (IoU >= ``iou``) in at least ``min_frames`` common frames. That gives the true cross-view pairs
without any annotation. A person is only ever seen by both views inside the shared columns, so a pair of tracks
that never coincide there is not the same person, whatever the descriptors say.

The predicted pairs are the (left track, right track) pairs the matcher put into one identity. Precision and
recall of those pairs against the true ones measure the re-ID part of the demo; detection and tracking errors
(a missed person, a box around two people) show up as pairs that no one can get right.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keyreid_stream.demo.summary import IdentityReport
from keyreid_stream.eval.mtmc import box_iou_xywh
from keyreid_stream.mot import MotTracks, read_mot

__all__ = ["METHOD", "LinkQuality", "predicted_view_pairs", "true_view_pairs", "view_link_quality"]

Pair = tuple[int, int]
METHOD = ("both views are crops of one video, so which tracks show the same person is known from their boxes, "
          "without annotation")


@dataclass(frozen=True)
class LinkQuality:
    """Cross-view track pairs: true (from the boxes), predicted (same identity), and both."""

    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else float("nan")

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else float("nan")

    def describe(self) -> str:
        """One line: how many linked pairs are right (precision) and how many true pairs were found (recall)."""
        return (f"{self.correct_pairs} of {self.predicted_pairs} linked track pairs are right (precision "
                f"{self.precision:.2f}); {self.correct_pairs} of the {self.true_pairs} true pairs were found "
                f"(recall {self.recall:.2f})")


def true_view_pairs(left: MotTracks, right: MotTracks, right_offset: int, *, iou: float = 0.5,
                    min_frames: int = 3) -> set[Pair]:
    """(left track, right track) pairs whose boxes coincide in the source frame in ``min_frames`` frames or more;
    ``right_offset``: the right view's first column minus the left view's."""
    common: Counter[Pair] = Counter()
    for frame in np.intersect1d(left.frames, right.frames):
        in_left, in_right = left.frames == frame, right.frames == frame
        boxes = right.boxes[in_right].copy()
        boxes[:, 0] += right_offset
        overlap = box_iou_xywh(left.boxes[in_left], boxes)
        for i, j in zip(*np.nonzero(overlap >= iou)):
            common[(int(left.ids[in_left][i]), int(right.ids[in_right][j]))] += 1
    return {pair for pair, frames in common.items() if frames >= min_frames}


def predicted_view_pairs(identities: Iterable[IdentityReport], left_camera: str, right_camera: str) -> set[Pair]:
    """Pairs of tracks of the two cameras that ended up in one identity."""
    pairs: set[Pair] = set()
    for identity in identities:
        left = {m.track_id for m in identity.members if m.camera_id == left_camera}
        right = {m.track_id for m in identity.members if m.camera_id == right_camera}
        pairs.update((a, b) for a in left for b in right)
    return pairs


def view_link_quality(mot_dir: Path, left: tuple[str, int], right: tuple[str, int],
                      identities: Iterable[IdentityReport]) -> LinkQuality:
    """Link precision and recall of the demo's two views (``(camera_id, first column)`` each) from the workers'
    MOTChallenge files in ``mot_dir`` and the matcher's identities."""
    truth = true_view_pairs(read_mot(mot_dir / f"{left[0]}.txt"), read_mot(mot_dir / f"{right[0]}.txt"),
                            right[1] - left[1])
    predicted = predicted_view_pairs(identities, left[0], right[0])
    return LinkQuality(len(truth), len(predicted), len(truth & predicted))
