"""Per-camera multi-object tracking: ultralytics' ByteTrack / BoT-SORT on the worker's :class:`Detections`.

Re-identification needs tracklets: the same person over consecutive frames of one camera, under one id. The
association is left to ultralytics' own, well-tested trackers (Kalman filter + Hungarian matching on IoU);
this module only adapts them to the stream's contracts:

* defaults come from ultralytics' ``bytetrack.yaml`` / ``botsort.yaml`` (read with its cfg helpers) and are
  overridden by keyword parameters, checked by name;
* BoT-SORT's appearance re-ID is always off (KeyRe-ID re-identifies, across cameras); its camera-motion
  compensation (``gmc_method``) stays as ultralytics sets it, or ``"none"`` / ``None``;
* ``track_buffer`` is in frames at 30 fps, as in ByteTrack: a lost track is kept for
  ``round(track_buffer * frame_rate / 30)`` tracker updates (at least 1), the same time at any frame rate;
* the output keeps the boxes the tracker outputs (clipped to the frame) with the scores and keypoints of the
  detection each track matched in this frame (ultralytics returns that detection's index), and namespaced ids
  ``id_base + ultralytics id`` so that ids of different cameras can be kept apart;
* :meth:`CameraTracker.pop_finished` reports once each id the tracker has given up, so that its tracklet can
  be closed and described.

One :class:`CameraTracker` per camera: nothing is shared between instances.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from typing import Any, Literal

import numpy as np

from keyreid_stream.contracts import Detections, Frame
from keyreid_stream.workers.hog import box_iou

__all__ = ["GMC_METHODS", "REFERENCE_FRAME_RATE", "TRACKERS", "CameraTracker", "tracker_defaults"]

logger = logging.getLogger(__name__)

TrackerKind = Literal["bytetrack", "botsort"]
TRACKERS: tuple[str, ...] = ("bytetrack", "botsort")
REFERENCE_FRAME_RATE = 30.0  # the frame rate ``track_buffer`` is counted at
GMC_METHODS: tuple[str | None, ...] = ("sparseOptFlow", "orb", "sift", "ecc", "none", None)
_HIDDEN = frozenset({"tracker_type", "with_reid", "model"})  # ultralytics keys that are not parameters here
_OUTPUT_COLUMNS = 8  # x1, y1, x2, y2, track id, score, class, detection index


def tracker_defaults(kind: str) -> dict[str, Any]:
    """ultralytics' defaults for ``kind`` (its ``cfg/trackers/<kind>.yaml``), without the re-ID keys."""
    _check_kind(kind)
    from ultralytics.utils import ROOT
    from ultralytics.utils.checks import check_yaml

    path = check_yaml(ROOT / "cfg" / "trackers" / f"{kind}.yaml")  # absolute: a local file cannot shadow it
    try:
        from ultralytics.utils import YAML

        config = YAML.load(path)
    except ImportError:  # older ultralytics: the function before the YAML class
        from ultralytics.utils import yaml_load

        config = yaml_load(path)
    return {key: value for key, value in config.items() if key not in _HIDDEN}


