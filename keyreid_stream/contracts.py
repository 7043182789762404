"""Data contracts shared by the camera workers, the wire codec and the matcher.

Every contract is a small frozen dataclass whose ``__post_init__`` checks the type, dtype, shape and value
range of each field and raises :class:`ContractError` (a ``ValueError``) naming the field, the expectation
and the actual value. Inside a contract types are strict: arrays must have the exact dtype, integers must be
real ``int`` (not ``bool``/``float``), float fields take ``int``/``float`` (stored as ``float``). Conversion
from lists, tensors, numpy scalars or other dtypes happens only at the edges, in ``create(...)``.
Array fields are stored as read-only views (no copy): the producer must not modify the original buffer
afterwards. ``==`` compares arrays with :func:`numpy.array_equal` (and dtypes); contracts are not hashable.

* :class:`Frame` -- one decoded BGR image of one camera.
* :class:`Detections` -- the people found in one frame: boxes, scores, track ids and COCO-17 keypoints.
* :class:`Tracklet` -- one track on one camera, T >= 1 observations (and optional crops / frame refs).
* :class:`TrackletMessage` -- the descriptor of one tracklet, as published by a worker (see ``wire``).
* :class:`Heartbeat` -- worker liveness with monotonically increasing sequence and counters.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, overload

import numpy as np

__all__ = [
    "CAMERA_ID_PATTERN", "COCO_KEYPOINT_NAMES", "MAX_DESCRIPTOR_DIM", "MAX_ID_CHARS", "MAX_MESSAGE_TIME",
    "MAX_THUMBNAIL_BYTES", "MESSAGE_ID_PATTERN", "NAME_PATTERN", "NUM_KEYPOINTS", "SCHEMA_VERSION", "TRACK_ID_SPAN",
    "ContractError", "Detections", "Frame", "Heartbeat", "Tracklet", "TrackletMessage", "new_message_id", "short_track_id",
    "shown",
]

NUM_KEYPOINTS = 17
COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
SCHEMA_VERSION = 1
MAX_DESCRIPTOR_DIM = 65536
MAX_THUMBNAIL_BYTES = 256 * 1024
MAX_ID_CHARS = 64  # every id and name is ASCII: characters = bytes
MAX_COUNTERS = 32
INT64_LIMIT = 2**63
MAX_MESSAGE_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z: a message's times are unix seconds in [0, this]

# The id and name rules, as regular expressions (full match) that the HTTP API's OpenAPI description also declares.
CAMERA_ID_PATTERN = rf"[A-Za-z0-9_.:-]{{1,{MAX_ID_CHARS}}}"
MESSAGE_ID_PATTERN = r"[0-9a-f]{32}"
NAME_PATTERN = rf"[\x20-\x7e]{{1,{MAX_ID_CHARS}}}"  # printable ASCII, space included
_CAMERA_ID_RE = re.compile(CAMERA_ID_PATTERN)
_COUNTER_KEY_RE = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_ID_CHARS - 1}}}")
_MESSAGE_ID_RE = re.compile(MESSAGE_ID_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)
_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"


class ContractError(ValueError):
    """A value violates a data contract; the message names the field, the expectation and the value."""


def new_message_id() -> str:
    """A fresh random message id: 32 lowercase hex characters (uuid4)."""
    return uuid.uuid4().hex


TRACK_ID_SPAN = 1_000_000  # worker track ids: start time (unix s) * TRACK_ID_SPAN + its own count


def short_track_id(track_id: int) -> int:
    """The worker's own count in a track id (what outputs show: ``cam1 #12``; the full id stays unique)."""
    return track_id % TRACK_ID_SPAN


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to at most ``limit`` characters (ending in "..."): how an error message quotes input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(owner: str, name: str, expected: str, actual: object) -> NoReturn:
    raise ContractError(f"{owner}.{name}: expected {expected}, got {shown(actual)}")


def _check_int(owner: str, name: str, value: object, lo: int = 0, hi: int = INT64_LIMIT) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        _fail(owner, name, "int", type(value).__name__)
    if not lo <= value < hi:
        _fail(owner, name, f"int in [{lo}, {hi})", value)
    return int(value)


