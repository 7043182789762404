"""The demo's progress line and its time-left estimate."""

from __future__ import annotations

import pytest

from keyreid_stream.demo.progress import (
    CameraProgress,
    DemoProgress,
    ProgressTracker,
    format_progress,
    progress_from_cameras,
)


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


def test_after_the_videos_end_the_embedding_rate_is_measured_from_then() -> None:
    """Measured in the demo with ViT-B on a CPU: 12 tracklets in the first 300 s (reading competes for the CPU), then
    about 0.2 per second. The overall average would say 40 min for the last 95; the rate since then says 8."""
    def rows(published: int, ended: bool) -> list[dict]:
        counters = {"frames": 398 if ended else 300, "expected_frames": 398, "tracklets": 107 if ended else 80,
                    "published": published, "ended": int(ended)}
        return [{"camera_id": "cam", "last_heartbeat": {"counters": counters}}]

    tracker = ProgressTracker()
    assert tracker.update(rows(10, False), 250.0).read_end_s is None
    at_end = tracker.update(rows(12, True), 300.0)
    assert at_end.read_end_s == 300.0 and at_end.time_left_s() == pytest.approx(95 * 300 / 12)
    later = tracker.update(rows(32, True), 400.0)  # 20 more in 100 s since the end
    assert (later.read_end_s, later.embedded_at_read_end) == (300.0, 12)
    assert later.time_left_s() == pytest.approx(75 * 100 / 20)
