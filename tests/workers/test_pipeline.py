"""The whole worker on a generated street scene: public detections -> ByteTrack -> tracklets -> KeyRe-ID (tiny,
random weights) -> acknowledged ZeroMQ delivery to a ROUTER socket that the test reads."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.workers.config import (
    CameraConfig,
    DetectorConfig,
    EmbeddingConfig,
    MetricsConfig,
    OutputConfig,
    PublishConfig,
    TrackletConfig,
    WorkerConfig,
)
from keyreid_stream.workers.service import run_worker

from worker_harness import Matcher

pytestmark = [pytest.mark.video, pytest.mark.zmq]

FPS = 10.0
WIDTH, HEIGHT = 320, 240
DESCRIPTOR_DIM = 800  # keyreid_test


@dataclass(frozen=True)
class Walker:
    """A drawn pedestrian walking in a straight line while ``first <= frame <= last``."""

    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    start: tuple[float, float]
    velocity: tuple[float, float]
    first: int
    last: int
    size: tuple[int, int] = (28, 84)

    def box(self, frame: int) -> tuple[float, float, float, float] | None:
        if not self.first <= frame <= self.last:
            return None
        t = frame - self.first
        x, y = self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t
        return x, y, x + self.size[0], y + self.size[1]


def _draw(image: np.ndarray, walker: Walker, box: tuple[float, float, float, float]) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    height = y2 - y1
    head = y1 + height // 7
    cv2.circle(image, ((x1 + x2) // 2, head), height // 8, (140, 170, 210), -1)
    cv2.rectangle(image, (x1 + 2, head + height // 8), (x2 - 2, y1 + height * 3 // 5), walker.top, -1)
    cv2.rectangle(image, (x1 + 4, y1 + height * 3 // 5), (x2 - 4, y2), walker.bottom, -1)


@dataclass
class Scene:
    video: Path
    detections: Path
    walkers: list[Walker]
    frames: int
    truth: dict[int, list[int]] = field(default_factory=dict)  # walker -> frames seen


def make_scene(folder: Path, walkers: list[Walker], frames: int) -> Scene:
    """An MJPG video of ``walkers`` on a textured background and its MOTChallenge det.txt (1-based frames)."""
    rng = np.random.default_rng(0)
    background = (rng.integers(60, 120, (HEIGHT, WIDTH, 3))).astype(np.uint8)
    background = cv2.GaussianBlur(background, (0, 0), 3)
    video, detections = folder / "scene.avi", folder / "det.txt"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    scene = Scene(video, detections, walkers, frames)
    rows = []
    try:
        for index in range(frames):
            image = background.copy()
            for number, walker in enumerate(walkers):
                box = walker.box(index)
                if box is None:
                    continue
                _draw(image, walker, box)
                scene.truth.setdefault(number, []).append(index)
                x1, y1, x2, y2 = box
                rows.append(f"{index + 1},-1,{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},0.95,-1,-1,-1")
            writer.write(image)
    finally:
        writer.release()
    detections.write_text("\n".join(rows) + "\n")
    return scene


WALKERS = [
    Walker((40, 40, 200), (60, 30, 30), (10, 120), (2.0, 0.0), 0, 59),
    Walker((200, 60, 40), (20, 20, 20), (280, 20), (-1.5, 0.0), 5, 40),
    Walker((40, 200, 40), (90, 90, 160), (150, 100), (1.0, 0.5), 20, 59),
]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene"), WALKERS, 60)


def _config(scene: Scene, endpoint: str, **camera: object) -> WorkerConfig:
    return WorkerConfig(
        cameras=(CameraConfig(id="cam1", source=str(scene.video), detections=str(scene.detections), **camera),),
        detector=DetectorConfig(kind="public"),
        tracklets=TrackletConfig(min_frames=4, lost_after_s=0.5, min_box_height=30),
        embedding=EmbeddingConfig(arch="keyreid_test", device="cpu", max_wait_s=0.05),
        publish=PublishConfig(matcher=endpoint, ack_timeout_s=1.0, heartbeat_s=0.2, flush_timeout_s=10.0),
        metrics=MetricsConfig(log_every_s=0),
    )


def test_public_detections_become_acknowledged_tracklet_messages(scene: Scene, matcher: Matcher,
                                                                 zmq_context: zmq.Context) -> None:
    report = run_worker(_config(scene, matcher.endpoint), context=zmq_context)
    time.sleep(0.3)  # the last heartbeats
    messages = sorted(matcher.messages, key=lambda m: m.start_time)
    assert len(messages) == 3, [(m.track_id, m.start_time, m.end_time) for m in messages]
    assert report.publisher.acked == 3 and report.publisher.dropped == 0
    assert report.counters["cam1.frames"] == scene.frames
    for message, walker in zip(messages, WALKERS):  # media time: seconds from the start of the file
        assert message.camera_id == "cam1" and message.model_name == "keyreid_test"
        assert message.descriptor.shape == (DESCRIPTOR_DIM,) and np.isfinite(message.descriptor).all()
        assert message.start_time == pytest.approx(walker.first / FPS, abs=0.15)
        assert message.end_time == pytest.approx(walker.last / FPS, abs=0.15)
        assert abs(message.num_frames - (walker.last - walker.first + 1)) <= 2
        thumbnail = cv2.imdecode(np.frombuffer(message.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert thumbnail.shape[0] == 128
    assert len({m.track_id for m in messages}) == 3
    assert matcher.heartbeats and {h.camera_id for h in matcher.heartbeats} == {"cam1"}
    last = max(matcher.heartbeats, key=lambda h: h.sequence)
    assert last.counters["frames"] == scene.frames and last.counters["published"] == 3
    assert last.counters["expected_frames"] == scene.frames  # a file read once: its length is known


def test_a_worker_reading_a_file_logs_its_progress(scene: Scene, matcher: Matcher, zmq_context: zmq.Context,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config = replace(_config(scene, matcher.endpoint, pace=True, stride=3, max_frames=8),
                     metrics=MetricsConfig(log_every_s=0.5))  # 8 frames, 3 apart at 10 fps: 2.4 s
    with caplog.at_level("INFO", logger="keyreid_stream.workers.pipeline"):
        run_worker(config, context=zmq_context)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cam1: frame ")]
    assert lines and all(" of 8 (" in line and " left" in line for line in lines), lines


def test_matcher_started_late_receives_everything(scene: Scene, zmq_context: zmq.Context,
                                                  start_matcher: Callable[[int | None], Matcher]) -> None:
    probe = zmq_context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)
    outcome: dict[str, object] = {}
    endpoint = f"tcp://127.0.0.1:{port}"
    worker = threading.Thread(target=lambda: outcome.update(report=run_worker(_config(scene, endpoint),
                                                                              context=zmq_context)))
    worker.start()
    time.sleep(2.0)
    receiver = start_matcher(port)
    worker.join(60)
    assert not worker.is_alive()
    assert len(receiver.messages) == 3 and outcome["report"].publisher.dropped == 0


def _free_endpoint(zmq_context: zmq.Context) -> tuple[int, str]:
    probe = zmq_context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)
    return port, f"tcp://127.0.0.1:{port}"


def test_a_file_waits_for_a_matcher_that_starts_late(scene: Scene, zmq_context: zmq.Context,
                                                     start_matcher: Callable[[int | None], Matcher],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """With a short flush timeout, a file read before the matcher answers would end in drops: it waits instead
    (publish.wait_for_matcher_s, 30 s by default). The matcher starts once the worker waits (or after 20 s, long
    after a worker that does not wait has finished)."""
    caplog.set_level(logging.INFO, logger="keyreid_stream.workers")
    port, endpoint = _free_endpoint(zmq_context)
    config = _config(scene, endpoint)
    config = replace(config, publish=replace(config.publish, flush_timeout_s=0.5))
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(report=run_worker(config, context=zmq_context)))
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any("waiting up to" in r.getMessage() for r in caplog.records):
        time.sleep(0.05)
    time.sleep(1.0)
    receiver = start_matcher(port)
    worker.join(60)
    assert not worker.is_alive()
    stats = outcome["report"].publisher
    assert (stats.acked, stats.dropped) == (3, 0) and len(receiver.messages) == 3


def _worker_command(scene: Scene, endpoint: str, *overrides: str) -> list[str]:
    return ["worker", "--camera-id", "cam1", "--source", str(scene.video), "--detections", str(scene.detections),
            "--matcher", endpoint, "embedding.arch=keyreid_test", "embedding.device=cpu", "publish.heartbeat_s=0.2",
            "tracklets.min_box_height=30", "tracklets.lost_after_s=0.5", "metrics.log_every_s=0", *overrides]


def test_a_file_is_not_read_when_the_matcher_never_answers(scene: Scene, zmq_context: zmq.Context,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from keyreid_stream.cli import main

    _, endpoint = _free_endpoint(zmq_context)
    started = time.monotonic()
    assert main(_worker_command(scene, endpoint, "publish.wait_for_matcher_s=1")) == 1
    assert time.monotonic() - started < 30
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("keyreid-stream:")]
    assert len(errors) == 1 and f"the matcher at {endpoint} did not answer within 1 s" in errors[0], errors
    assert "nothing was read from cam1" in errors[0] and "worker ran" not in captured.out


def test_lost_messages_end_with_exit_status_3(scene: Scene, zmq_context: zmq.Context,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without the wait (publish.wait_for_matcher_s=0) and nothing listening: one warning that the matcher looks
    unreachable, with its address; the tracklets are dropped at exit, and the exit status says so."""
    from keyreid_stream.cli import main

    _, endpoint = _free_endpoint(zmq_context)
    status = main(_worker_command(scene, endpoint, "publish.wait_for_matcher_s=0", "publish.flush_timeout_s=2",
                                  "publish.unreachable_warning_s=0.5"))
    captured = capsys.readouterr()
    assert status == 3, captured.err
    unreachable = [line for line in captured.err.splitlines() if "looks unreachable" in line]
    assert len(unreachable) == 1 and endpoint in unreachable[0], captured.err
    assert "3 tracklet message(s) did not reach the matcher (3 dropped, 0 rejected): exit status 3" in captured.err
    assert "0 acknowledged, 0 rejected, 3 dropped" in captured.out


