"""The worker service: which clock each camera's times are on, and the pose wiring (``pose.backend`` in the
worker config) with the real BlazePose model.

A worker config file names ``pose: {backend: blazepose, options: {model: ...}}``; the keypoint function the worker
builds from it answers frame-pixel joints inside the tracked boxes, and a whole worker (an image-folder camera,
public detections of the two men of bus.jpg, part histograms) runs the pose stage on every kept observation and
publishes. The model comes from the weights cache (skipped without it, failed under CI=true).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from keyreid_stream.config.loader import load_config
from keyreid_stream.contracts import Frame
from keyreid_stream.workers.config import CameraConfig, WorkerConfig
from keyreid_stream.workers.service import _build_keypoints, _clock, run_worker

from worker_harness import Matcher

SCALE = 0.5  # bus.jpg at half size: 405 x 540
BOXES = np.array([[50, 398, 245, 903], [223, 408, 344, 860]], np.float32) * SCALE  # two men facing the camera
FRAMES = 8


@pytest.fixture(scope="module")
def bus_frame() -> np.ndarray:
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin, "ultralytics (which ships bus.jpg) is not installed"
    image = cv2.imread(str(Path(spec.origin).parent / "assets" / "bus.jpg"))
    return cv2.resize(image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)


def _config(tmp_path: Path, model: Path, extra: str = "") -> WorkerConfig:
    path = tmp_path / "worker.yaml"
    path.write_text(f"pose:\n  backend: blazepose\n  options: {{model: '{model}', threads: 1}}\n{extra}",
                    encoding="utf-8")
    return load_config(WorkerConfig, path)


def test_the_configured_backend_gives_frame_joints_in_the_boxes(
    tmp_path: Path, blazepose_model: Path, bus_frame: np.ndarray
) -> None:
    config = _config(tmp_path, blazepose_model)
    assert config.pose.backend == "blazepose"
    estimate, backend = _build_keypoints(config, detector=object())
    try:
        keypoints = estimate(Frame(camera_id="cam", index=0, timestamp=0.0, image=bus_frame), BOXES)
    finally:
        backend.close()
    assert keypoints.shape == (2, 17, 3)
    for joints, box in zip(keypoints, BOXES):
        seen = joints[:, 2] > 0.5
        assert seen.sum() >= 13
        margin = 0.02 * (box[2:] - box[:2])
        assert ((joints[seen, :2] >= box[:2] - margin) & (joints[seen, :2] <= box[2:] + margin)).all()
        assert joints[5, 0] > joints[6, 0]  # facing the camera: left shoulder on the image's right


def test_a_worker_runs_blazepose_on_every_kept_observation(
    tmp_path: Path, blazepose_model: Path, bus_frame: np.ndarray, zmq_context: zmq.Context
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rows = []
    for index in range(FRAMES):
        cv2.imwrite(str(folder / f"{index:04d}.jpg"), bus_frame)
        for track, (x1, y1, x2, y2) in enumerate(BOXES, start=1):
            rows.append(f"{index + 1},{track},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},0.9,-1,-1,-1")
    detections = tmp_path / "det.txt"
    detections.write_text("\n".join(rows) + "\n", encoding="utf-8")
    matcher = Matcher(zmq_context)
    matcher.start()
    try:
        config = _config(tmp_path, blazepose_model, extra=(
            f"cameras:\n  - {{id: street, source: '{folder}', detections: '{detections}'}}\n"
            "detector: {kind: public}\n"
            "tracklets: {min_frames: 4, min_box_height: 40}\n"
            "embedding: {kind: part-histogram, max_wait_s: 0.05}\n"
            f"publish: {{matcher: '{matcher.endpoint}', ack_timeout_s: 1.0, heartbeat_s: 0.2}}\n"
            "metrics: {log_every_s: 0}\n"
        ))
        report = run_worker(config, context=zmq_context)
    finally:
        matcher.close()
    assert report.camera_errors == {}
    assert report.counters.get("street.frames") == FRAMES
    assert report.stages["pose"].items == FRAMES * len(BOXES)  # every kept observation went through BlazePose
    assert len(matcher.messages) == 2 and report.publisher.acked == 2 and report.publisher.dropped == 0


@pytest.mark.parametrize(("camera", "live", "expected"), [
    (CameraConfig("c", "rtsp://cam/1"), True, "UTC wall clock"),
    (CameraConfig("c", "a.mp4", pace=True), False, "UTC wall clock"),
    (CameraConfig("c", "a.mp4"), False, "media time, seconds from the start of the file"),
    (CameraConfig("c", "a.mp4", start_time=1_700_000_000.0), False, "from start_time 2023-11-14 22:13:20 UTC"),
    (CameraConfig("c", "a.mp4", pace=True, start_time=30.0), False, "from start_time 0:00:30.0 media"),
])
def test_each_camera_says_which_clock(camera: CameraConfig, live: bool, expected: str) -> None:
    assert _clock(camera, live) == expected
