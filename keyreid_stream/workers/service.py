"""Assembling a camera worker from its configuration: ``keyreid-stream worker`` calls :func:`run_worker`.

Configuration stops here: each section of :class:`~keyreid_stream.workers.config.WorkerConfig` becomes the plain
keyword arguments of one part (source, detector, tracker, keypoints, accumulator, embedder, publisher).

Track ids are namespaced by camera (a message carries ``camera_id`` and ``track_id``) and, so that a restarted
worker never reuses the id of an earlier track, they start at ``unix seconds at start x 1,000,000``.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Sequence

import numpy as np
import zmq

from keyreid_stream.clock import format_time
from keyreid_stream.contracts import TRACK_ID_SPAN, Frame
from keyreid_stream.inference.embedder import TrackletEmbedder
from keyreid_stream.inference.loading import load_embedding_model
from keyreid_stream.keypoints.backends import create_backend
from keyreid_stream.keypoints.pose import PoseBackend
from keyreid_stream.mot import MotWriter
from keyreid_stream.workers.appearance import PartHistogramEmbedder
from keyreid_stream.workers.config import CameraConfig, WorkerConfig
from keyreid_stream.workers.detection import PersonDetector, create_detector
from keyreid_stream.workers.pipeline import CameraRuntime, Worker, WorkerReport
from keyreid_stream.workers.publisher import Publisher
from keyreid_stream.workers.sources import open_source
from keyreid_stream.workers.stages import Closeable, Embedder
from keyreid_stream.workers.tracking import CameraTracker
from keyreid_stream.workers.tracklets import KeypointFn, TrackletAccumulator

__all__ = ["build_worker", "run_worker", "track_id_base"]

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0


def track_id_base(now: float | None = None) -> int:
    """The first track id of a worker started at ``now`` (unix seconds)."""
    return int(time.time() if now is None else now) * TRACK_ID_SPAN


def _build_detector(config: WorkerConfig) -> PersonDetector:
    detector = config.detector
    options = dict(detector.options)
    if detector.kind == "public":
        missing = [camera.id for camera in config.cameras if not camera.detections]
        if missing:
            raise ValueError(f"detector.kind is 'public' but camera(s) {', '.join(missing)} have no detections file "
                             "(cameras[i].detections or --detections)")
        return create_detector("public", sources={c.id: c.detections for c in config.cameras}, **options)
    if detector.kind == "hog":
        return create_detector("hog", **options)
    return create_detector(detector.kind, model=detector.model, allow_pickle=detector.allow_pickle,
                           device=detector.device, image_size=detector.image_size, confidence=detector.confidence,
                           half=detector.half, batch_size=detector.batch_size, **options)


def _build_keypoints(config: WorkerConfig,
                     detector: PersonDetector) -> tuple[KeypointFn | None, PoseBackend | None]:
    """The keypoint estimator for kept observations, and the backend to close (None: the detector gives them)."""
    backend_name = config.pose.backend
    if backend_name == "auto":
        if getattr(detector, "gives_keypoints", False):
            return None, None
        backend_name = "prior"
    backend = create_backend(backend_name, **dict(config.pose.options))

    def estimate(frame: Frame, boxes: np.ndarray) -> np.ndarray:
        return backend.estimate_boxes(frame.image, boxes)

    logger.info("keypoints: %s", backend_name)
    return estimate, backend


def _build_camera(camera: CameraConfig, config: WorkerConfig, id_base: int) -> CameraRuntime:
    source_config = config.source
    source = open_source(
        camera.source, camera.id, pace=camera.pace, loop=camera.loop, stride=camera.stride, fps=camera.fps,
        start_time=camera.start_time, max_frames=camera.max_frames, transport=camera.transport,
        read_timeout_s=source_config.read_timeout_s, open_timeout_s=source_config.open_timeout_s,
        backoff_s=source_config.backoff_s, max_reconnects=source_config.max_reconnects,
    )
    frame_rate = (source.fps or DEFAULT_FPS) / camera.stride
    tracker = CameraTracker(config.tracker.kind, frame_rate=frame_rate, id_base=id_base,
                            **dict(config.tracker.params))
    options = {k: v for k, v in dataclasses.asdict(config.tracklets).items() if k != "thumbnails"}
    accumulator = TrackletAccumulator(camera.id, **options)
    logger.info("camera %s: %s (%s, %.1f fps for the tracker; times: %s)", camera.id, source.uri,
                "live" if source.live else "file", frame_rate, _clock(camera, source.live))
    return CameraRuntime(camera.id, source, tracker, accumulator, live=source.live,
                         frames=queue.Queue(maxsize=source_config.frame_queue))


def _clock(camera: CameraConfig, live: bool) -> str:
    """Which clock the camera's times are on (keyreid_stream.clock), for its first log line."""
    if live or (camera.pace and camera.start_time is None):
        return "UTC wall clock"
    if camera.start_time is None:
        return "media time, seconds from the start of the file"
    return f"from start_time {format_time(camera.start_time)}"