def test_sigterm_flushes_the_open_tracklets(tmp_path: Path, matcher: Matcher) -> None:
    """A paced 12 s video whose people all stay until its end: only the SIGTERM flush can send them."""
    walkers = [replace(w, first=0, last=119, velocity=(w.velocity[0] / 4, w.velocity[1] / 4)) for w in WALKERS]
    long_scene = make_scene(tmp_path, walkers, 120)
    command = [sys.executable, "-m", "keyreid_stream", "worker", "--camera-id", "cam1",
               "--source", str(long_scene.video), "--detections", str(long_scene.detections), "--realtime",
               "--matcher", matcher.endpoint, "embedding.arch=keyreid_test", "embedding.device=cpu",
               "publish.heartbeat_s=0.2", "tracklets.min_box_height=30", "metrics.log_every_s=0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "YOLO_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 90
        while not any(h.counters.get("frames", 0) >= 25 for h in matcher.heartbeats):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the worker never reported 25 frames"
            time.sleep(0.1)
        assert not matcher.messages  # nobody has left the scene yet
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert len(matcher.messages) == 3, err
    frames = max(h.counters.get("frames", 0) for h in matcher.heartbeats)
    assert frames < 100  # it stopped reading: the video was far from finished
    assert all(m.num_frames >= 20 for m in matcher.messages)
    assert "3 acknowledged" in out and "0 dropped" in out


def test_one_process_serves_several_cameras(scene: Scene, matcher: Matcher, zmq_context: zmq.Context) -> None:
    config = _config(scene, matcher.endpoint)
    cameras = tuple(replace(config.cameras[0], id=name, camera_index=0) for name in ("north", "south"))
    report = run_worker(replace(config, cameras=cameras), context=zmq_context)
    by_camera: dict[str, list[TrackletMessage]] = {}
    for message in matcher.messages:
        by_camera.setdefault(message.camera_id, []).append(message)
    assert sorted(by_camera) == ["north", "south"] and all(len(m) == 3 for m in by_camera.values())
    assert report.counters["north.frames"] == report.counters["south.frames"] == scene.frames
    spans = {c: sorted((round(m.end_time - m.start_time, 1)) for m in ms) for c, ms in by_camera.items()}
    assert spans["north"] == spans["south"]  # the same video: the same tracklets on both cameras


def test_a_dead_camera_does_not_stop_the_others(scene: Scene, matcher: Matcher, zmq_context: zmq.Context) -> None:
    config = _config(scene, matcher.endpoint)
    probe = zmq_context.socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(linger=0)  # nothing listens there any more
    dead = replace(config.cameras[0], id="dead", source=f"tcp://127.0.0.1:{port}")
    config = replace(config, cameras=(config.cameras[0], dead),
                     source=replace(config.source, max_reconnects=1, backoff_s=(0.1, 0.2), open_timeout_s=1.0))
    report = run_worker(config, context=zmq_context)
    assert "dead" in report.camera_errors and "cam1" not in report.camera_errors
    assert len(matcher.messages) == 3 and {m.camera_id for m in matcher.messages} == {"cam1"}


@pytest.fixture(scope="module")
def mjpg_clip(scene: Scene) -> Path:
    """What the ffmpeg server of tests/workers/conftest.py streams here: the scene."""
    return scene.video


def _latest(matcher: Matcher, camera: str) -> dict[str, int]:
    beats = [h for h in matcher.heartbeats if h.camera_id == camera]
    return dict(max(beats, key=lambda h: h.sequence).counters) if beats else {}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_worker_reconnects_to_a_restarted_network_stream(scene: Scene, ffmpeg_tcp_server: object,
                                                         matcher: Matcher, zmq_context: zmq.Context) -> None:
    config = _config(scene, matcher.endpoint)
    config = replace(config, cameras=(replace(config.cameras[0], source=ffmpeg_tcp_server.url),),
                     source=replace(config.source, read_timeout_s=2.0, open_timeout_s=5.0, backoff_s=(0.1, 0.5)))
    stop = threading.Event()
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.update(report=run_worker(config, context=zmq_context, stop=stop)))
    worker.start()
    try:
        _wait_for(lambda: _latest(matcher, "cam1").get("frames", 0) >= 10, 60, "the first frames")
        ffmpeg_tcp_server.kill()
        _wait_for(lambda: _latest(matcher, "cam1").get("connected") == 0, 20, "the worker to notice")
        before = _latest(matcher, "cam1")["frames"]
        time.sleep(1.0)
        ffmpeg_tcp_server.start()
        _wait_for(lambda: _latest(matcher, "cam1").get("frames", 0) >= before + 10, 30, "frames after the restart")
        after = _latest(matcher, "cam1")
        assert after["reconnects"] >= 1 and after["ended"] == 0  # frames flow again on the same camera
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    report = outcome["report"]
    assert report.camera_errors == {} and report.counters["cam1.frames"] >= before + 10


