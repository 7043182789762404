"""Tracklet accumulation: quality filters, when segments are emitted, bounded memory, crop keypoints."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from keyreid_stream.contracts import Detections, Frame, Tracklet
from keyreid_stream.inference.embedder import crop_keypoints
from keyreid_stream.workers.tracklets import TrackletAccumulator, covered_fraction, thumbnail_jpeg

CAMERA = "cam1"
FPS = 10.0
WIDTH, HEIGHT = 320, 240


def _frame(index: int) -> Frame:
    image = np.full((HEIGHT, WIDTH, 3), index % 250, np.uint8)
    return Frame(CAMERA, index, 100.0 + index / FPS, image)


def _keypoints(boxes: np.ndarray) -> np.ndarray:
    """Distinctive keypoints inside each box (confidence 1)."""
    points = np.zeros((len(boxes), 17, 3), np.float32)
    for row, (x1, y1, x2, y2) in enumerate(boxes):
        points[row, :, 0] = np.linspace(x1 + 1, x2 - 1, 17)
        points[row, :, 1] = np.linspace(y1 + 1, y2 - 1, 17)
        points[row, :, 2] = 1.0
    return points


def _tracked(index: int, boxes: list[list[float]], ids: list[int], scores: list[float] | None = None) -> Detections:
    box_array = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = [0.9] * len(ids) if scores is None else scores
    return Detections.create(CAMERA, index, 100.0 + index / FPS, box_array, scores, ids, _keypoints(box_array))


def _run(accumulator: TrackletAccumulator, frames: range, boxes: list[list[float]], ids: list[int],
         scores: list[float] | None = None) -> list:
    segments = []
    for index in frames:
        segments += accumulator.add(_frame(index), _tracked(index, boxes, ids, scores))
    return segments


BOX = [50.0, 40.0, 90.0, 160.0]  # 40 x 120


@pytest.mark.parametrize(("boxes", "scores", "rejected", "kept"), [
    ([BOX], [0.9], None, 1),
    ([[50, 40, 60, 60]], [0.9], "rejected_small", 0),
    ([BOX], [0.1], "rejected_confidence", 0),
    ([BOX, [52, 42, 92, 162]], [0.9, 0.9], "rejected_overlap", 0),
    ([BOX, [200, 40, 240, 160]], [0.9, 0.9], None, 2),
])
def test_quality_filters(boxes: list[list[float]], scores: list[float], rejected: str | None, kept: int) -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=1)
    accumulator.add(_frame(0), _tracked(0, boxes, list(range(1, len(boxes) + 1)), scores))
    assert accumulator.counts["observations"] == kept
    if rejected:
        assert accumulator.counts[rejected] == len(boxes) - kept


def test_covered_fraction() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)
    np.testing.assert_allclose(covered_fraction(boxes), [0.5, 0.5, 0.0])


def test_track_ends_when_unseen() -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=3, lost_after_s=0.5)
    assert _run(accumulator, range(0, 10), [BOX], [7]) == []
    segments = _run(accumulator, range(10, 20), [], [])
    assert len(segments) == 1
    segment = segments[0]
    assert segment.reason == "ended" and segment.tracklet.track_id == 7 and segment.frames_seen == 10
    assert (segment.first_seen, segment.last_seen) == (100.0, pytest.approx(100.9))
    assert segment.tracklet.frame_indices.tolist() == list(range(10))
    assert 7 not in accumulator.open


def test_periodic_segments_keep_the_track_id() -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=2, emit_every_s=1.0)
    segments = _run(accumulator, range(0, 35), [BOX], [3])
    assert [s.reason for s in segments] == ["periodic"] * 3
    assert all(s.tracklet.track_id == 3 for s in segments)
    spans = [(s.first_seen, s.last_seen) for s in segments]
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))  # no overlap
    assert 3 in accumulator.open


def test_finish_flush_and_short_tracks() -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=4)
    _run(accumulator, range(0, 6), [BOX, [200, 40, 240, 160]], [1, 2])
    _run(accumulator, range(6, 8), [[120, 40, 160, 160]], [3])
    finished = accumulator.finish([1, 99])
    assert [s.tracklet.track_id for s in finished] == [1] and finished[0].reason == "ended"
    flushed = accumulator.flush()
    assert [s.tracklet.track_id for s in flushed] == [2]  # track 3 has 2 observations < min_frames
    assert accumulator.counts["discarded_short"] == 1 and not accumulator.open


def test_observations_are_bounded_and_spread() -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=2, max_observations=8, lost_after_s=100, emit_every_s=100)
    _run(accumulator, range(0, 100), [BOX], [5])
    (segment,) = accumulator.flush()
    indices = segment.tracklet.frame_indices
    assert len(indices) <= 8 and segment.frames_seen == 100
    assert indices[0] == 0 and indices[-1] >= 80  # the whole span stays covered
    gaps = np.diff(indices)
    assert gaps.max() <= 2 * gaps.min()


def test_crops_and_crop_keypoints() -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=1, max_crop_height=60, min_box_height=10)
    _run(accumulator, range(0, 2), [[10.4, 20.6, 50.2, 150.0], [300, 200, 400, 300]], [1, 2])
    segments = {s.tracklet.track_id: s.tracklet for s in accumulator.flush()}
    first = segments[1]
    assert first.boxes[0].tolist() == [10, 20, 51, 150]  # integer pixels: the crop is exactly the box
    assert first.crops[0].shape == (60, 19, 3)  # 130 px tall, downscaled to 60
    points = crop_keypoints(first)
    scale = np.array([19 / 41, 60 / 130])
    np.testing.assert_allclose(points[0, :, :2], (first.keypoints[0, :, :2] - [10, 20]) * scale, rtol=1e-5)
    second = segments[2]  # clipped to the frame
    assert second.boxes[0].tolist() == [300, 200, 320, 240] and second.crops[0].shape == (40, 20, 3)


def test_keypoint_function_runs_only_for_kept_observations() -> None:
    calls = []

    def estimate(frame: Frame, boxes: np.ndarray) -> np.ndarray:
        calls.append(len(boxes))
        return _keypoints(boxes)

    accumulator = TrackletAccumulator(CAMERA, min_frames=1)
    boxes = np.array([BOX, [50, 40, 55, 50]], np.float32)  # the second one is too small
    detections = Detections.create(CAMERA, 0, 100.0, boxes, [0.9, 0.9], [1, 2])  # no keypoints
    accumulator.add(_frame(0), detections, estimate)
    assert calls == [1]
    (segment,) = accumulator.flush()
    assert (segment.tracklet.keypoints[..., 2] == 1).all()


def test_untracked_and_foreign_detections() -> None:
    accumulator = TrackletAccumulator(CAMERA, min_frames=1)
    accumulator.add(_frame(0), _tracked(0, [BOX], [-1]))
    assert not accumulator.open
    with pytest.raises(ValueError, match="cam1"):
        accumulator.add(Frame("other", 0, 0.0, np.zeros((4, 4, 3), np.uint8)), _tracked(0, [], []))


def test_thumbnail() -> None:
    crops = [np.full((40, 20, 3), 10, np.uint8), np.full((80, 30, 3), 200, np.uint8)]
    tracklet = Tracklet.create(CAMERA, 1, [0, 1], [0.0, 0.1], [[0, 0, 20, 40], [0, 0, 30, 80]],
                               np.zeros((2, 17, 3)), crops=crops)
    image = cv2.imdecode(np.frombuffer(thumbnail_jpeg(tracklet), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[0] == 128 and abs(int(image.mean()) - 200) < 5  # the largest crop
