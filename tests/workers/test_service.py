"""The worker says, per camera, which clock its times are on (keyreid_stream.clock)."""

from __future__ import annotations

import pytest

from keyreid_stream.workers.config import CameraConfig
from keyreid_stream.workers.service import _clock


@pytest.mark.parametrize(("camera", "live", "expected"), [
    (CameraConfig("c", "rtsp://cam/1"), True, "UTC wall clock"),
    (CameraConfig("c", "a.mp4", pace=True), False, "UTC wall clock"),
    (CameraConfig("c", "a.mp4"), False, "media time, seconds from the start of the file"),
    (CameraConfig("c", "a.mp4", start_time=1_700_000_000.0), False, "from start_time 2023-11-14 22:13:20 UTC"),
    (CameraConfig("c", "a.mp4", pace=True, start_time=30.0), False, "from start_time 0:00:30.0 media"),
])
def test_each_camera_says_which_clock(camera: CameraConfig, live: bool, expected: str) -> None:
    assert _clock(camera, live) == expected
