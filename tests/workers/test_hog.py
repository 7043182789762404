"""The HOG people detector on ultralytics' bus.jpg (a real street photo), blank images and NMS cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from keyreid_stream.contracts import Detections, Frame  # noqa: E402
from keyreid_stream.workers import hog  # noqa: E402
from keyreid_stream.workers.hog import (  # noqa: E402
    HogPersonDetector,
    box_iou,
    non_max_suppression,
    squash_scores,
)

# Hand-annotated people in bus.jpg (810x1080), tight xyxy boxes: the man in the light coat, the man in
# black, the person cut by the right edge and the one cut by the left edge.
BUS_PEOPLE = np.array(
    [(45, 395, 250, 905), (220, 405, 345, 865), (665, 375, 810, 880), (0, 550, 75, 875)], dtype=np.float64
)


@pytest.fixture(scope="module")
def bus() -> np.ndarray:
    ultralytics = pytest.importorskip("ultralytics")
    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    if not path.is_file():
        pytest.skip(f"this ultralytics wheel ships no {path.name}")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (1080, 810, 3)
    return image


def _frame(image: np.ndarray, index: int = 0) -> Frame:
    return Frame(camera_id="cam", index=index, timestamp=1.5, image=image)


def _assert_sane(dets: Detections, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    boxes, scores = dets.boxes, dets.scores
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] - boxes[:, 0] >= 16).all()
    assert (boxes[:, 3] - boxes[:, 1] > boxes[:, 2] - boxes[:, 0]).all()  # upright, person-shaped
    assert ((scores > 0) & (scores < 1)).all()
    assert (np.diff(scores) <= 0).all()  # best first


def _people_found(dets: Detections, min_iou: float = 0.4) -> set[int]:
    found = set()
    for box in dets.boxes.astype(np.float64):
        ious = box_iou(box, BUS_PEOPLE)
        if ious.max() >= min_iou:
            found.add(int(ious.argmax()))
    return found


@pytest.mark.video
def test_finds_people_on_the_bus_photo(bus: np.ndarray) -> None:
    # The SVM was trained on ~96 px tall people: these are ~500 px tall, so downscale (as for close-ups).
    dets = HogPersonDetector(max_width=320).detect(_frame(bus, index=7))
    assert (dets.camera_id, dets.frame_index, dets.timestamp) == ("cam", 7, 1.5)
    _assert_sane(dets, bus)
    assert len(_people_found(dets)) >= 2, (dets.boxes, dets.scores)


@pytest.mark.video
def test_full_resolution_boxes_are_sane(bus: np.ndarray) -> None:
    dets = HogPersonDetector().detect(_frame(bus))
    assert len(dets) >= 2
    _assert_sane(dets, bus)
    assert 0 in _people_found(dets)  # the large man in the light coat


@pytest.mark.video
def test_max_width_maps_boxes_back(bus: np.ndarray) -> None:
    small = cv2.resize(bus, (320, 427), interpolation=cv2.INTER_AREA)
    # An exact 2x nearest-neighbour upscale: INTER_AREA brings it back to `small` pixel for pixel.
    big = cv2.resize(small, (640, 854), interpolation=cv2.INTER_NEAREST)
    reference = HogPersonDetector().detect(_frame(small))
    downscaled = HogPersonDetector(max_width=320).detect(_frame(big))
    assert len(reference) >= 1
    assert len(downscaled) == len(reference)
    np.testing.assert_allclose(downscaled.boxes, reference.boxes * 2, atol=1e-3)
    np.testing.assert_allclose(downscaled.scores, reference.scores)


@pytest.mark.video
def test_max_width_does_not_touch_small_frames(bus: np.ndarray) -> None:
    small = cv2.resize(bus, (320, 427), interpolation=cv2.INTER_AREA)
    plain = HogPersonDetector().detect(_frame(small))
    capped = HogPersonDetector(max_width=640).detect(_frame(small))
    assert plain == capped


@pytest.mark.parametrize(
    ("shape", "value"),
    [((480, 640, 3), 0), ((480, 640, 3), 128), ((480, 640, 3), 255), ((32, 32, 3), 90), ((127, 64, 3), 9)],
)
def test_blank_or_tiny_image_gives_empty_detections(shape: tuple[int, int, int], value: int) -> None:
    dets = HogPersonDetector().detect(_frame(np.full(shape, value, dtype=np.uint8)))
    assert isinstance(dets, Detections)
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)


@pytest.mark.video
def test_min_score_filters(bus: np.ndarray) -> None:
    everything = HogPersonDetector(max_width=320).detect(_frame(bus))
    median = float(np.median(everything.scores))
    strict = HogPersonDetector(max_width=320, min_score=median).detect(_frame(bus))
    assert 0 < len(strict) < len(everything)
    assert (strict.scores >= median).all()


def test_missing_hog_people_detector_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPeople:  # what OpenCV 5 looks like from here
        pass

    monkeypatch.setattr(hog.cv2, "HOGDescriptor", NoPeople)
    with pytest.raises(RuntimeError, match=r'opencv-python<5'):
        HogPersonDetector()
    monkeypatch.delattr(hog.cv2, "HOGDescriptor")
    with pytest.raises(RuntimeError, match=r'opencv-python<5'):
        HogPersonDetector()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 1.0}, "scale"),
        ({"min_score": 1.0}, "min_score"),
        ({"nms_iou": 0.0}, "nms_iou"),
        ({"max_width": 10}, "max_width"),
        ({"win_stride": (8,)}, "win_stride"),
        ({"padding": (-1, 8)}, "padding"),
    ],
)
def test_invalid_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HogPersonDetector(**kwargs)  # type: ignore[arg-type]


def test_squash_scores_is_monotone_into_unit_interval() -> None:
    margins = np.array([-1000.0, -2.0, 0.0, 0.5, 3.0, 1000.0])
    scores = squash_scores(margins)
    assert scores.dtype == np.float32
    assert (np.diff(scores) >= 0).all() and (scores >= 0).all() and (scores <= 1).all()
    assert scores[2] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("boxes", "scores", "iou", "expected"),
    [
        ([], [], 0.5, []),
        ([(0, 0, 10, 20)], [0.3], 0.5, [0]),
        ([(0, 0, 10, 20), (0, 0, 10, 20)], [0.3, 0.9], 0.5, [1]),
        ([(0, 0, 10, 20), (0, 0, 10, 20)], [0.5, 0.5], 0.5, [0]),
        ([(0, 0, 10, 20), (50, 0, 60, 20)], [0.3, 0.9], 0.5, [1, 0]),
        ([(0, 0, 10, 20), (0, 5, 10, 25)], [0.9, 0.8], 0.5, [0]),  # IoU 0.6
        ([(0, 0, 10, 20), (0, 5, 10, 25)], [0.9, 0.8], 0.7, [0, 1]),
        ([(0, 0, 10, 20), (0, 5, 10, 25), (0, 10, 10, 30)], [0.9, 0.8, 0.7], 0.5, [0, 2]),  # chain
    ],
)
def test_non_max_suppression(
    boxes: list[tuple[int, ...]], scores: list[float], iou: float, expected: list[int]
) -> None:
    keep = non_max_suppression(np.array(boxes, dtype=np.float64), np.array(scores), iou)
    assert keep.tolist() == expected