@pytest.mark.redis
def test_two_cameras_into_the_real_matcher(scene: Scene, redis_client, zmq_context: zmq.Context) -> None:
    """The worker and the matcher together: both cameras show the same walkers, so each identity gets exactly the
    two tracklets (one per camera) of one walker, stored with thumbnails, and the heartbeats reach Redis."""
    from keyreid_stream.matcher.config import local_config
    from keyreid_stream.matcher.service import MatcherThread
    from keyreid_stream.matcher.state.keys import Keys

    kwargs = redis_client.connection_pool.connection_kwargs
    matcher_config = local_config(f"redis://{kwargs['host']}:{kwargs['port']}/0", recluster_every_s=0)
    keys = Keys()
    config = _config(scene, matcher_config.ingest.listen)
    cameras = tuple(replace(config.cameras[0], id=name) for name in ("north", "south"))
    with MatcherThread(matcher_config, context=zmq_context) as matcher:
        report = run_worker(replace(config, cameras=cameras), context=zmq_context)
        assert report.publisher.acked == 6
        _wait_for(lambda: redis_client.get(keys.cursor) == redis_client.xrevrange(keys.stream, count=1)[0][0],
                  30, "association")
        time.sleep(0.5)  # the final heartbeats
    assert matcher.report.ingest.stored == 6 and matcher.report.association.decided == 6
    members = {}
    for gid in redis_client.zrange(keys.identities, 0, -1):
        ids = [m.decode() for m in redis_client.zrange(keys.members(gid.decode()), 0, -1)]
        rows = [redis_client.hmget(keys.tracklet(i), ("camera", "start", "end", "thumb")) for i in ids]
        members[gid] = sorted((c.decode(), round(float(e) - float(s), 1), t) for c, s, e, t in rows)
    assert len(members) == 3, members
    for rows in members.values():
        assert [r[0] for r in rows] == ["north", "south"] and rows[0][1] == rows[1][1]
        assert all(r[2] == b"1" for r in rows)  # thumbnails stored
    for camera in ("north", "south"):
        heartbeat = json.loads(redis_client.hget(keys.cameras, camera))
        assert heartbeat["counters"]["frames"] == scene.frames