def _check_kind(kind: str) -> None:
    if kind not in TRACKERS:
        close = difflib.get_close_matches(str(kind), TRACKERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown tracker {kind!r}{hint}; known: {', '.join(TRACKERS)}")


def _check_value(name: str, value: Any) -> None:
    if name.endswith("_thresh"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
        expected = "a number in [0, 1]"
    elif name == "track_buffer":
        ok, expected = isinstance(value, int) and not isinstance(value, bool) and value >= 1, "an int >= 1"
    elif name == "fuse_score":
        ok, expected = isinstance(value, bool), "a bool"
    elif name == "gmc_method":
        ok, expected = value in GMC_METHODS, f"one of {', '.join(map(repr, GMC_METHODS))}"
    else:
        return
    if not ok:
        raise ValueError(f"tracker parameter {name} must be {expected}, got {value!r}")


def _with_hint(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _merged_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The defaults overridden by ``params``; unknown names are a TypeError listing the valid ones."""
    params = dict(params)
    if params.pop("with_reid", False):
        raise ValueError("with_reid is always off: keyreid_stream re-identifies people itself (KeyRe-ID)")
    merged = tracker_defaults(kind)
    unknown = sorted(set(params) - set(merged))
    if unknown:
        hints = [_with_hint(name, list(merged)) for name in unknown]
        raise TypeError(f"unknown {kind} parameter(s) {', '.join(hints)}; valid: {', '.join(sorted(merged))}")
    for name, value in params.items():
        _check_value(name, value)
    merged.update(params)
    return merged


def _build_tracker(kind: str, params: dict[str, Any], max_frames_lost: int) -> Any:
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import IterableSimpleNamespace

    args = IterableSimpleNamespace(tracker_type=kind, **{**params, "track_buffer": max_frames_lost})
    if kind == "botsort":
        args.with_reid, args.model = False, "auto"
    tracker_class: Any = BOTSORT if kind == "botsort" else BYTETracker
    if "frame_rate" in inspect.signature(tracker_class).parameters:  # ultralytics < 8.4 scales the buffer
        return tracker_class(args, frame_rate=int(REFERENCE_FRAME_RATE))
    return tracker_class(args)


def _source_rows(output: np.ndarray, detections: Detections) -> np.ndarray:
    """The input detection each output row matched: ultralytics' index, checked against the copied score.

    Older ultralytics numbered low-score detections within their own subset; a row whose index does not
    carry its score falls back to the same-score detection that overlaps its box most.
    """
    index = output[:, 7].astype(np.int64)
    scores = detections.scores
    valid = (index >= 0) & (index < len(detections))
    good = valid.copy()
    if len(scores):
        good &= np.isclose(scores[np.where(valid, index, 0)], output[:, 5], atol=1e-6)
    for row in np.flatnonzero(~good):
        candidates = np.flatnonzero(np.isclose(scores, output[row, 5], atol=1e-6))
        candidates = candidates if len(candidates) else np.arange(len(detections))
        overlap = box_iou(output[row, :4], detections.boxes[candidates].astype(np.float64))
        index[row] = candidates[int(np.argmax(overlap))]
        logger.debug("tracker output row %d: detection index repaired to %d", row, index[row])
    return index


class CameraTracker:
    """ByteTrack or BoT-SORT (ultralytics) over the detections of ONE camera; see the module docstring."""

    def __init__(
        self, kind: TrackerKind = "bytetrack", *, frame_rate: float = 25.0, id_base: int = 0, **params: Any,
    ) -> None:
        _check_kind(kind)
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        if not isinstance(id_base, int) or isinstance(id_base, bool) or id_base < 0:
            raise ValueError(f"id_base must be an int >= 0, got {id_base!r}")
        self.kind = kind
        self.frame_rate = float(frame_rate)
        self.id_base = id_base
        self.params = _merged_params(kind, params)
        buffer = self.params["track_buffer"] * self.frame_rate / REFERENCE_FRAME_RATE
        self.max_frames_lost = max(1, round(buffer))
        self._tracker = _build_tracker(kind, self.params, self.max_frames_lost)
        self.camera_id: str | None = None
        self._emitted: set[int] = set()  # ultralytics ids output and not yet reported finished
        self._finished: list[int] = []
        logger.debug("%s tracker: %s, keeps lost tracks %d updates", kind, self.params, self.max_frames_lost)

    def update(self, frame: Frame, detections: Detections) -> Detections:
        """Track this frame's detections; returns the confirmed tracks with their namespaced ids.

        Empty ``detections`` are fine: the tracker still ages its tracks (lost ones expire).
        """
        self._check_inputs(frame, detections)
        height, width = frame.image.shape[:2]
        output = self._run(frame, detections)
        self._collect_finished(output)
        if not len(output):
            return detections.select(np.zeros(0, np.int64))
        boxes = output[:, :4].copy()
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, float(width))
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, float(height))
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2])
        track_ids = self.id_base + output[:, 4].round().astype(np.int64)
        return detections.select(_source_rows(output, detections)).replace(
            boxes=boxes.astype(np.float32), track_ids=track_ids
        )

    def pop_finished(self) -> list[int]:
        """Namespaced ids of the tracks the tracker has given up since the last call, each reported once."""
        finished, self._finished = self._finished, []
        return finished

    def _check_inputs(self, frame: Frame, detections: Detections) -> None:
        if (detections.camera_id, detections.frame_index) != (frame.camera_id, frame.index):
            raise ValueError(
                f"detections of camera {detections.camera_id!r} frame {detections.frame_index} given with "
                f"frame {frame.index} of camera {frame.camera_id!r}"
            )
        if self.camera_id is None:
            self.camera_id = frame.camera_id
        elif frame.camera_id != self.camera_id:
            raise ValueError(
                f"this tracker follows camera {self.camera_id!r}, got a frame of {frame.camera_id!r}: "
                "use one CameraTracker per camera"
            )

    def _run(self, frame: Frame, detections: Detections) -> np.ndarray:
        """ultralytics' update on this frame: rows ``[x1, y1, x2, y2, id, score, class, index]``."""
        from ultralytics.engine.results import Boxes

        data = np.zeros((len(detections), 6), np.float32)  # xyxy, conf, class 0 (person)
        data[:, :4], data[:, 4] = detections.boxes, detections.scores
        output = self._tracker.update(Boxes(data, frame.image.shape[:2]), frame.image)
        return np.asarray(output, dtype=np.float64).reshape(-1, _OUTPUT_COLUMNS)

    def _collect_finished(self, output: np.ndarray) -> None:
        """Ids output once and now in neither the tracked nor the lost pool were removed by the tracker."""
        self._emitted.update(int(track_id) for track_id in output[:, 4].round())
        pools = (*self._tracker.tracked_stracks, *self._tracker.lost_stracks)
        alive = {int(track.track_id) for track in pools}
        gone = sorted(self._emitted - alive)
        if gone:
            self._emitted.difference_update(gone)
            self._finished.extend(self.id_base + track_id for track_id in gone)
            logger.debug("camera %s: tracks %s finished", self.camera_id, gone)
