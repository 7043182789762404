"""YOLO-pose backend: a real ultralytics pose model built from its yaml (random weights) on bus.jpg.

Random weights give meaningless but valid people once the confidence threshold is 0; a threshold of 1 finds
nobody. Model sources are checked before anything is loaded: no download, no unpickling of a local ``.pt``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from keyreid_stream.contracts import NUM_KEYPOINTS, Detections, Frame
from keyreid_stream.keypoints.pose import PersonPoses, PoseError
from keyreid_stream.keypoints.yolo_pose import YoloPose, check_pose_model_source

MODEL_YAML = "yolo11n-pose.yaml"
IMAGE_SIZE = 320
MAX_PEOPLE = 5




def _model(confidence: float) -> YoloPose:
    import torch

    torch.manual_seed(0)
    return YoloPose(
        MODEL_YAML, device="cpu", confidence=confidence, image_size=IMAGE_SIZE, max_people=MAX_PEOPLE
    )


@pytest.fixture(scope="module")
def yolo(yolo_settings: None) -> YoloPose:
    return _model(confidence=0.0)  # random weights: every candidate box is kept


@pytest.fixture(scope="module")
def strict_yolo(yolo_settings: None) -> YoloPose:
    return _model(confidence=1.0)  # no score reaches 1: nobody


@pytest.fixture(scope="module")
def photo(bus_photo: np.ndarray) -> np.ndarray:
    return bus_photo


@pytest.fixture(scope="module")
def crop(photo: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(photo[100:280, 10:90])


def _assert_valid(poses: PersonPoses, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    count = len(poses)
    assert poses.boxes.dtype == poses.scores.dtype == poses.keypoints.dtype == np.float32
    assert poses.boxes.shape == (count, 4) and poses.scores.shape == (count,)
    assert poses.keypoints.shape == (count, NUM_KEYPOINTS, 3)
    for array in (poses.boxes, poses.scores, poses.keypoints):
        assert np.isfinite(array).all()
    assert ((poses.scores >= 0) & (poses.scores <= 1)).all()
    boxes = poses.boxes
    assert (boxes[:, 0] >= -1).all() and (boxes[:, 1] >= -1).all()
    assert (boxes[:, 2] <= width + 1).all() and (boxes[:, 3] <= height + 1).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    confidence = poses.keypoints[..., 2]
    assert ((confidence >= 0) & (confidence <= 1)).all()
    assert (poses.keypoints[confidence == 0][:, :2] == 0).all()


def test_detect_finds_people_with_zero_threshold(yolo: YoloPose, photo: np.ndarray, crop: np.ndarray) -> None:
    found = yolo.detect([photo, crop])
    assert len(found) == 2 and all(isinstance(poses, PersonPoses) for poses in found)
    for poses, image in zip(found, (photo, crop)):
        assert 1 <= len(poses) <= MAX_PEOPLE
        _assert_valid(poses, image)
    assert len(found[0]) == MAX_PEOPLE  # a zero threshold keeps more candidates than max_people allows


@pytest.mark.parametrize("max_people", [1, 3])
def test_max_people(yolo: YoloPose, photo: np.ndarray, max_people: int) -> None:
    saved = dict(yolo.predict_options)
    yolo.predict_options["max_det"] = max_people
    try:
        poses = yolo.detect([photo])[0]
    finally:
        yolo.predict_options.clear()
        yolo.predict_options.update(saved)
    assert len(poses) == max_people


def test_estimate_crops_with_people(yolo: YoloPose, photo: np.ndarray, crop: np.ndarray) -> None:
    keypoints = yolo.estimate_crops([crop, photo])
    assert keypoints.shape == (2, NUM_KEYPOINTS, 3) and keypoints.dtype == np.float32
    assert (keypoints[..., 2] > 0).any(axis=1).all()


def test_nobody_above_threshold(strict_yolo: YoloPose, photo: np.ndarray, crop: np.ndarray) -> None:
    found = strict_yolo.detect([photo, crop])
    assert len(found) == 2
    for poses in found:
        assert len(poses) == 0
        assert poses.boxes.shape == (0, 4) and poses.scores.shape == (0,)
        assert poses.keypoints.shape == (0, NUM_KEYPOINTS, 3)
    keypoints = strict_yolo.estimate_crops([crop, photo, crop])
    assert keypoints.shape == (3, NUM_KEYPOINTS, 3) and keypoints.dtype == np.float32
    assert (keypoints == 0).all()
    boxed = strict_yolo.estimate_boxes(photo, np.array([[20, 40, 120, 300]], np.float32))
    assert boxed.shape == (1, NUM_KEYPOINTS, 3) and (boxed == 0).all()


def test_detect_frames(yolo: YoloPose, strict_yolo: YoloPose, photo: np.ndarray, crop: np.ndarray) -> None:
    frames = [Frame(camera_id="cam-a", index=7, timestamp=12.5, image=photo),
              Frame(camera_id="cam-b", index=8, timestamp=13.25, image=crop)]
    detections = yolo.detect_frames(frames)
    expected = yolo.detect([photo, crop])
    assert len(detections) == 2
    for dets, frame, poses in zip(detections, frames, expected):
        assert isinstance(dets, Detections)
        assert dets.camera_id == frame.camera_id
        assert dets.frame_index == frame.index and dets.timestamp == frame.timestamp
        assert len(dets) == len(poses) > 0
        assert dets.keypoints.shape == (len(dets), NUM_KEYPOINTS, 3)
        assert (dets.track_ids == -1).all()  # untracked
        np.testing.assert_allclose(dets.boxes, poses.boxes, atol=1e-4)
        np.testing.assert_allclose(dets.scores, poses.scores, atol=1e-6)
        np.testing.assert_allclose(dets.keypoints, poses.keypoints, atol=1e-4)
    empty = strict_yolo.detect_frames(frames)
    assert [len(dets) for dets in empty] == [0, 0]
    assert empty[0].keypoints.shape == (0, NUM_KEYPOINTS, 3) and empty[1].frame_index == 8


def test_pose_model_with_other_keypoints_is_refused(yolo_settings: None, tmp_path: Path) -> None:
    from ultralytics.utils import ROOT

    text = (ROOT / "cfg" / "models" / "11" / "yolo11-pose.yaml").read_text(encoding="utf-8")
    assert text.count("kpt_shape: [17, 3]") == 1
    path = tmp_path / "yolo11n-pose.yaml"
    path.write_text(text.replace("kpt_shape: [17, 3]", "kpt_shape: [5, 3]"), encoding="utf-8")
    with pytest.raises(PoseError, match="not the 17 COCO points"):
        YoloPose(str(path), device="cpu")


# --------------------------------------------------------------------------- model sources


def _dummy_pt(folder: Path) -> str:
    path = folder / "weights.pt"
    path.write_bytes(b"not even a pickle")  # rejected before anything reads it
    return str(path)


def _missing_onnx(folder: Path) -> str:
    return str(folder / "missing.onnx")


def _missing_official_name_in_folder(folder: Path) -> str:
    return str(folder / "yolo11n-pose.pt")  # with a folder it is a local file, not the asset name


def _missing_detection_weights(folder: Path) -> str:
    return "yolo11n.pt"  # not a pose model: not an asset name this backend downloads


@pytest.mark.parametrize(
    ("make_source", "allow_pickle", "message"),
    [
        (_dummy_pt, False, "allow_pickle"),
        (_missing_onnx, False, "not found"),
        (_missing_onnx, True, "not found"),
        (_missing_official_name_in_folder, True, "not found"),
        (_missing_detection_weights, False, "not found"),
    ],
)
def test_model_sources_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_source: Callable[[Path], str], allow_pickle: bool,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    source = make_source(tmp_path)
    with pytest.raises(PoseError, match=message):
        check_pose_model_source(source, allow_pickle)
    with pytest.raises(PoseError, match=message):
        YoloPose(source, allow_pickle=allow_pickle, device="cpu")


@pytest.mark.parametrize(
    "source",
    ["yolo11n-pose.pt", "yolov8s-pose.pt", "yolo12x-pose.pt", "yolo26m-pose.pt", "yolo11n-pose.yaml",
     "yolov8n-pose.yaml"],
)
def test_official_names_and_yaml_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    monkeypatch.chdir(tmp_path)  # nothing of that name here: accepted by name, left to ultralytics
    assert check_pose_model_source(source, allow_pickle=False) is None


@pytest.mark.parametrize("name", ["weights.pt", "weights.onnx", "weights.torchscript"])
def test_local_files_pass(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    allow_pickle = name.endswith(".pt")  # a .pt only with allow_pickle; the others load without pickle
    assert check_pose_model_source(str(path), allow_pickle) is None
