"""The demo's progress line and its time-left estimate."""

from __future__ import annotations

import pytest

from keyreid_stream.demo.progress import CameraProgress, DemoProgress, format_progress, progress_from_cameras


def _camera(name: str, frames: int, expected: int = 200, tracklets: int = 0, published: int = 0,
            ended: bool = False) -> CameraProgress:
    return CameraProgress(name, frames, expected, tracklets, published, ended)


@pytest.mark.parametrize(("cameras", "elapsed", "left"), [
    ((), 10.0, None),
    ((_camera("a", 0), _camera("b", 0)), 10.0, None),  # nothing read yet
    ((_camera("a", 100), _camera("b", 100)), 10.0, 10.0),  # half read, no tracklet yet: reading decides
    ((_camera("a", 100, tracklets=4, published=2), _camera("b", 100, tracklets=4, published=2)), 20.0, 60.0),
    # embedding decides: 8 tracklets at half way -> 16 expected, 4 embedded in 20 s -> 12 more take 60 s
    ((_camera("a", 200, tracklets=8, published=8, ended=True), _camera("b", 200, tracklets=8, published=8,
                                                                       ended=True)), 30.0, 0.0),
    ((_camera("a", 50, expected=0),), 10.0, None),  # a live stream: no end to estimate
    ((_camera("a", 100, tracklets=3), _camera("b", 100)), 10.0, None),  # tracklets, none embedded yet
])
def test_time_left(cameras: tuple, elapsed: float, left: float | None) -> None:
    estimate = DemoProgress(elapsed, cameras).time_left_s()
    assert estimate == (None if left is None else pytest.approx(left))


def test_the_line_says_frames_tracklets_and_time_left() -> None:
    rows = [{"camera_id": "cam-right", "last_heartbeat": {"counters": {"frames": 90, "expected_frames": 199,
                                                                       "tracklets": 5, "published": 3}}},
            {"camera_id": "cam-left", "last_heartbeat": None}]
    line = format_progress(progress_from_cameras(rows, 42.0))
    assert line == ("[  42 s] frames cam-left 0/?, cam-right 90/199 | tracklets 3 embedded, 2 waiting | "
                    "time left: estimating")
