"""BlazePose backend: the real MediaPipe landmark model (LiteRT) on the people of bus.jpg.

The model file comes from the weights cache (``keyreid-stream weights fetch blazepose-full``); without it these
tests skip, and fail under CI=true (see the ``blazepose_model`` fixture). Boxes are fixed, read off the photo at its
full size (810 x 1080): two men facing the camera, and a walker cut by the right edge of the image.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from keyreid_stream.contracts import NUM_KEYPOINTS
from keyreid_stream.keypoints.backends import create_backend
from keyreid_stream.keypoints.blazepose import BlazePose, resolve_model, square_boxes
from keyreid_stream.keypoints.heatmaps import FLIP_PERMUTATION, flip_keypoints
from keyreid_stream.keypoints.pose import PoseError

FACING = np.array([[50, 398, 245, 903], [223, 408, 344, 860]], np.float32)  # the two men facing the camera
AT_THE_EDGE = np.array([[669, 392, 809, 877]], np.float32)  # a walker, partly outside the photo on the right
SEEN = 0.5
# COCO (left, right) pairs, odd = left: the person's left is on the image's right when they face the camera.
LEFT_RIGHT = {"eyes": (1, 2), "ears": (3, 4), "shoulders": (5, 6), "hips": (11, 12)}
TORSO = [5, 6, 11, 12]


@pytest.fixture(scope="module")
def blazepose(blazepose_model: Path) -> Iterator[BlazePose]:
    backend = BlazePose(str(blazepose_model))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def facing(blazepose: BlazePose, bus_photo_full: np.ndarray) -> np.ndarray:
    return blazepose.estimate_boxes(bus_photo_full, FACING)


def _inside(keypoints: np.ndarray, box: np.ndarray, tolerance: float = 0.02) -> np.ndarray:
    """Which joints lie inside ``box`` grown by ``tolerance`` of its size."""
    grow = tolerance * (box[2:] - box[:2])
    low, high = box[:2] - grow, box[2:] + grow
    return ((keypoints[:, :2] >= low) & (keypoints[:, :2] <= high)).all(axis=1)


def test_joints_land_inside_the_persons_box(facing: np.ndarray) -> None:
    assert facing.shape == (2, NUM_KEYPOINTS, 3) and facing.dtype == np.float32
    for keypoints, box in zip(facing, FACING):
        seen = keypoints[:, 2] > SEEN
        assert seen.sum() >= 13, keypoints  # a whole, unoccluded person: nearly every joint is seen
        assert _inside(keypoints[seen], box).all(), (box, keypoints[seen])
        # head above shoulders above hips above knees above ankles (y grows downwards)
        rows = [keypoints[joints, 1].mean() for joints in ([0, 1, 2], [5, 6], [11, 12], [13, 14], [15, 16])]
        assert rows == sorted(rows), rows


@pytest.mark.parametrize("pair", sorted(LEFT_RIGHT))
def test_left_and_right_are_not_swapped(facing: np.ndarray, pair: str) -> None:
    left, right = LEFT_RIGHT[pair]
    for keypoints in facing:
        assert keypoints[left, 2] > SEEN and keypoints[right, 2] > SEEN
        assert keypoints[left, 0] > keypoints[right, 0], (pair, keypoints[[left, right]])


def test_a_mirrored_crop_mirrors_the_joints(blazepose: BlazePose, bus_photo_full: np.ndarray) -> None:
    """The mirrored image of a person gives the mirrored joints with left and right exchanged (checked on the
    torso, which the model sees best; the shared FLIP_PERMUTATION is the reference)."""
    x1, y1, x2, y2 = FACING[0].astype(int)
    crop = np.ascontiguousarray(bus_photo_full[y1:y2, x1:x2])
    plain, mirrored = blazepose.estimate_crops([crop, np.ascontiguousarray(crop[:, ::-1])])
    expected = flip_keypoints(torch.from_numpy(mirrored), crop.shape[1]).numpy()
    assert FLIP_PERMUTATION[5] == 6
    assert np.abs(expected[TORSO, :2] - plain[TORSO, :2]).max() < 0.05 * crop.shape[1]


def test_crop_and_box_answers_agree_in_frame_pixels(blazepose: BlazePose, bus_photo_full: np.ndarray) -> None:
    """A square crop cut from the frame, estimated as a crop and shifted by its origin, equals the estimate of the
    same square as a box of the frame: the mapping back to the frame is exact."""
    left, top, side = (int(round(v)) for v in square_boxes(FACING[1:], margin=0.1)[0])
    crop = np.ascontiguousarray(bus_photo_full[top:top + side, left:left + side])
    from_crop = blazepose.estimate_crops([crop])[0]
    from_box = blazepose.estimate_boxes(bus_photo_full, np.array([[left, top, left + side, top + side]]), margin=0)[0]
    np.testing.assert_allclose(from_crop[:, :2] + [left, top], from_box[:, :2], atol=0.5)
    np.testing.assert_allclose(from_crop[:, 2], from_box[:, 2], atol=1e-4)


def test_a_box_partly_outside_the_frame(blazepose_model: Path, bus_photo_full: np.ndarray) -> None:
    """The square of a box at the image's edge reaches far outside the image (padded black): valid joints, and
    those the model is fairly sure of lie on the person. (Half of this walker is cut off: the pose presence is
    near MediaPipe's 0.5, so the check runs ungated.)"""
    ungated = BlazePose(str(blazepose_model), min_presence=0.0)
    try:
        left, _, side = square_boxes(AT_THE_EDGE, margin=0.1)[0]
        assert left + side > bus_photo_full.shape[1] + 100
        keypoints = ungated.estimate_boxes(bus_photo_full, AT_THE_EDGE, margin=0.1)[0]
    finally:
        ungated.close()
    assert np.isfinite(keypoints).all() and ((keypoints[:, 2] >= 0) & (keypoints[:, 2] <= 1)).all()
    fairly_sure = keypoints[:, 2] > 0.3
    assert fairly_sure.sum() >= 5 and _inside(keypoints[fairly_sure], AT_THE_EDGE[0], tolerance=0.1).all()


def _black(height: int, width: int) -> np.ndarray:
    return np.zeros((height, width, 3), np.uint8)


def _grey(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def _noise(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("make", [_black, _grey, _noise])
def test_an_empty_crop_has_confidence_near_zero(
    blazepose: BlazePose, blazepose_model: Path, make: Callable[[int, int], np.ndarray]
) -> None:
    crop = make(200, 100)
    assert (blazepose.estimate_crops([crop]) == 0).all()  # the pose presence is below MediaPipe's 0.5
    assert blazepose.detect([crop])[0].keypoints.shape == (0, NUM_KEYPOINTS, 3)
    ungated = BlazePose(str(blazepose_model), min_presence=0.0)
    try:
        assert ungated.estimate_crops([crop])[0, :, 2].max() < 0.1  # below the heatmap renderer's threshold
    finally:
        ungated.close()


def test_detect_finds_the_one_person_of_a_crop(blazepose: BlazePose, bus_photo_full: np.ndarray) -> None:
    x1, y1, x2, y2 = FACING[0].astype(int)
    crop = np.ascontiguousarray(bus_photo_full[y1:y2, x1:x2])
    found = blazepose.detect([crop])[0]
    assert len(found) == 1 and found.scores[0] > 0.9
    np.testing.assert_array_equal(found.boxes[0], [0, 0, crop.shape[1], crop.shape[0]])
    np.testing.assert_allclose(found.keypoints[0], blazepose.estimate_crops([crop])[0])


def test_bad_input_is_refused(blazepose: BlazePose, bus_photo_full: np.ndarray) -> None:
    with pytest.raises(ValueError, match="finite"):
        blazepose.estimate_boxes(bus_photo_full, np.array([[0, 0, np.nan, 10]]))
    with pytest.raises(ValueError, match="uint8"):
        blazepose.estimate_crops([np.zeros((10, 10, 3), np.float32)])
    assert blazepose.estimate_boxes(bus_photo_full, np.zeros((0, 4))).shape == (0, NUM_KEYPOINTS, 3)
    with pytest.raises(ValueError, match="min_presence"):
        BlazePose(min_presence=1.5)


# --------------------------------------------------------------------------- finding the model


def test_names_resolve_in_the_weights_cache(
    blazepose_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path))
    (tmp_path / "weights").mkdir()
    cached = tmp_path / "weights" / "pose_landmark_full.tflite"
    shutil.copyfile(blazepose_model, cached)  # the catalogue checks the size of what it finds
    assert resolve_model("blazepose-full") == cached
    assert resolve_model(str(blazepose_model)) == blazepose_model
    with pytest.raises(PoseError, match="keyreid-stream weights fetch blazepose-lite"):
        resolve_model("blazepose-lite")  # not in this cache
    backend = create_backend("blazepose", model="blazepose-full", threads=1)
    try:
        assert backend.name == "blazepose" and backend.model_path == cached
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("blazepose-heavy", r"keyreid-stream weights fetch blazepose-heavy"),
        ("blazepose-huge", "neither a file nor a known name"),
        ("missing/pose_landmark_full.tflite", "neither a file nor a known name"),
    ],
)
def test_missing_models_name_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, message: str
) -> None:
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path))
    with pytest.raises(PoseError, match=message):
        create_backend("blazepose", model=model)