def test_mot_output_holds_every_tracked_box(scene: Scene, matcher: Matcher, zmq_context: zmq.Context,
                                            tmp_path: Path) -> None:
    """output.mot_dir: the tracker's boxes of every frame in MOTChallenge format (frame = index + 1), scored
    against the drawn walkers as ground truth."""
    from keyreid_stream.eval.mtmc import evaluate_camera
    from keyreid_stream.mot import MotTracks, read_mot

    config = replace(_config(scene, matcher.endpoint), output=OutputConfig(mot_dir=str(tmp_path / "mot")))
    report = run_worker(config, context=zmq_context)
    assert report.publisher.acked == 3
    tracked = read_mot(tmp_path / "mot" / "cam1.txt")  # complete: the writer was closed with the worker
    rows = [(frame + 1, number, *walker.box(frame)) for number, walker in enumerate(WALKERS)
            for frame in scene.truth[number]]
    truth = np.asarray(rows, dtype=np.float64)
    gt = MotTracks(truth[:, 0], truth[:, 1], np.c_[truth[:, 2:4], truth[:, 4:6] - truth[:, 2:4]], np.ones(len(truth)))
    scores = evaluate_camera(gt, tracked)
    assert len(np.unique(tracked.ids)) == 3 and tracked.ids.min() > 1_000_000  # the worker's namespaced ids
    assert tracked.frames.min() >= 1 and tracked.frames.max() == scene.frames
    assert scores.clear.id_switches == 0 and scores.clear.false_positives == 0
    assert scores.clear.mota >= 0.95 and scores.identity.idf1 >= 0.97
    assert scores.clear.motp >= 0.95  # frames numbered index + 1: one frame off would cost about 0.1 IoU
    assert ((tracked.scores > 0.94) & (tracked.scores < 0.96)).all()  # the detections' scores
