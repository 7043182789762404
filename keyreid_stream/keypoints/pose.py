"""Pose backends: 17 COCO keypoints ``(x, y, confidence)`` per person, for whole frames or person crops.

KeyRe-ID (Kim et al.) estimates keypoints with PifPaf on every frame of a tracklet; this module is the one
interface every estimator implements, so the stream, the dataset extractor and the tests do not care which runs:

* :class:`PersonPoses` -- all people found in one image: boxes, scores and keypoints in that image's pixels.
* :class:`PoseBackend` -- ``detect(images)`` finds everybody; ``estimate_crops(crops)`` returns exactly one
  person per crop (see :func:`select_person`); ``estimate_boxes(frame, boxes)`` runs on the boxes of a frame
  and answers in frame coordinates; ``detect_frames(frames)`` wraps ``detect`` into :class:`Detections`.
* :class:`PriorPose` (``prior``) -- a fixed average pedestrian layout scaled to the crop or box. With no pose
  model available, KPS then weights fixed body regions instead of failing.

Images are ``(H, W, 3)`` uint8 BGR arrays (OpenCV's order). A missing joint is ``(0, 0, 0)``: confidence 0
means unknown, and the heatmap renderer skips it. The pose models live in :mod:`.pifpaf`, :mod:`.yolo_pose` and
:mod:`.blazepose` (offline, one person per box); :func:`~keyreid_stream.keypoints.backends.create_backend`
builds any of them by name.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS, Detections, Frame

__all__ = [
    "PRIOR_LAYOUT", "PersonPoses", "PoseBackend", "PoseError", "PriorPose", "check_images", "crop_boxes",
    "select_person",
]

logger = logging.getLogger(__name__)

# Average upright pedestrian, facing the camera, as fractions (x of the box width, y of its height); COCO order.
# The person's left side is on the image's right.
PRIOR_LAYOUT: np.ndarray = np.array([
    (0.50, 0.08),                  # nose
    (0.54, 0.065), (0.46, 0.065),  # left eye, right eye
    (0.58, 0.075), (0.42, 0.075),  # left ear, right ear
    (0.68, 0.19), (0.32, 0.19),    # shoulders
    (0.74, 0.34), (0.26, 0.34),    # elbows
    (0.76, 0.47), (0.24, 0.47),    # wrists
    (0.61, 0.50), (0.39, 0.50),    # hips
    (0.60, 0.71), (0.40, 0.71),    # knees
    (0.59, 0.92), (0.41, 0.92),    # ankles
], dtype=np.float32)

# How fast a person's rank falls with distance from the crop centre (fraction of the crop size).
CENTRALITY_SIGMA = 0.25


class PoseError(RuntimeError):
    """A pose backend cannot be built or run (missing package, unknown name, untrusted checkpoint)."""


@dataclass(frozen=True, eq=False)
class PersonPoses:
    """The M people found in one image: ``boxes`` (M, 4) xyxy, ``scores`` (M,), ``keypoints`` (M, 17, 3)."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        count = self.boxes.shape[0] if self.boxes.ndim == 2 else -1
        shapes_ok = (
            self.boxes.shape == (count, 4) and self.scores.shape == (count,)
            and self.keypoints.shape == (count, NUM_KEYPOINTS, 3)
        )
        if not shapes_ok:
            raise ValueError(
                "PersonPoses needs boxes (M, 4), scores (M,) and keypoints (M, 17, 3); got "
                f"{self.boxes.shape}, {self.scores.shape}, {self.keypoints.shape}"
            )
        for name in ("boxes", "scores", "keypoints"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))

    @classmethod
    def empty(cls) -> PersonPoses:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, NUM_KEYPOINTS, 3)))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def select_person(poses: PersonPoses, width: int, height: int) -> np.ndarray:
    """The one person a crop ``width x height`` shows: ``(17, 3)``, all zeros when nobody was found.

    People are ranked by score times a Gaussian of their box centre's distance from the crop centre (in
    fractions of the crop size, sigma 0.25): of two similar detections the central one wins, and a confident
    neighbour cut by the crop edge loses to the person the crop was made for.
    """
    if len(poses) == 0:
        return np.zeros((NUM_KEYPOINTS, 3), np.float32)
    centres = (poses.boxes[:, :2] + poses.boxes[:, 2:]) / 2.0
    offsets = (centres - np.array([width / 2.0, height / 2.0])) / np.array([max(width, 1), max(height, 1)])
    centrality = np.exp(-(offsets ** 2).sum(axis=1) / (2 * CENTRALITY_SIGMA ** 2))
    best = int(np.argmax(poses.scores * centrality))
    result: np.ndarray = poses.keypoints[best].copy()
    return result


