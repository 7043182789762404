"""OpenCV's HOG + linear SVM people detector (Dalal & Triggs): the offline fallback without YOLO weights.

It needs nothing but OpenCV 4.x (the detector coefficients ship inside OpenCV). It is far weaker than a
modern CNN detector: the SVM was trained on 64x128 windows holding people about 96 px tall, so close-up
footage should be downscaled (``max_width``) for both speed and recall.

Scores. The SVM returns a signed margin ``w`` per window (positive = person side of the hyperplane). It is
squashed to (0, 1) with the logistic map ``score = 1 / (1 + exp(-w))``, which is strictly increasing, so
ranking and NMS are unchanged; with the default ``hit_threshold=0`` every kept window scores >= 0.5.

Boxes. By default (``tighten=True``) the raw 64x128-shaped windows, which include a margin of background
around the person, are shrunk the way OpenCV's ``peopledetect`` sample does: 10 % off each side, 7 % off
the top and 13 % off the bottom.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np

from keyreid_stream.contracts import Detections, Frame

logger = logging.getLogger(__name__)

_OPENCV_FIX = 'pip install "opencv-python<5"'


def squash_scores(weights: np.ndarray) -> np.ndarray:
    """Map SVM margins to (0, 1) with the logistic function (monotone increasing; margin 0 -> 0.5)."""
    margins = np.clip(np.asarray(weights, dtype=np.float64).reshape(-1), -60.0, 60.0)
    return (1.0 / (1.0 + np.exp(-margins))).astype(np.float32)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each row of ``others`` (M, 4)."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    result: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)
    return result


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of the kept xyxy boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds ``iou_threshold``.
    Ties in score keep the earlier box (stable sort).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def tighten_boxes(boxes: np.ndarray) -> np.ndarray:
    """Shrink raw HOG windows (xyxy) to the person inside them, as OpenCV's peopledetect sample does."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    return np.stack(
        [
            boxes[:, 0] + 0.10 * width,
            boxes[:, 1] + 0.07 * height,
            boxes[:, 0] + 0.90 * width,
            boxes[:, 1] + 0.87 * height,
        ],
        axis=1,
    )


def _people_descriptor() -> Any:
    """A cv2.HOGDescriptor loaded with the default people SVM (typed Any: OpenCV 5 lacks the class)."""
    hog_class: Any = getattr(cv2, "HOGDescriptor", None)
    getter = getattr(hog_class, "getDefaultPeopleDetector", None)
    if hog_class is None or getter is None:
        raise RuntimeError(
            f"OpenCV {cv2.__version__} has no HOG people detector (removed in OpenCV 5); "
            f"the offline fallback detector needs OpenCV 4.x: {_OPENCV_FIX}"
        )
    descriptor = hog_class()
    descriptor.setSVMDetector(getter())
    return descriptor


def _check_pair(name: str, value: tuple[int, int]) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 0:
        raise ValueError(f"{name} must be two non-negative integers, got {value!r}")
    return pair


class HogPersonDetector:
    """Detect standing people in BGR frames with OpenCV's default HOG people detector."""

    def __init__(
        self,
        *,
        win_stride: tuple[int, int] = (8, 8),
        padding: tuple[int, int] = (8, 8),
        scale: float = 1.05,
        hit_threshold: float = 0.0,
        min_score: float = 0.0,
        nms_iou: float = 0.45,
        max_width: int | None = None,
        tighten: bool = True,
    ) -> None:
        if scale <= 1.0:
            raise ValueError(f"scale must be > 1 (pyramid step), got {scale}")
        if not 0.0 <= min_score < 1.0:
            raise ValueError(f"min_score must be in [0, 1), got {min_score}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        if max_width is not None and max_width < 64:
            raise ValueError(f"max_width must be at least the 64 px detection window, got {max_width}")
        self.win_stride = _check_pair("win_stride", win_stride)
        self.padding = _check_pair("padding", padding)
        self.scale = float(scale)
        self.hit_threshold = float(hit_threshold)
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.max_width = max_width
        self.tighten = tighten
        self._hog = _people_descriptor()
        win = self._hog.winSize
        self._window = (int(win[0]), int(win[1]))

    def _resized(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The image the detector runs on and the factor (<= 1) it was scaled by."""
        width = image.shape[1]
        if self.max_width is None or width <= self.max_width:
            return image, 1.0
        factor = self.max_width / width
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        return small, factor

    def _raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw windows (xyxy, in ``image`` pixels) and SVM margins; empty when no window fits."""
        height, width = image.shape[:2]
        if width < self._window[0] or height < self._window[1]:
            return np.zeros((0, 4), np.float64), np.zeros((0,), np.float64)  # OpenCV may crash on these
        rects, weights = self._hog.detectMultiScale(
            image, self.hit_threshold, self.win_stride, self.padding, self.scale, 0
        )
        if len(rects) == 0:
            return np.zeros((0, 4), np.float64), np.zeros((0,), np.float64)
        boxes = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes, np.asarray(weights, dtype=np.float64).reshape(-1)

    def detect(self, frame: Frame) -> Detections:
        """People in ``frame`` as :class:`Detections` (boxes in original frame pixels, best first)."""
        image = frame.image
        small, factor = self._resized(image)
        boxes, margins = self._raw(small)
        scores = squash_scores(margins)
        keep_mask = scores >= self.min_score
        boxes, scores = boxes[keep_mask] / factor, scores[keep_mask]
        if self.tighten and len(boxes):
            boxes = tighten_boxes(boxes)
        if len(boxes):
            height, width = image.shape[:2]
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, width)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, height)
            keep = non_max_suppression(boxes, scores, self.nms_iou)
            boxes, scores = boxes[keep], scores[keep]
        logger.debug("camera %s frame %d: %d HOG detections", frame.camera_id, frame.index, len(boxes))
        if not len(boxes):
            return Detections.empty(frame.camera_id, frame.index, frame.timestamp)
        return Detections.create(
            frame.camera_id,
            frame.index,
            frame.timestamp,
            boxes.astype(np.float32),
            scores.astype(np.float32),
        )