def test_a_file_that_is_no_landmark_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pose_landmark_full.tflite"
    path.write_bytes(b"not a flatbuffer" * 64)
    with pytest.raises(PoseError, match="not a TFLite model"):
        BlazePose(str(path))


def test_keypoints_extract_cli_with_blazepose(
    tmp_path: Path, blazepose_model: Path, bus_photo_full: np.ndarray, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``keypoints extract --backend blazepose`` on a folder dataset of the two men's crops (dataset-sized,
    128 x 64), then the same with a model name that is not installed: one error naming the fetch command."""
    import cv2

    from keyreid_stream.cli import main

    for track, (x1, y1, x2, y2) in enumerate(FACING.astype(int)):
        folder = tmp_path / "people" / f"man{track}"
        folder.mkdir(parents=True)
        for index in range(2):
            crop = cv2.resize(bus_photo_full[y1:y2, x1:x2], (64, 128), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"{index:03d}.jpg"), crop)
    argv = ["keypoints", "extract", "--dataset", "folder", "--root", str(tmp_path / "people"), "--backend",
            "blazepose", "--checkpoint", str(blazepose_model), "--out", str(tmp_path / "kp"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "frames: 4" in out and "frames_no_person: 0" in out
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path / "empty-cache"))
    argv[argv.index("--checkpoint") + 1] = "blazepose-lite"
    argv[argv.index("--out") + 1] = str(tmp_path / "kp-lite")
    assert main(argv) == 1
    assert "keyreid-stream weights fetch blazepose-lite" in capsys.readouterr().err