def _build_embedder(config: WorkerConfig) -> Embedder:
    """A :class:`TrackletEmbedder` (``embedding.kind: model``) or, without weights, a
    :class:`~keyreid_stream.workers.appearance.PartHistogramEmbedder` (``part-histogram``)."""
    embedding = config.embedding
    if embedding.kind == "part-histogram":
        logger.warning("embedding.kind is part-histogram: re-ID quality is limited (a classical colour and "
                       "texture descriptor of the body parts, not a trained re-ID model); set the matcher's "
                       "association.threshold for it (docs/worker.md)")
        return PartHistogramEmbedder(max_clips=embedding.max_clips)
    loaded = load_embedding_model(embedding.arch, embedding.checkpoint, checkpoint_kind=embedding.checkpoint_kind,
                                  num_cameras=embedding.num_cameras, allow_pickle=embedding.allow_pickle)
    return TrackletEmbedder(loaded, device=embedding.device, amp=embedding.amp, batch_clips=embedding.batch_clips,
                            max_clips=embedding.max_clips, mean=embedding.mean, std=embedding.std,
                            camera_indices={camera.id: camera.camera_index for camera in config.cameras})


def build_worker(config: WorkerConfig, context: zmq.Context[zmq.Socket[bytes]]) -> tuple[Worker, list[Closeable]]:
    """The worker and the parts to close after it has run (detector, keypoint backend, MOT writers)."""
    if not config.cameras:
        raise ValueError("no camera: give --camera-id and --source, or list cameras in the config file")
    closeables: list[Closeable] = []
    cameras: list[CameraRuntime] = []
    try:  # cheap checks first: a missing file is reported before a model is loaded
        id_base = track_id_base()
        for camera in config.cameras:
            cameras.append(_build_camera(camera, config, id_base))
        detector = _build_detector(config)
        closeables.append(detector)
        keypoints_fn, backend = _build_keypoints(config, detector)
        if backend is not None:
            closeables.append(backend)
        embedder = _build_embedder(config)
        _open_mot_writers(config.output.mot_dir, cameras, closeables)
        publish, embedding = config.publish, config.embedding
        worker = Worker(cameras, detector, embedder, publisher=None, keypoints_fn=keypoints_fn,
                        detect_batch=config.detector.batch_size, embed_batch_clips=embedding.batch_clips,
                        embed_max_wait_s=embedding.max_wait_s, embed_queue=embedding.queue,
                        flush_timeout_s=publish.flush_timeout_s, log_every_s=config.metrics.log_every_s,
                        thumbnails=config.tracklets.thumbnails, matcher_wait_s=publish.wait_for_matcher_s)
        worker.publisher = Publisher(context, publish.matcher, buffer_size=publish.buffer_size,
                                     max_in_flight=publish.max_in_flight, ack_timeout_s=publish.ack_timeout_s,
                                     heartbeat_interval_s=publish.heartbeat_s, heartbeats=worker.heartbeats,
                                     on_ack=worker.on_ack,
                                     unreachable_warning_s=publish.unreachable_warning_s).start()
    except BaseException:
        for runtime in cameras:
            runtime.source.close()
        _close_all(closeables)
        raise
    return worker, closeables


def _open_mot_writers(mot_dir: str, cameras: Sequence[CameraRuntime], closeables: list[Closeable]) -> None:
    """``output.mot_dir``: each camera's tracked boxes go to ``MOT_DIR/CAMERA.txt`` (emptied first)."""
    if not mot_dir:
        return
    for camera in cameras:
        path = f"{mot_dir}/{camera.camera_id}.txt"
        try:
            camera.mot = MotWriter(path).open()
        except OSError as exc:
            raise ValueError(f"output.mot_dir: cannot write {path}: {exc.strerror or exc}") from exc
        closeables.append(camera.mot)
    logger.info("tracked boxes: %s/CAMERA.txt (MOTChallenge format)", mot_dir)


def _close_all(parts: Sequence[Closeable]) -> None:
    for part in parts:
        try:
            part.close()
        except Exception as exc:  # closing must not hide the original error
            logger.warning("closing %s failed: %s", type(part).__name__, exc)


def run_worker(config: WorkerConfig, *, context: zmq.Context[zmq.Socket[bytes]] | None = None,
               stop: threading.Event | None = None) -> WorkerReport:
    """Build and run a worker until its sources end or ``stop`` is set; returns what it did."""
    own_context = context is None
    context = context or zmq.Context()
    try:
        worker, closeables = build_worker(config, context)
        try:
            return worker.run(stop)
        finally:
            _close_all(closeables)
    finally:
        if own_context:
            context.destroy(linger=0)
