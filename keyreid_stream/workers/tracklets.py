"""From tracked detections to tracklets: what a camera worker keeps of each track, and when it lets go.

Per camera, :class:`TrackletAccumulator` keeps the open tracks. Each frame's tracked :class:`Detections` add one
observation per track (crop, box, keypoints), if it passes the quality filters: a minimum box size, a minimum
detection score, and at most ``max_overlap`` of the box covered by another person (occluded crops mix two
people). A track becomes a :class:`TrackletSegment` when

* it ends: the tracker gives it up (:meth:`TrackletAccumulator.finish`) or it is unseen for ``lost_after_s``;
* it has been open for ``emit_every_s`` (a long track is sent in segments, so the matcher does not wait for a
  person who stays in view; the segments keep the track id);
* the worker stops (:meth:`TrackletAccumulator.flush`).

Times are the frames' timestamps (stream time), so a file read faster than real time behaves like the camera.
Memory is bounded: at most ``max_observations`` per segment (when full, every other one is dropped and the
track keeps every second frame from then on: the segment stays evenly spread over its time span), and crops
taller than ``max_crop_height`` are downscaled. Segments with fewer than ``min_frames`` observations are
discarded and counted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS, Detections, Frame, Tracklet

__all__ = ["KeypointFn", "TrackletAccumulator", "TrackletSegment", "encode_thumbnail",
           "thumbnail_jpeg"]

logger = logging.getLogger(__name__)

THUMBNAIL_HEIGHT = 128


# (frame, boxes (N, 4)) -> keypoints (N, 17, 3) in frame pixels; called only for the kept observations.
KeypointFn = Callable[[Frame, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TrackletSegment:
    """A finished tracklet: its kept observations (with crops) and what the track did over the whole segment.

    ``first_seen``/``last_seen``: stream times of the first and last frame the track was seen in (observations
    may be fewer: filtered or thinned); ``frames_seen``: frames the track was seen in; ``reason``: ``ended``,
    ``periodic`` or ``flush``; ``ready_at``: monotonic clock when the last frame was read (latency metrics).
    """

    tracklet: Tracklet
    first_seen: float
    last_seen: float
    frames_seen: int
    reason: str
    ready_at: float


@dataclass
class _OpenTrack:
    track_id: int
    first_seen: float
    last_seen: float
    last_read_at: float
    frames_seen: int = 0
    keep_every: int = 1
    frame_indices: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)

    def thin(self) -> None:
        for name in ("frame_indices", "timestamps", "boxes", "keypoints", "crops"):
            setattr(self, name, getattr(self, name)[::2])
        self.keep_every *= 2


def _clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Integer pixel boxes inside the frame (the crop is exactly the box)."""
    clipped = np.empty_like(boxes, dtype=np.float32)
    clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    clipped[:, :2] = np.floor(clipped[:, :2])
    clipped[:, 2:] = np.ceil(clipped[:, 2:])
    return clipped


def covered_fraction(boxes: np.ndarray) -> np.ndarray:
    """For each box, the largest fraction of its area covered by one other box of the same frame."""
    count = len(boxes)
    if count < 2:
        return np.zeros(count, np.float32)
    top_left = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    np.fill_diagonal(inter, 0.0)
    areas = np.maximum((boxes[:, 2:] - boxes[:, :2]).prod(axis=1), 1e-6)
    result: np.ndarray = (inter / areas[:, None]).max(axis=1).astype(np.float32)
    return result


