"""Table-driven tests of the data contracts: valid values, each invalid field, edge coercion, immutability."""

from __future__ import annotations

import dataclasses
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from keyreid_stream.contracts import (
    COCO_KEYPOINT_NAMES,
    MAX_DESCRIPTOR_DIM,
    MAX_ID_CHARS,
    MAX_THUMBNAIL_BYTES,
    NUM_KEYPOINTS,
    SCHEMA_VERSION,
    ContractError,
    Detections,
    Frame,
    Heartbeat,
    Tracklet,
    TrackletMessage,
    new_message_id,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"
MESSAGE_ID = "0123456789abcdef0123456789abcdef"


def f32(*values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def keypoints(n: int, confidence: float = 0.5) -> np.ndarray:
    kp = np.zeros((n, NUM_KEYPOINTS, 3), np.float32)
    kp[..., 2] = confidence
    return kp


def frame_kwargs() -> dict[str, Any]:
    return {"camera_id": "cam-0", "index": 3, "timestamp": 1700000000.25,
            "image": np.zeros((4, 6, 3), np.uint8)}


def detections_kwargs() -> dict[str, Any]:
    return {
        "camera_id": "cam-0", "frame_index": 7, "timestamp": 12.5,
        "boxes": np.array([[0, 0, 10, 20], [5, 5, 6, 9]], np.float32),
        "scores": f32(0.9, 0.4), "track_ids": np.array([3, -1], np.int64), "keypoints": keypoints(2),
    }


def tracklet_kwargs() -> dict[str, Any]:
    return {
        "camera_id": "cam-0", "track_id": 4,
        "frame_indices": np.array([1, 2, 5], np.int64), "timestamps": np.array([0.1, 0.2, 0.2]),
        "boxes": np.tile(f32(0, 0, 2, 4), (3, 1)), "keypoints": keypoints(3),
        "crops": tuple(np.zeros((4, 2, 3), np.uint8) for _ in range(3)),
        "frame_refs": ("a.jpg", "b.jpg", "c.jpg"),
    }


def message_kwargs() -> dict[str, Any]:
    return {
        "camera_id": "lobby:1", "track_id": 12, "start_time": 10.0, "end_time": 12.5, "num_frames": 30,
        "descriptor": np.linspace(-1, 1, 16, dtype=np.float32), "model_name": "keyreid-vit",
        "model_version": "1.0.0", "message_id": MESSAGE_ID, "thumbnail_jpeg": JPEG,
    }


def heartbeat_kwargs() -> dict[str, Any]:
    return {"camera_id": "cam-0", "timestamp": 99.0, "sequence": 5,
            "counters": {"frames": 100, "dropped_frames": 0}, "message_id": MESSAGE_ID}


FACTORIES: dict[type, Callable[[], dict[str, Any]]] = {
    Frame: frame_kwargs, Detections: detections_kwargs, Tracklet: tracklet_kwargs,
    TrackletMessage: message_kwargs, Heartbeat: heartbeat_kwargs,
}


def with_value(array: np.ndarray, index: Any, value: float) -> np.ndarray:
    out = array.copy()
    out[index] = value
    return out


BAD_CAMERA_IDS = ["", "has space", "x" * (MAX_ID_CHARS + 1), "caméra", "cam\n", 5, None, b"cam"]

# (contract, field) -> bad values: each must raise ContractError whose message starts with "Contract.field".
BAD_VALUES: dict[tuple[type, str], list[Any]] = {
    **{(cls, "camera_id"): BAD_CAMERA_IDS for cls in FACTORIES},
    (Frame, "index"): [-1, True, 1.0, np.int64(1), 2**63, None],
    (Frame, "timestamp"): [float("nan"), float("inf"), "1.0", True, 10**400, np.float32(1)],
    (Frame, "image"): [np.zeros((4, 6, 3), np.float32), np.zeros((4, 6), np.uint8),
                       np.zeros((4, 6, 4), np.uint8), np.zeros((0, 6, 3), np.uint8), [[[0, 0, 0]]]],
    (Detections, "frame_index"): [-1, False, 2.0],
    (Detections, "timestamp"): [float("-inf"), None],
    (Detections, "boxes"): [
        np.zeros((2, 5), np.float32), np.zeros((2, 4), np.float64), [[0, 0, 1, 1], [0, 0, 1, 1]],
        with_value(detections_kwargs()["boxes"], (0, 0), np.nan),
        with_value(detections_kwargs()["boxes"], (0, 2), -1.0),  # x2 < x1
        with_value(detections_kwargs()["boxes"], (1, 3), 0.0),  # y2 < y1
    ],
    (Detections, "scores"): [f32(0.9), np.array([0.9, 0.4]), f32(0.9, np.inf), f32(0.9, 0.4).reshape(2, 1)],
    (Detections, "track_ids"): [np.array([3, -1], np.int32), np.array([3, -2]), np.array([3]),
                                np.array([3.0, -1.0])],
    (Detections, "keypoints"): [
        np.zeros((2, 16, 3), np.float32), keypoints(1), keypoints(2).astype(np.float64), keypoints(2, 1.5),
        keypoints(2, -0.1), with_value(keypoints(2), (0, 0, 0), np.nan),
    ],
    (Tracklet, "track_id"): [-1, 2**63, True],
    (Tracklet, "frame_indices"): [
        np.array([1, 1, 2]), np.array([3, 2, 5]), np.array([-1, 2, 5]), np.array([1, 2, 5], np.int32),
        np.zeros(0, np.int64), np.array([[1, 2, 5]]),
    ],
    (Tracklet, "timestamps"): [np.array([0.3, 0.2, 0.4]), np.array([0.1, np.nan, 0.4]),
                               np.array([0.1, 0.2, 0.3], np.float32), np.array([0.1, 0.2])],
    (Tracklet, "boxes"): [np.zeros((2, 4), np.float32), np.zeros((3, 4))],
    (Tracklet, "keypoints"): [keypoints(2), keypoints(3, 2.0)],
    (Tracklet, "crops"): [
        [np.zeros((4, 2, 3), np.uint8)] * 3, (np.zeros((4, 2, 3), np.uint8),),
        tuple(np.zeros((4, 2, 3), np.float32) for _ in range(3)),
        tuple(np.zeros((4, 2), np.uint8) for _ in range(3)),
    ],
    (Tracklet, "frame_refs"): [("a", "b"), ["a", "b", "c"], ("a", "", "c"), ("a", Path("b"), "c")],
    (TrackletMessage, "track_id"): [-1, 2**63, True, 1.0, np.int64(3)],
    (TrackletMessage, "start_time"): [float("nan"), "10", -1.0, 1e300],
    (TrackletMessage, "end_time"): [9.0, float("inf")],  # 9.0 < start_time
    (TrackletMessage, "num_frames"): [0, False, 2.0],
    (TrackletMessage, "descriptor"): [
        f32(1, np.nan), f32(1, np.inf), f32(-np.inf, 1), np.ones(4), np.ones((2, 4), np.float32), f32(),
        np.ones(MAX_DESCRIPTOR_DIM + 1, np.float32), [1.0, 2.0],
    ],
    (TrackletMessage, "model_name"): ["", "m" * (MAX_ID_CHARS + 1), "a\nb", None, "mod\u00e8le", "\u4e00"],
    (TrackletMessage, "model_version"): ["", "\x00"],
    (TrackletMessage, "message_id"): [MESSAGE_ID.upper(), MESSAGE_ID[:-1], "g" * 32, MESSAGE_ID + "\n"],
    (TrackletMessage, "thumbnail_jpeg"): [
        b"not a jpeg", bytearray(JPEG), b"", JPEG[:-1], JPEG[:3] + b"\x00" * MAX_THUMBNAIL_BYTES + JPEG[-2:],
    ],
    (TrackletMessage, "schema_version"): [SCHEMA_VERSION + 1, True],
    (Heartbeat, "timestamp"): [float("nan"), None, 4_102_444_800.5],
    (Heartbeat, "sequence"): [-1, True, 1.5],
    (Heartbeat, "counters"): [
        {"1abc": 1}, {"": 1}, {"a-b": 1}, {"k" * (MAX_ID_CHARS + 1): 1}, {3: 1}, {"a": -1}, {"a": True},
        {"a": 1.0}, {"a": 2**63}, {f"c{i}": i for i in range(33)}, [("a", 1)],
    ],
    (Heartbeat, "message_id"): [""],
    (Heartbeat, "schema_version"): [0],
}
INVALID = [(cls, name, bad) for (cls, name), values in BAD_VALUES.items() for bad in values]


@pytest.mark.parametrize("cls", list(FACTORIES), ids=lambda c: c.__name__)
def test_valid_construction(cls: type) -> None:
    kwargs = FACTORIES[cls]()
    obj = cls(**kwargs)
    assert obj == cls(**FACTORIES[cls]())
    for name, value in kwargs.items():
        stored = getattr(obj, name)
        if isinstance(value, np.ndarray):
            assert stored.dtype == value.dtype and np.array_equal(stored, value)
        elif name != "counters" and name != "crops":
            assert stored == value


@pytest.mark.parametrize(
    ("cls", "field_name", "bad"), INVALID,
    ids=[f"{c.__name__}.{f}-{i}" for i, (c, f, _) in enumerate(INVALID)],
)
def test_invalid_field_rejected(cls: type, field_name: str, bad: Any) -> None:
    kwargs = FACTORIES[cls]()
    kwargs[field_name] = bad
    with pytest.raises(ContractError, match=rf"^{cls.__name__}\.{re.escape(field_name)}\b") as info:
        cls(**kwargs)
    assert "expected" in str(info.value) and "got" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_module_constants() -> None:
    assert NUM_KEYPOINTS == len(COCO_KEYPOINT_NAMES) == 17
    assert COCO_KEYPOINT_NAMES[0] == "nose" and COCO_KEYPOINT_NAMES[-1] == "right_ankle"
    assert (SCHEMA_VERSION, MAX_DESCRIPTOR_DIM, MAX_THUMBNAIL_BYTES, MAX_ID_CHARS) == (1, 65536, 262144, 64)


def test_new_message_id_is_random_lowercase_hex() -> None:
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    a, b = TrackletMessage(**{**message_kwargs(), "message_id": new_message_id()}), Heartbeat("c", 1.0, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", b.message_id) and a.message_id != b.message_id


@pytest.mark.parametrize(
    ("cls", "field_name", "value"),
    [(Frame, "timestamp", 5), (Detections, "timestamp", np.float64(2.5)), (TrackletMessage, "start_time", 1),
     (Heartbeat, "timestamp", 7)],
)
def test_float_fields_accept_ints_and_store_float(cls: type, field_name: str, value: Any) -> None:
    obj = cls(**{**FACTORIES[cls](), field_name: value})
    assert type(getattr(obj, field_name)) is float and getattr(obj, field_name) == value


# ------------------------------------------------------------------------------------- create()


@pytest.mark.parametrize(
    ("boxes", "scores", "track_ids", "kps", "n"),
    [
        ([[0, 0, 1, 2]], [0.5], None, None, 1),
        (np.array([[0, 0, 1, 2], [1, 1, 3, 3]], np.float64), np.array([0.5, 0.2]), [4, 5], None, 2),
        ([], [], None, None, 0),
        (np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros((0, 17, 3)), 0),
        ([[0, 0, 1, 2]], [1], np.array([7.0], np.float32), keypoints(1).astype(np.float64), 1),
        ([[0, 0, 1, 2]], [0.5], np.array([7], np.uint8), keypoints(1).tolist(), 1),
    ],
)
def test_detections_create_coerces(boxes: Any, scores: Any, track_ids: Any, kps: Any, n: int) -> None:
    det = Detections.create("cam", np.int64(3), np.float32(1.5), boxes, scores, track_ids, kps)
    assert len(det) == n and det.frame_index == 3 and type(det.frame_index) is int
    assert type(det.timestamp) is float
    assert det.boxes.dtype == np.float32 and det.boxes.shape == (n, 4)
    assert det.scores.dtype == np.float32 and det.track_ids.dtype == np.int64
    assert det.keypoints.dtype == np.float32 and det.keypoints.shape == (n, 17, 3)
    if track_ids is None:
        assert (det.track_ids == -1).all()
    if kps is None:
        assert not det.keypoints.any()


@pytest.mark.parametrize(
    ("field_name", "changes"),
    [
        ("track_ids", {"track_ids": [1.5]}), ("track_ids", {"track_ids": np.array([2**63], np.uint64)}),
        ("track_ids", {"track_ids": [np.nan]}), ("boxes", {"boxes": [["a", "b", "c", "d"]]}),
        ("scores", {"scores": [True]}), ("boxes", {"boxes": [[0, 0, 1]]}), ("scores", {"scores": [0.5, 0.5]}),
        ("frame_index", {"frame_index": 1.0}),
    ],
)
def test_detections_create_rejects(field_name: str, changes: dict[str, Any]) -> None:
    kwargs = {"camera_id": "cam", "frame_index": 0, "timestamp": 0.0, "boxes": [[0, 0, 1, 1]],
              "scores": [0.5]}
    with pytest.raises(ContractError, match=rf"^Detections\.{field_name}"):
        Detections.create(**{**kwargs, **changes})


def test_detections_empty() -> None:
    det = Detections.empty("cam", 4, 2.0)
    assert len(det) == 0 and det.boxes.shape == (0, 4) and det.keypoints.shape == (0, 17, 3)
    assert det == Detections.create("cam", 4, 2.0, [], [])
    assert len(det.select(np.zeros(0, bool))) == 0 and len(det.select([])) == 0


@pytest.mark.parametrize(
    ("index", "expected_ids"),
    [(0, [3]), (np.int64(1), [-1]), (-1, [-1]), (slice(0, 1), [3]), (slice(None), [3, -1]), ([1, 0], [-1, 3]),
     (np.array([True, False]), [3]), ([False, False], []), (np.array([], np.int64), [])],
)
def test_detections_select(index: Any, expected_ids: list[int]) -> None:
    det = Detections(**detections_kwargs())
    sub = det.select(index)
    assert isinstance(sub, Detections) and sub.track_ids.tolist() == expected_ids
    assert len(sub) == len(expected_ids) == sub.keypoints.shape[0] == sub.scores.shape[0]
    assert (sub.camera_id, sub.frame_index, sub.timestamp) == (det.camera_id, det.frame_index, det.timestamp)


@pytest.mark.parametrize("index", [np.array([True]), [True, False, True], np.array([0.5]), [[0]]])
def test_detections_select_rejects_bad_index(index: Any) -> None:
    with pytest.raises(ContractError, match="Detections.select"):
        Detections(**detections_kwargs()).select(index)


def test_detections_select_out_of_range() -> None:
    with pytest.raises(IndexError):
        Detections(**detections_kwargs()).select(5)


def test_detections_replace_revalidates() -> None:
    det = Detections(**detections_kwargs())
    tracked = det.replace(track_ids=np.array([8, 9], np.int64))
    assert tracked.track_ids.tolist() == [8, 9] and det.track_ids.tolist() == [3, -1]
    assert np.array_equal(tracked.boxes, det.boxes) and tracked != det
    with pytest.raises(ContractError, match="track_ids"):
        det.replace(track_ids=np.array([8, 9], np.int32))
    with pytest.raises(ContractError, match="scores"):
        det.replace(scores=f32(1.0))


def test_tracklet_create_and_properties() -> None:
    trk = Tracklet.create(
        "cam", np.int64(2), [10, 11, 13], [1.0, 1.5, 2.0], [[0, 0, 1, 1]] * 3, np.zeros((3, 17, 3)),
        crops=[np.zeros((3, 2, 3), np.uint8)] * 3, frame_refs=[Path("/x/a.jpg"), "b.jpg", "c.jpg"],
    )
    assert len(trk) == 3 and trk.track_id == 2 and type(trk.track_id) is int
    assert (trk.start_time, trk.end_time) == (1.0, 2.0)
    assert trk.frame_indices.dtype == np.int64 and trk.timestamps.dtype == np.float64
    assert trk.frame_refs == ("/x/a.jpg", "b.jpg", "c.jpg") and isinstance(trk.crops, tuple)
    single = Tracklet.create("cam", 0, [0], [5.0], [[0, 0, 1, 1]], np.zeros((1, 17, 3)))
    assert len(single) == 1 and single.start_time == single.end_time == 5.0 and single.crops is None


@pytest.mark.parametrize(
    ("field_name", "changes"),
    [("frame_indices", {"frame_indices": []}), ("frame_indices", {"frame_indices": [0.5]}),
     ("crops", {"crops": [np.zeros((2, 2, 3), np.float32)]}), ("frame_refs", {"frame_refs": [3]}),
     ("timestamps", {"timestamps": ["x"]})],
)
def test_tracklet_create_rejects(field_name: str, changes: dict[str, Any]) -> None:
    kwargs = {"camera_id": "cam", "track_id": 0, "frame_indices": [0], "timestamps": [0.0],
              "boxes": [[0, 0, 1, 1]], "keypoints": np.zeros((1, 17, 3))}
    with pytest.raises(ContractError, match=rf"^Tracklet\.{field_name}"):
        Tracklet.create(**{**kwargs, **changes})


# ---------------------------------------------------------------------------------- immutability


@pytest.mark.parametrize("cls", list(FACTORIES), ids=lambda c: c.__name__)
def test_frozen(cls: type) -> None:
    obj = cls(**FACTORIES[cls]())
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.camera_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(obj)


@pytest.mark.parametrize(
    ("cls", "field_name"),
    [(Frame, "image"), (Detections, "boxes"), (Detections, "track_ids"), (Detections, "keypoints"),
     (Tracklet, "timestamps"), (Tracklet, "frame_indices"), (TrackletMessage, "descriptor")],
)
def test_arrays_are_read_only_views(cls: type, field_name: str) -> None:
    kwargs = FACTORIES[cls]()
    source = kwargs[field_name]
    obj = cls(**kwargs)
    with pytest.raises(ValueError, match="read-only"):
        getattr(obj, field_name)[...] = 0
    assert source.flags.writeable  # the producer's own array is left untouched


def test_crops_read_only_and_counters_immutable() -> None:
    trk = Tracklet(**tracklet_kwargs())
    assert trk.crops is not None
    with pytest.raises(ValueError, match="read-only"):
        trk.crops[0][0, 0, 0] = 1
    counters = {"frames": 1}
    hb = Heartbeat("cam", 1.0, 0, counters)
    counters["frames"] = 99
    assert hb.counters["frames"] == 1 and dict(hb.counters) == {"frames": 1}
    with pytest.raises(TypeError):
        hb.counters["frames"] = 2  # type: ignore[index]
    assert Heartbeat("cam", 1.0, 0).counters == {}


@pytest.mark.parametrize("cls", list(FACTORIES), ids=lambda c: c.__name__)
def test_equality_and_pickle(cls: type) -> None:
    obj = cls(**FACTORIES[cls]())
    assert obj == pickle.loads(pickle.dumps(obj))
    assert obj != object() and obj != "x"
    assert obj != cls(**{**FACTORIES[cls](), "camera_id": "other"})


@pytest.mark.parametrize(
    ("cls", "field_name", "other"),
    [(TrackletMessage, "descriptor", np.linspace(-1, 1, 16, dtype=np.float32)[::-1].copy()),
     (TrackletMessage, "thumbnail_jpeg", None), (Heartbeat, "counters", {"frames": 100}),
     (Tracklet, "crops", tuple(np.ones((4, 2, 3), np.uint8) for _ in range(3))),
     (Tracklet, "frame_refs", None),
     (Frame, "image", np.ones((4, 6, 3), np.uint8)), (Detections, "track_ids", np.array([3, 4]))],
)
def test_inequality_per_field(cls: type, field_name: str, other: Any) -> None:
    assert cls(**FACTORIES[cls]()) != cls(**{**FACTORIES[cls](), field_name: other})
