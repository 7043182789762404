"""Two overlapping views cut from one video: geometry, pixels, caching."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from keyreid_stream.demo.views import cut_overlapping_views, plan_views

pytestmark = pytest.mark.video


@pytest.mark.parametrize(("width", "view", "expected"), [
    (768, 480, (("cam-left", 0, 480), ("cam-right", 288, 768))),
    (768, 385, (("cam-left", 0, 385), ("cam-right", 383, 768))),
    (100, 100, (("cam-left", 0, 100), ("cam-right", 0, 100))),
])
def test_views_are_flush_with_the_edges_and_overlap(width: int, view: int, expected: tuple) -> None:
    assert plan_views(width, view) == expected


@pytest.mark.parametrize(("width", "view", "message"), [
    (768, 384, "no overlap"),
    (768, 200, "no overlap"),
    (768, 769, "must be in"),
    (768, 0, "must be in"),
])
def test_impossible_views_are_refused(width: int, view: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_views(width, view)


@pytest.fixture(scope="module")
def gradient_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames of 160x96 whose pixel values encode the column (and the frame in the blue channel)."""
    path = tmp_path_factory.mktemp("video") / "scene.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 96))
    columns = np.linspace(0, 255, 160).astype(np.uint8)
    for index in range(12):
        image = np.zeros((96, 160, 3), np.uint8)
        image[:, :, 1] = columns[None, :]
        image[:, :, 0] = index * 20
        writer.write(image)
    writer.release()
    return path


def _frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def test_views_hold_the_source_columns(gradient_video: Path, tmp_path: Path) -> None:
    left, right = cut_overlapping_views(gradient_video, tmp_path, view_width=100)
    source = _frames(gradient_video)
    assert (left.x0, left.x1, right.x0, right.x1) == (0, 100, 60, 160)
    assert "40 px shared with cam-right" in left.describe(right)
    for view in (left, right):
        frames = _frames(view.path)
        assert len(frames) == len(source) == 12
        for cut, whole in zip(frames, source):
            assert cut.shape == (96, 100, 3)
            difference = np.abs(cut.astype(int) - whole[:, view.x0:view.x1].astype(int)).mean()
            assert difference < 4.0  # Motion-JPEG both ways: close, not equal


def test_views_are_cut_once_and_reused(gradient_video: Path, tmp_path: Path) -> None:
    first = cut_overlapping_views(gradient_video, tmp_path, view_width=100)
    written = [view.path.stat().st_mtime_ns for view in first]
    again = cut_overlapping_views(gradient_video, tmp_path, view_width=100)
    assert again == first and [view.path.stat().st_mtime_ns for view in again] == written
    shorter = cut_overlapping_views(gradient_video, tmp_path, view_width=100, max_frames=5)
    assert shorter[0].path.parent != first[0].path.parent  # another geometry or length: another folder
    assert len(_frames(shorter[0].path)) == 5
    assert not list(tmp_path.rglob("*.partial.avi"))


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises((FileNotFoundError, ValueError), match="junk.avi|no readable frame"):
        cut_overlapping_views(junk, tmp_path / "out")
