"""The pose-backend interface: person selection in crops, box crops, the prior layout."""

from __future__ import annotations

import numpy as np
import pytest

from keyreid_stream.contracts import Detections, Frame
from keyreid_stream.keypoints.heatmaps import PART_JOINTS
from keyreid_stream.keypoints.pose import (
    PRIOR_LAYOUT,
    PersonPoses,
    PoseBackend,
    PriorPose,
    crop_boxes,
    select_person,
)


def _person(box: tuple[float, float, float, float], score: float, marker: float) -> PersonPoses:
    keypoints = np.full((1, 17, 3), marker, np.float32)
    return PersonPoses(np.array([box], np.float32), np.array([score]), keypoints)


def _stack(*people: PersonPoses) -> PersonPoses:
    return PersonPoses(np.concatenate([p.boxes for p in people]), np.concatenate([p.scores for p in people]),
                       np.concatenate([p.keypoints for p in people]))


@pytest.mark.parametrize(("people", "expected_marker"), [
    # Same place, different scores: the best-scoring one.
    ([((20, 40, 108, 220), 0.6, 0.3), ((20, 40, 108, 220), 0.9, 0.7)], 0.7),
    # Similar scores: the central one beats a neighbour cut by the crop edge.
    ([((0, 0, 30, 120), 0.95, 0.3), ((24, 30, 104, 226), 0.85, 0.7)], 0.7),
    # A much better detection wins even if off-centre.
    ([((0, 0, 60, 256), 0.9, 0.3), ((40, 100, 90, 160), 0.05, 0.7)], 0.3),
])
def test_select_person_prefers_score_and_centre(people: list, expected_marker: float) -> None:
    poses = _stack(*(_person(*person) for person in people))
    chosen = select_person(poses, width=128, height=256)
    assert chosen.shape == (17, 3)
    assert np.all(chosen == np.float32(expected_marker))


def test_select_person_on_an_empty_crop_gives_zero_confidence() -> None:
    chosen = select_person(PersonPoses.empty(), 128, 256)
    assert chosen.shape == (17, 3) and not chosen.any()


def test_person_poses_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError, match="PersonPoses needs"):
        PersonPoses(np.zeros((2, 4)), np.zeros(3), np.zeros((2, 17, 3)))


def test_crop_boxes_grows_and_clips_to_the_frame() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    boxes = np.array([[10, 10, 50, 90], [-20, -5, 30, 40], [190, 80, 260, 130]], np.float32)
    crops, origins = crop_boxes(frame, boxes, margin=0.1)
    assert [c.shape[:2] for c in crops] == [(96, 48), (45, 35), (25, 17)]
    np.testing.assert_array_equal(origins, [[6, 2], [0, 0], [183, 75]])


def test_prior_layout_is_scaled_to_the_box_and_covers_every_part() -> None:
    prior = PriorPose(confidence=0.5)
    keypoints = prior.layout(np.array([[100, 50, 164, 178]]))[0]
    np.testing.assert_allclose(keypoints[:, 0], 100 + PRIOR_LAYOUT[:, 0] * 64, rtol=1e-6)
    np.testing.assert_allclose(keypoints[:, 1], 50 + PRIOR_LAYOUT[:, 1] * 128, rtol=1e-6)
    assert np.all(keypoints[:, 2] == 0.5)
    for joints in PART_JOINTS:  # every part has visible joints, so KPS degrades to fixed regions
        assert np.all(keypoints[list(joints), 2] > 0.1)
    left, right = keypoints[5::2, 0], keypoints[6::2, 0]  # person's left on the image's right (facing us)
    assert np.all(left > right)


def test_prior_backend_answers_in_crop_and_frame_coordinates() -> None:
    prior = PriorPose()
    crops = [np.zeros((256, 128, 3), np.uint8), np.zeros((60, 30, 3), np.uint8)]
    in_crops = prior.estimate_crops(crops)
    assert in_crops.shape == (2, 17, 3)
    assert in_crops[0, :, 0].max() < 128 and in_crops[1, :, 1].max() < 60
    frame = np.zeros((480, 640, 3), np.uint8)
    in_frame = prior.estimate_boxes(frame, np.array([[300, 100, 364, 228]]))
    np.testing.assert_allclose(in_frame[0, 0, :2], [300 + 0.5 * 64, 100 + 0.08 * 128], rtol=1e-6)


@pytest.mark.parametrize("confidence", [0.0, 0.1, 1.5])
def test_prior_rejects_confidences_the_renderer_would_ignore(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        PriorPose(confidence=confidence)


class CornerPose(PoseBackend):
    """A backend that sees one joint, at crop pixel (2, 3), and nothing else."""

    name = "corner"

    def _detect_batch(self, images):  # type: ignore[no-untyped-def]
        found = []
        for image in images:
            keypoints = np.zeros((1, 17, 3), np.float32)
            keypoints[0, 0] = (2, 3, 0.9)
            box = np.array([[0, 0, image.shape[1] - 1, image.shape[0] - 1]], np.float32)
            found.append(PersonPoses(box, np.ones(1), keypoints))
        return found


def test_estimate_boxes_shifts_found_joints_by_the_crop_origin() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    result = CornerPose().estimate_boxes(frame, np.array([[40, 20, 60, 80]]), margin=0.0)
    np.testing.assert_allclose(result[0, 0], [42, 23, 0.9], rtol=1e-6)
    assert not result[0, 1:].any()  # unknown joints stay (0, 0, 0), not moved to the crop origin


@pytest.mark.parametrize("bad", [
    np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8), "image.jpg",
])
def test_bad_images_are_rejected_with_a_readable_error(bad: object) -> None:
    with pytest.raises(ValueError, match="image 0"):
        PriorPose().detect([bad])  # type: ignore[list-item]


def test_detect_frames_gives_the_streams_detections() -> None:
    frames = [Frame("cam-1", 7, 12.5, np.zeros((48, 32, 3), np.uint8))]
    (detections,) = PriorPose().detect_frames(frames)
    assert isinstance(detections, Detections)
    assert (detections.camera_id, detections.frame_index, detections.timestamp) == ("cam-1", 7, 12.5)
    assert detections.keypoints.shape == (1, 17, 3) and np.all(detections.track_ids == -1)


def test_batches_are_split_by_batch_size() -> None:
    seen: list[int] = []

    class CountingPrior(PriorPose):
        def _detect_batch(self, images):  # type: ignore[no-untyped-def]
            seen.append(len(images))
            return super()._detect_batch(images)

    CountingPrior(batch_size=3).detect([np.zeros((8, 4, 3), np.uint8)] * 7)
    assert seen == [3, 3, 1]