def _check_float(owner: str, name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        _fail(owner, name, "finite float", type(value).__name__)
    try:
        result = float(value)
    except OverflowError:
        _fail(owner, name, "finite float", value)
    if not math.isfinite(result):
        _fail(owner, name, "finite float", result)
    return result


def _check_message_time(owner: str, name: str, value: object) -> float:
    result = _check_float(owner, name, value)
    if not 0.0 <= result <= MAX_MESSAGE_TIME:
        _fail(owner, name, f"unix seconds in [0, {MAX_MESSAGE_TIME:.0f}] (1970 to 2100)", result)
    return result


def _check_camera_id(owner: str, value: object) -> str:
    if not isinstance(value, str) or _CAMERA_ID_RE.fullmatch(value) is None:
        _fail(owner, "camera_id", f"str matching [A-Za-z0-9_.:-]{{1,{MAX_ID_CHARS}}}", value)
    return value


def _check_name(owner: str, name: str, value: object) -> str:
    if not isinstance(value, str) or _NAME_RE.fullmatch(value) is None:
        _fail(owner, name, f"1 to {MAX_ID_CHARS} printable ASCII characters (0x20 to 0x7E)", value)
    return value


def _check_array(
    owner: str, name: str, value: object, dtype: type, shape: tuple[int | None, ...]
) -> np.ndarray:
    """Check dtype and shape (``None`` = any size) and return a read-only view of ``value``."""
    if not isinstance(value, np.ndarray):
        _fail(owner, name, f"numpy.ndarray of {np.dtype(dtype)}", type(value).__name__)
    if value.dtype != np.dtype(dtype):
        _fail(owner, name, f"dtype {np.dtype(dtype)}", str(value.dtype))
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        shown = tuple("*" if s is None else s for s in shape)
        _fail(owner, name, f"shape {shown}".replace("'", ""), value.shape)
    view = value.view(np.ndarray)
    view.flags.writeable = False
    return view


def _check_finite(owner: str, name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        _fail(owner, name, "finite values", "NaN or Inf")


def _check_boxes(owner: str, value: object, n: int | None) -> np.ndarray:
    boxes = _check_array(owner, "boxes", value, np.float32, (n, 4))
    _check_finite(owner, "boxes", boxes)
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        _fail(owner, "boxes", "xyxy with x2 >= x1 and y2 >= y1", "inverted box")
    return boxes


def _check_keypoints(owner: str, value: object, n: int) -> np.ndarray:
    keypoints = _check_array(owner, "keypoints", value, np.float32, (n, NUM_KEYPOINTS, 3))
    _check_finite(owner, "keypoints", keypoints)
    confidence = keypoints[..., 2]
    if (confidence < 0).any() or (confidence > 1).any():
        _fail(owner, "keypoints", "confidence in [0, 1]", "out of range")
    return keypoints


def _check_image(owner: str, name: str, value: object) -> np.ndarray:
    image = _check_array(owner, name, value, np.uint8, (None, None, 3))
    if image.shape[0] < 1 or image.shape[1] < 1:
        _fail(owner, name, "non-empty (H, W, 3) image", image.shape)
    return image


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@overload
def _to_int(value: int | np.integer[Any]) -> int: ...
@overload
def _to_int(value: object) -> object: ...
def _to_int(value: object) -> object:
    """Edge conversion of a numpy integer scalar to int; anything else is left for the contract check."""
    return int(value) if isinstance(value, np.integer) else value


@overload
def _to_float(value: float | np.floating[Any] | np.integer[Any]) -> float: ...
@overload
def _to_float(value: object) -> object: ...
def _to_float(value: object) -> object:
    return float(value) if isinstance(value, (np.floating, np.integer)) else value


def _to_array(owner: str, name: str, value: object, dtype: type, empty_shape: tuple[int, ...]) -> np.ndarray:
    """Edge conversion of array-likes: numeric values only, integer targets only from integral values."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        _fail(owner, name, "an array-like of numbers", str(exc))
    if array.size == 0:
        return np.zeros(empty_shape, dtype=dtype)
    target: np.dtype[Any] = np.dtype(dtype)
    if array.dtype.kind not in "iuf" or (target.kind == "u" and array.dtype.kind == "f"):
        _fail(owner, name, f"numbers convertible to {target}", str(array.dtype))
    if target.kind in "iu" and array.dtype != target:
        info = np.iinfo(target)
        if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
            _fail(owner, name, f"integral values convertible to {target}", "non-integral values")
        if array.min() < info.min or array.max() > info.max:
            _fail(owner, name, f"values in the range of {target}", "out of range")
    return np.ascontiguousarray(array.astype(target, copy=False))


@overload
def _to_ref(value: str | os.PathLike[str]) -> str: ...
@overload
def _to_ref(value: object) -> object: ...
def _to_ref(value: object) -> object:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _values_equal(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype \
            and bool(np.array_equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


class _Contract:
    """Base of the contracts: field-wise equality with arrays compared by value."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return all(_values_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields)

    __hash__ = None  # type: ignore[assignment]


class _FrozenMapping(Mapping[str, int]):
    """An immutable (and picklable) str -> int mapping."""

    def __init__(self, data: Mapping[str, int]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> int:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True, eq=False)
class Frame(_Contract):
    """One decoded camera image: ``image`` is (H, W, 3) uint8 BGR; ``timestamp`` in seconds (see
    :mod:`keyreid_stream.clock`)."""

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        _check_camera_id("Frame", self.camera_id)
        _check_int("Frame", "index", self.index)
        _set(self, "timestamp", _check_float("Frame", "timestamp", self.timestamp))
        _set(self, "image", _check_image("Frame", "image", self.image))


@dataclass(frozen=True, eq=False)
class Detections(_Contract):
    """The N people detected in one frame (N may be 0).

    ``boxes`` (N, 4) float32 xyxy pixels, ``scores`` (N,) float32, ``track_ids`` (N,) int64 (-1 = not
    tracked) and ``keypoints`` (N, 17, 3) float32 (x, y, confidence in [0, 1]; 0 = unknown joint).
    """

    camera_id: str
    frame_index: int
    timestamp: float
    boxes: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray
    keypoints: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        owner = "Detections"
        _check_camera_id(owner, self.camera_id)
        _check_int(owner, "frame_index", self.frame_index)
        _set(self, "timestamp", _check_float(owner, "timestamp", self.timestamp))
        boxes = _check_boxes(owner, self.boxes, None)
        n = boxes.shape[0]
        scores = _check_array(owner, "scores", self.scores, np.float32, (n,))
        _check_finite(owner, "scores", scores)
        track_ids = _check_array(owner, "track_ids", self.track_ids, np.int64, (n,))
        if (track_ids < -1).any():
            _fail(owner, "track_ids", "ids >= -1 (-1 = not tracked)", int(track_ids.min()))
        for name, value in (("boxes", boxes), ("scores", scores), ("track_ids", track_ids)):
            _set(self, name, value)
        _set(self, "keypoints", _check_keypoints(owner, self.keypoints, n))

    @classmethod
    def empty(cls, camera_id: str, frame_index: int, timestamp: float) -> Detections:
        """No detections in this frame."""
        return cls.create(camera_id, frame_index, timestamp, np.zeros((0, 4), np.float32), [])

    @classmethod
    def create(
        cls, camera_id: str, frame_index: int, timestamp: float, boxes: Any, scores: Any,
        track_ids: Any = None, keypoints: Any = None,
    ) -> Detections:
        """Edge constructor: coerces array-likes; missing track ids become -1, missing keypoints zeros."""
        owner = "Detections"
        boxes_array = _to_array(owner, "boxes", boxes, np.float32, (0, 4))
        n = boxes_array.shape[0] if boxes_array.ndim else 0
        track_ids = np.full(n, -1, dtype=np.int64) if track_ids is None else track_ids
        keypoints = np.zeros((n, NUM_KEYPOINTS, 3), np.float32) if keypoints is None else keypoints
        return cls(
            camera_id, _to_int(frame_index), _to_float(timestamp), boxes_array,
            _to_array(owner, "scores", scores, np.float32, (0,)),
            _to_array(owner, "track_ids", track_ids, np.int64, (0,)),
            _to_array(owner, "keypoints", keypoints, np.float32, (0, NUM_KEYPOINTS, 3)),
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, index_or_bool_mask: int | slice | Sequence[int] | np.ndarray) -> Detections:
        """A subset: an int (one detection, kept 1-D), a slice, an index array or a bool mask of length N."""
        index: Any = index_or_bool_mask
        if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
            index = [int(index)]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == np.bool_ and index.shape != (len(self),):
                _fail("Detections", "select", f"bool mask of shape ({len(self)},)", index.shape)
            if index.dtype != np.bool_ and (index.dtype.kind not in "iu" or index.ndim != 1):
                if index.size:
                    _fail("Detections", "select", "an int, slice, 1-D int array or bool mask", index.dtype)
                index = index.astype(np.intp).reshape(0)
        return self.replace(boxes=self.boxes[index], scores=self.scores[index],
                            track_ids=self.track_ids[index], keypoints=self.keypoints[index])

    def replace(self, **changes: Any) -> Detections:
        """A copy with some fields replaced; the result is validated again (strict types)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Tracklet(_Contract):
    """One track on one camera with T >= 1 observations, in frame coordinates.

    ``frame_indices`` (T,) int64 strictly increasing, ``timestamps`` (T,) float64 non-decreasing,
    ``boxes`` (T, 4) float32, ``keypoints`` (T, 17, 3) float32; optional ``crops`` (T uint8 (h, w, 3)
    images) and ``frame_refs`` (T strings, e.g. image paths).
    """

    camera_id: str
    track_id: int
    frame_indices: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray
    keypoints: np.ndarray = field(repr=False)
    crops: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    frame_refs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        owner = "Tracklet"
        _check_camera_id(owner, self.camera_id)
        _check_int(owner, "track_id", self.track_id)
        indices = _check_array(owner, "frame_indices", self.frame_indices, np.int64, (None,))
        t = indices.shape[0]
        if t < 1:
            _fail(owner, "frame_indices", "at least one observation", t)
        if indices[0] < 0 or (np.diff(indices) <= 0).any():
            _fail(owner, "frame_indices", "non-negative, strictly increasing indices", indices.tolist()[:8])
        timestamps = _check_array(owner, "timestamps", self.timestamps, np.float64, (t,))
        _check_finite(owner, "timestamps", timestamps)
        if (np.diff(timestamps) < 0).any():
            _fail(owner, "timestamps", "non-decreasing timestamps", "decreasing")
        boxes, keypoints = _check_boxes(owner, self.boxes, t), _check_keypoints(owner, self.keypoints, t)
        for name, value in (("frame_indices", indices), ("timestamps", timestamps), ("boxes", boxes)):
            _set(self, name, value)
        _set(self, "keypoints", keypoints)
        _set(self, "crops", self._checked_crops(t))
        self._check_frame_refs(t)

    def _checked_crops(self, t: int) -> tuple[np.ndarray, ...] | None:
        if self.crops is None:
            return None
        if not isinstance(self.crops, tuple) or len(self.crops) != t:
            _fail("Tracklet", "crops", f"tuple of {t} images", type(self.crops).__name__)
        return tuple(_check_image("Tracklet", f"crops[{i}]", c) for i, c in enumerate(self.crops))

    def _check_frame_refs(self, t: int) -> None:
        refs = self.frame_refs
        if refs is None:
            return
        if not isinstance(refs, tuple) or len(refs) != t:
            _fail("Tracklet", "frame_refs", f"tuple of {t} str", type(refs).__name__)
        for i, ref in enumerate(refs):
            if not isinstance(ref, str) or not ref:
                _fail("Tracklet", f"frame_refs[{i}]", "non-empty str", ref)

    @classmethod
    def create(
        cls, camera_id: str, track_id: int, frame_indices: Any, timestamps: Any, boxes: Any, keypoints: Any,
        crops: Sequence[Any] | None = None, frame_refs: Sequence[str | os.PathLike[str]] | None = None,
    ) -> Tracklet:
        """Edge constructor: coerces array-likes, lists of crops and path-like frame refs."""
        owner = "Tracklet"
        return cls(
            camera_id, _to_int(track_id),
            _to_array(owner, "frame_indices", frame_indices, np.int64, (0,)),
            _to_array(owner, "timestamps", timestamps, np.float64, (0,)),
            _to_array(owner, "boxes", boxes, np.float32, (0, 4)),
            _to_array(owner, "keypoints", keypoints, np.float32, (0, NUM_KEYPOINTS, 3)),
            None if crops is None else tuple(_to_array(owner, "crops", c, np.uint8, (0, 0, 3))
                                             for c in crops),
            None if frame_refs is None else tuple(_to_ref(r) for r in frame_refs),
        )

    @property
    def start_time(self) -> float:
        return float(self.timestamps[0])

    @property
    def end_time(self) -> float:
        return float(self.timestamps[-1])

    def __len__(self) -> int:
        return int(self.frame_indices.shape[0])


@dataclass(frozen=True, eq=False)
class TrackletMessage(_Contract):
    """The message a camera worker publishes for one tracklet: a (D,) float32 descriptor and metadata."""

    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    num_frames: int
    descriptor: np.ndarray
    model_name: str
    model_version: str
    message_id: str = field(default_factory=new_message_id)
    thumbnail_jpeg: bytes | None = field(default=None, repr=False)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        owner = "TrackletMessage"
        _check_envelope(owner, self)
        _check_int(owner, "track_id", self.track_id)
        _set(self, "start_time", _check_message_time(owner, "start_time", self.start_time))
        _set(self, "end_time", _check_message_time(owner, "end_time", self.end_time))
        if self.start_time > self.end_time:
            _fail(owner, "end_time", f">= start_time ({self.start_time})", self.end_time)
        _check_int(owner, "num_frames", self.num_frames, lo=1)
        _check_name(owner, "model_name", self.model_name)
        _check_name(owner, "model_version", self.model_version)
        _set(self, "descriptor", _check_descriptor(owner, self.descriptor))
        _check_thumbnail(owner, self.thumbnail_jpeg)


def _check_envelope(owner: str, message: TrackletMessage | Heartbeat) -> None:
    """The fields every wire message has: schema version, message id and camera id."""
    version = message.schema_version
    if not isinstance(version, int) or isinstance(version, bool) or version != SCHEMA_VERSION:
        _fail(owner, "schema_version", f"int {SCHEMA_VERSION}", version)
    if not isinstance(message.message_id, str) or _MESSAGE_ID_RE.fullmatch(message.message_id) is None:
        _fail(owner, "message_id", "32 lowercase hex chars", message.message_id)
    _check_camera_id(owner, message.camera_id)


def _check_descriptor(owner: str, value: object) -> np.ndarray:
    descriptor = _check_array(owner, "descriptor", value, np.float32, (None,))
    if not 1 <= descriptor.shape[0] <= MAX_DESCRIPTOR_DIM:
        _fail(owner, "descriptor", f"length in [1, {MAX_DESCRIPTOR_DIM}]", descriptor.shape[0])
    _check_finite(owner, "descriptor", descriptor)
    return descriptor


def _check_thumbnail(owner: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, bytes):
        _fail(owner, "thumbnail_jpeg", "bytes or None", type(value).__name__)
    if len(value) > MAX_THUMBNAIL_BYTES:
        _fail(owner, "thumbnail_jpeg", f"at most {MAX_THUMBNAIL_BYTES} bytes", len(value))
    if len(value) < 5 or not value.startswith(_JPEG_START) or not value.endswith(_JPEG_END):
        _fail(owner, "thumbnail_jpeg", "JPEG bytes (FF D8 FF ... FF D9)", value[:4])


@dataclass(frozen=True, eq=False)
class Heartbeat(_Contract):
    """Worker liveness: a per-worker ``sequence`` number and up to 32 named non-negative counters."""

    camera_id: str
    timestamp: float
    sequence: int
    counters: Mapping[str, int] = field(default_factory=dict)
    message_id: str = field(default_factory=new_message_id)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        owner = "Heartbeat"
        _check_envelope(owner, self)
        _set(self, "timestamp", _check_message_time(owner, "timestamp", self.timestamp))
        _check_int(owner, "sequence", self.sequence)
        _set(self, "counters", _check_counters(owner, self.counters))


def _check_counters(owner: str, value: object) -> _FrozenMapping:
    if not isinstance(value, Mapping):
        _fail(owner, "counters", "a mapping of str to int", type(value).__name__)
    if len(value) > MAX_COUNTERS:
        _fail(owner, "counters", f"at most {MAX_COUNTERS} entries", len(value))
    for key, count in value.items():
        if not isinstance(key, str) or _COUNTER_KEY_RE.fullmatch(key) is None:
            _fail(owner, "counters", f"identifier keys of at most {MAX_ID_CHARS} chars", key)
        _check_int(owner, f"counters[{key!r}]", count)
    return value if isinstance(value, _FrozenMapping) else _FrozenMapping(value)