def crop_boxes(
    frame: np.ndarray, boxes: np.ndarray, margin: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Crops of ``boxes`` (N, 4) grown by ``margin`` of their size and clipped to the frame; their (x, y) origins."""
    height, width = frame.shape[:2]
    sizes = boxes[:, 2:] - boxes[:, :2]
    grown = np.concatenate([boxes[:, :2] - margin * sizes, boxes[:, 2:] + margin * sizes], axis=1)
    x1 = np.clip(np.floor(grown[:, 0]), 0, width - 1).astype(int)
    y1 = np.clip(np.floor(grown[:, 1]), 0, height - 1).astype(int)
    x2 = np.maximum(np.clip(np.ceil(grown[:, 2]), 0, width).astype(int), x1 + 1)
    y2 = np.maximum(np.clip(np.ceil(grown[:, 3]), 0, height).astype(int), y1 + 1)
    crops = [frame[top:bottom, left:right] for left, top, right, bottom in zip(x1, y1, x2, y2)]
    return crops, np.stack([x1, y1], axis=1).astype(np.float32) if len(crops) else np.zeros((0, 2), np.float32)


def check_images(images: Sequence[np.ndarray]) -> None:
    for index, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"image {index} must be an (H, W, 3) uint8 BGR array, got {got}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image {index} is empty: {image.shape}")


class PoseBackend(abc.ABC):
    """17 COCO keypoints per person. Subclasses implement :meth:`_detect_batch`; the rest is shared."""

    name: ClassVar[str]

    def __init__(self, batch_size: int = 16) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    @abc.abstractmethod
    def _detect_batch(self, images: Sequence[np.ndarray]) -> list[PersonPoses]:
        """Everybody in each of at most ``batch_size`` validated images."""

    def detect(self, images: Sequence[np.ndarray]) -> list[PersonPoses]:
        """All people in each image (BGR uint8), in that image's pixel coordinates, in batches."""
        check_images(images)
        found: list[PersonPoses] = []
        for start in range(0, len(images), self.batch_size):
            found.extend(self._detect_batch(images[start:start + self.batch_size]))
        return found

    def estimate_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """One person per crop: ``(N, 17, 3)`` float32 in crop pixels; zeros where a crop shows nobody."""
        poses = self.detect(crops)
        selected = [select_person(found, crop.shape[1], crop.shape[0]) for found, crop in zip(poses, crops)]
        return np.stack(selected) if selected else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)

    def estimate_boxes(self, frame: np.ndarray, boxes: np.ndarray, margin: float = 0.1) -> np.ndarray:
        """One person per box of ``frame``: ``(N, 17, 3)`` float32 in frame pixels (crops grown by ``margin``)."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        check_images([frame])
        crops, origins = crop_boxes(frame, boxes, margin)
        keypoints = self.estimate_crops(crops)
        seen = keypoints[..., 2] > 0
        keypoints[..., :2] += origins[:, None, :] * seen[..., None]
        return keypoints

    def detect_frames(self, frames: Sequence[Frame]) -> list[Detections]:
        """``detect`` on camera frames, as the stream's :class:`Detections` (untracked)."""
        poses = self.detect([frame.image for frame in frames])
        return [
            Detections.create(frame.camera_id, frame.index, frame.timestamp, found.boxes, found.scores,
                              keypoints=found.keypoints)
            for frame, found in zip(frames, poses)
        ]

    def close(self) -> None:  # noqa: B027  (optional: a backend without resources keeps this)
        """Release the model (GPU memory); the backend cannot be used afterwards."""


class PriorPose(PoseBackend):
    """A fixed average pedestrian layout scaled to each crop or box, every joint at ``confidence``."""

    name = "prior"

    def __init__(self, confidence: float = 0.5, batch_size: int = 256) -> None:
        super().__init__(batch_size)
        if not 0.1 < confidence <= 1.0:
            raise ValueError(f"confidence must be in (0.1, 1] so that the renderer uses the joints, got {confidence}")
        self.confidence = float(confidence)

    def layout(self, boxes: np.ndarray) -> np.ndarray:
        """The layout scaled to ``boxes`` (N, 4) xyxy: ``(N, 17, 3)``."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        origin, size = boxes[:, None, :2], (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        xy = origin + PRIOR_LAYOUT[None] * size
        confidence = np.full((*xy.shape[:2], 1), self.confidence, np.float32)
        return np.concatenate([xy, confidence], axis=-1).astype(np.float32)

    def _detect_batch(self, images: Sequence[np.ndarray]) -> list[PersonPoses]:
        found = []
        for image in images:
            box = np.array([[0, 0, image.shape[1] - 1, image.shape[0] - 1]], np.float32)
            found.append(PersonPoses(box, np.full(1, self.confidence), self.layout(box)))
        return found

    def estimate_boxes(self, frame: np.ndarray, boxes: np.ndarray, margin: float = 0.1) -> np.ndarray:
        check_images([frame])
        return self.layout(boxes)