class TrackletAccumulator:
    """The open tracks of one camera; see the module docstring for the rules."""

    def __init__(self, camera_id: str, *, min_frames: int = 4, lost_after_s: float = 1.0, emit_every_s: float = 10.0,
                 max_observations: int = 32, min_box_height: float = 48.0, min_box_width: float = 16.0,
                 min_confidence: float = 0.3, max_overlap: float = 0.6, max_crop_height: int = 256) -> None:
        if max_observations < max(2, min_frames):
            raise ValueError("max_observations must be >= max(2, min_frames)")
        self.camera_id = camera_id
        self.min_frames, self.lost_after_s, self.emit_every_s = min_frames, lost_after_s, emit_every_s
        self.max_observations, self.max_crop_height = max_observations, max_crop_height
        self.min_size = np.array([min_box_width, min_box_height], np.float32)
        self.min_confidence, self.max_overlap = min_confidence, max_overlap
        self.open: dict[int, _OpenTrack] = {}
        self.counts: Counter[str] = Counter()
        self._last_time = -np.inf

    def add(self, frame: Frame, tracked: Detections, keypoints_fn: KeypointFn | None = None) -> list[TrackletSegment]:
        """Add one frame's tracked detections; returns the segments this frame completes (lost or periodic).

        ``keypoints_fn`` estimates keypoints for the kept observations when the detections carry none (all
        confidences zero); with ``None`` the detections' own keypoints are used.
        """
        if frame.camera_id != self.camera_id or tracked.camera_id != self.camera_id:
            raise ValueError(f"accumulator of camera {self.camera_id!r} got camera {frame.camera_id!r}")
        now = time.monotonic()
        self._last_time = max(self._last_time, frame.timestamp)
        tracked = tracked.select(tracked.track_ids >= 0)
        boxes = _clip_boxes(tracked.boxes, frame.image.shape[1], frame.image.shape[0])
        keep = self._quality(tracked, boxes) & self._due(tracked, frame, now)
        self._store(frame, tracked, boxes, keep, keypoints_fn)
        return self._collect(frame.timestamp)

    def finish(self, track_ids: list[int]) -> list[TrackletSegment]:
        """Close the tracks the tracker has given up."""
        return [s for s in (self._close(self.open.pop(i), "ended") for i in track_ids if i in self.open) if s]

    def flush(self) -> list[TrackletSegment]:
        """Close every open track (the worker is stopping or the stream ended)."""
        tracks, self.open = list(self.open.values()), {}
        return [segment for segment in (self._close(track, "flush") for track in tracks) if segment]

    # -- internals -------------------------------------------------------------------------------------------

    def _quality(self, tracked: Detections, boxes: np.ndarray) -> np.ndarray:
        big = ((boxes[:, 2:] - boxes[:, :2]) >= self.min_size).all(axis=1)
        confident = tracked.scores >= self.min_confidence
        clear = covered_fraction(boxes) <= self.max_overlap
        self.counts["rejected_small"] += int((~big).sum())
        self.counts["rejected_confidence"] += int((big & ~confident).sum())
        self.counts["rejected_overlap"] += int((big & confident & ~clear).sum())
        result: np.ndarray = big & confident & clear
        return result

    def _due(self, tracked: Detections, frame: Frame, now: float) -> np.ndarray:
        """Mark every track as seen; True where its thinning schedule takes this frame."""
        due = np.zeros(len(tracked), bool)
        for row, track_id in enumerate(tracked.track_ids.tolist()):
            track = self.open.get(track_id)
            if track is None:
                track = self.open[track_id] = _OpenTrack(track_id, frame.timestamp, frame.timestamp, now)
            track.last_seen, track.last_read_at = frame.timestamp, now
            due[row] = track.frames_seen % track.keep_every == 0
            track.frames_seen += 1
        return due

    def _store(self, frame: Frame, tracked: Detections, boxes: np.ndarray, keep: np.ndarray,
               keypoints_fn: KeypointFn | None) -> None:
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        points = tracked.keypoints[rows]
        if keypoints_fn is not None and not (points[..., 2] > 0).any():
            points = np.asarray(keypoints_fn(frame, boxes[rows]), np.float32).reshape(len(rows), NUM_KEYPOINTS, 3)
        for row, keypoints in zip(rows.tolist(), points):
            track = self.open[int(tracked.track_ids[row])]
            if len(track.frame_indices) >= self.max_observations:
                track.thin()
            track.frame_indices.append(frame.index)
            track.timestamps.append(frame.timestamp)
            track.boxes.append(boxes[row])
            track.keypoints.append(keypoints)
            track.crops.append(self._crop(frame.image, boxes[row]))
            self.counts["observations"] += 1

    def _crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (int(v) for v in box)
        crop = image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]
        if crop.shape[0] > self.max_crop_height:
            width = max(1, round(crop.shape[1] * self.max_crop_height / crop.shape[0]))
            return cv2.resize(crop, (width, self.max_crop_height), interpolation=cv2.INTER_AREA)
        copied: np.ndarray = crop.copy()  # do not keep the whole frame alive
        return copied

    def _collect(self, now: float) -> list[TrackletSegment]:
        finished = []
        for track_id, track in list(self.open.items()):
            if now - track.last_seen > self.lost_after_s:
                del self.open[track_id]
                finished.append(self._close(track, "ended"))
            elif now - track.first_seen >= self.emit_every_s and len(track.frame_indices) >= self.min_frames:
                finished.append(self._close(track, "periodic"))
                self.open[track_id] = _OpenTrack(track_id, now, now, track.last_read_at, frames_seen=0)
        return [segment for segment in finished if segment is not None]

    def _close(self, track: _OpenTrack, reason: str) -> TrackletSegment | None:
        if len(track.frame_indices) < self.min_frames:
            self.counts["discarded_short"] += 1
            return None
        self.counts[f"tracklets_{reason}"] += 1
        tracklet = Tracklet.create(
            self.camera_id, track.track_id, track.frame_indices, track.timestamps, np.stack(track.boxes),
            np.stack(track.keypoints), crops=track.crops,
        )
        return TrackletSegment(tracklet, track.first_seen, track.last_seen, track.frames_seen, reason,
                               track.last_read_at)


def thumbnail_jpeg(tracklet: Tracklet, height: int = THUMBNAIL_HEIGHT) -> bytes | None:
    """A JPEG of the tracklet's largest crop, ``height`` pixels tall (None without crops)."""
    if not tracklet.crops:
        return None
    return encode_thumbnail(max(tracklet.crops, key=lambda image: image.shape[0] * image.shape[1]), height)


def encode_thumbnail(crop: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> bytes:
    """A person crop (BGR) resized to ``height`` pixels tall, as JPEG bytes."""
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    interpolation = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    ok, buffer = cv2.imencode(".jpg", cv2.resize(crop, (width, height), interpolation=interpolation),
                              [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG thumbnail")
    return buffer.tobytes()
