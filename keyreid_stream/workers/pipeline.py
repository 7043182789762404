"""The camera worker: frames in, tracklet descriptors out to the matcher.

One process serves one or several cameras. Its threads hand work over through bounded queues::

    reader (one per camera) --frames--> perception --segments--> embedding --messages--> publisher --> matcher
                                        detect (all cameras in one batch), track (per camera),
                                        keypoints, tracklet accumulation (per camera)

* A reader pulls frames from its :class:`~keyreid_stream.workers.sources.FrameSource`. When the queue of a live
  camera is full its oldest frame is dropped and counted (the pipeline falls behind the camera, never the
  reverse); a file waits instead, so a file is always processed completely.
* Perception runs the detector on frames of all cameras at once, then each camera's tracker and accumulator in
  frame order. Keypoints are estimated only for the observations the accumulator keeps.
* Embedding collects finished tracklets of all cameras for up to ``max_wait_s`` and runs them through the model
  together. A tracklet whose descriptor is not finite is logged and counted, never published.
* The publisher (:class:`~keyreid_stream.workers.publisher.Publisher`) buffers up to a bound, retransmits until
  the matcher acknowledges, counts what it has to drop, and sends each camera's heartbeat.

Files wait for the matcher: with a file (or image folder) among the cameras, nothing is read until the publisher
has a connection to the matcher, for up to ``matcher_wait_s``; then :class:`MatcherUnreachable` is raised with
nothing read (reading while nobody listens would only fill the publisher's buffer and drop). Live sources never
wait: their frames happen now.

Stopping (``stop`` event, e.g. on SIGTERM): the readers stop, the frames already queued are processed, every
open track is flushed as a tracklet, embedded and published, and the publisher waits up to ``flush_timeout_s``
for the acknowledgements. The same happens when every source has ended.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keyreid_stream.contracts import Detections, Frame, Heartbeat, TrackletMessage
from keyreid_stream.mot import MotWriter, xyxy_to_xywh
from keyreid_stream.progress import format_time_left, time_left
from keyreid_stream.workers.frame_source import SourceStats
from keyreid_stream.workers.metrics import WorkerMetrics, format_metrics
from keyreid_stream.workers.publisher import PublisherStats
from keyreid_stream.workers.stages import Detector, Embedder, Sink, Source, Tracker
from keyreid_stream.workers.tracklets import KeypointFn, TrackletAccumulator, TrackletSegment, thumbnail_jpeg

__all__ = ["CameraRuntime", "MatcherUnreachable", "Worker", "WorkerReport"]

logger = logging.getLogger(__name__)

_END = object()  # end of the segment stream
IDLE_WAIT_S = 0.05
QUIET_WAIT_S = 1.0  # how long files wait for the matcher before the wait is logged


class MatcherUnreachable(RuntimeError):
    """Files were not read: the matcher did not accept a connection within the wait."""


@dataclass
class CameraRuntime:
    """One camera's parts: its source, tracker and accumulator, the queue between reader and perception, and
    where its tracked boxes are written (``mot``, optional)."""

    camera_id: str
    source: Source
    tracker: Tracker
    accumulator: TrackletAccumulator
    live: bool
    frames: queue.Queue[Frame] = field(default_factory=lambda: queue.Queue(maxsize=8))
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    mot: MotWriter | None = None


@dataclass(frozen=True)
class WorkerReport:
    """What a worker did: per-camera and global counters, stage rates and the publisher's final statistics."""

    elapsed_s: float
    counters: dict[str, int]
    stages: dict[str, object]
    publisher: PublisherStats
    latency_p50_s: float | None
    latency_p95_s: float | None
    camera_errors: dict[str, str]
    sources: dict[str, SourceStats] = field(default_factory=dict)  # camera id -> its counters


class Worker:
    """Runs the threads of one worker process; build it with :func:`keyreid_stream.workers.service.build_worker`."""

    def __init__(self, cameras: Sequence[CameraRuntime], detector: Detector, embedder: Embedder,
                 publisher: Sink | None, *, keypoints_fn: KeypointFn | None = None, detect_batch: int = 16,
                 embed_batch_clips: int = 64, embed_max_wait_s: float = 0.2, embed_queue: int = 256,
                 flush_timeout_s: float = 10.0, log_every_s: float = 10.0, thumbnails: bool = True,
                 metrics: WorkerMetrics | None = None, matcher_wait_s: float = 0.0) -> None:
        if not cameras:
            raise ValueError("a worker needs at least one camera")
        self.cameras = {camera.camera_id: camera for camera in cameras}
        self.detector, self.embedder, self._publisher = detector, embedder, publisher
        self.keypoints_fn = keypoints_fn
        self.detect_batch, self.embed_batch_clips = detect_batch, embed_batch_clips
        self.embed_max_wait_s = embed_max_wait_s
        self.flush_timeout_s, self.log_every_s, self.thumbnails = flush_timeout_s, log_every_s, thumbnails
        self.matcher_wait_s = matcher_wait_s
        self.metrics = metrics or WorkerMetrics()
        self.segments: queue.Queue[Any] = queue.Queue(maxsize=embed_queue)  # TrackletSegments, then _END
        self.frames_ready = threading.Event()
        self._stop = threading.Event()
        self._pending_latency: dict[str, float] = {}
        self._latency_lock = threading.Lock()
        self._heartbeat_sequence = 0

    # -- public ----------------------------------------------------------------------------------------------

    @property
    def publisher(self) -> Sink:
        """Where the messages go; given to the constructor or set before :meth:`run` (the publisher's heartbeats
        come from the worker, so it is often made after it)."""
        if self._publisher is None:
            raise RuntimeError("the worker has no publisher: set worker.publisher before run()")
        return self._publisher

    @publisher.setter
    def publisher(self, publisher: Sink) -> None:
        self._publisher = publisher

    def stop(self) -> None:
        """Ask the worker to stop reading and flush (thread-safe, e.g. from a signal handler's thread)."""
        self._stop.set()
        self.frames_ready.set()
        for camera in self.cameras.values():
            camera.source.close()  # thread-safe; ends a read or a reconnection wait in progress

    def run(self, stop: threading.Event | None = None) -> WorkerReport:
        """Run until every source has ended or ``stop`` (or :meth:`stop`) is set; then flush and report.

        Raises :class:`MatcherUnreachable` (nothing read, everything closed) when files wait for the matcher in
        vain."""
        self._wait_for_matcher(stop)
        threads = [threading.Thread(target=self._read, args=(camera,), name=f"reader-{camera.camera_id}",
                                    daemon=True) for camera in self.cameras.values()]
        threads += [threading.Thread(target=self._perceive, name="perception", daemon=True),
                    threading.Thread(target=self._embed, name="embedding", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            self._supervise(threads, stop)
        finally:
            self.stop()
            for thread in threads:
                thread.join()
        publisher_stats = self.publisher.close(self.flush_timeout_s)
        logger.info("worker stopped: %s", format_metrics(self.metrics, self._queue_depths(), self._delivery()))
        return self._report(publisher_stats)

    def _wait_for_matcher(self, stop: threading.Event | None) -> None:
        files = [cid for cid, camera in self.cameras.items() if not camera.live]
        if not self.matcher_wait_s or not files or self.publisher.connected:
            return
        endpoint, started = self.publisher.endpoint, time.monotonic()
        stopping = stop if stop is not None else self._stop
        if self.publisher.wait_connected(min(QUIET_WAIT_S, self.matcher_wait_s), stopping):
            return  # a matcher that is there connects within milliseconds: nothing to say
        logger.info("waiting up to %.0f s for the matcher at %s before reading %s (publish.wait_for_matcher_s)",
                    self.matcher_wait_s, endpoint, ", ".join(files))
        if self.publisher.wait_connected(self.matcher_wait_s - (time.monotonic() - started), stopping):
            logger.info("the matcher at %s answered after %.1f s", endpoint, time.monotonic() - started)
            return
        stopped = stopping.is_set()
        self.stop()  # closes the sources: nothing is read
        if stopped:
            return
        self.publisher.close(0.0)
        raise MatcherUnreachable(
            f"the matcher at {endpoint} did not answer within {self.matcher_wait_s:g} s; nothing was read from "
            f"{', '.join(files)} (is it running, and listening on this address? publish.wait_for_matcher_s sets "
            "the wait)")

    # -- threads ---------------------------------------------------------------------------------------------

    def _supervise(self, threads: list[threading.Thread], stop: threading.Event | None) -> None:
        last_log = time.monotonic()
        while any(thread.is_alive() for thread in threads):
            if stop is not None and stop.is_set() and not self._stop.is_set():
                logger.info("stopping: no more frames are read; flushing the open tracklets")
                self.stop()
            threads[-1].join(timeout=0.1)  # the embedding thread ends last
            if self.log_every_s and time.monotonic() - last_log >= self.log_every_s:
                last_log = time.monotonic()
                logger.info("%s", format_metrics(self.metrics, self._queue_depths(), self._delivery()))
                for line in self._file_progress():
                    logger.info("%s", line)

    def _read(self, camera: CameraRuntime) -> None:
        try:
            for frame in camera.source:
                if self._stop.is_set():
                    break
                self.metrics.count(f"{camera.camera_id}.frames")
                with self.metrics.stage("read"):
                    self._enqueue_frame(camera, frame)
                self.frames_ready.set()
        except Exception as exc:  # a source that gives up (SourceError) or breaks: this camera ends, others go on
            camera.error = str(exc)
            logger.error("camera %s: %s", camera.camera_id, exc)
        finally:
            camera.done.set()
            self.frames_ready.set()

    def _enqueue_frame(self, camera: CameraRuntime, frame: Frame) -> None:
        if camera.live:
            while True:
                try:
                    camera.frames.put_nowait(frame)
                    return
                except queue.Full:
                    try:
                        camera.frames.get_nowait()
                        self.metrics.count(f"{camera.camera_id}.frames_dropped")
                    except queue.Empty:
                        pass
        while not self._stop.is_set():
            try:
                camera.frames.put(frame, timeout=IDLE_WAIT_S)
                return
            except queue.Full:
                continue

    def _perceive(self) -> None:
        try:
            while True:
                batch = self._take_frames()
                if batch:
                    self._process_frames(batch)
                    continue
                if all(camera.done.is_set() for camera in self.cameras.values()) or self._stop.is_set():
                    if not any(camera.frames.qsize() for camera in self.cameras.values()):
                        break
                self.frames_ready.wait(IDLE_WAIT_S)
                self.frames_ready.clear()
            for camera in self.cameras.values():
                self._emit(camera.accumulator.flush())
        finally:
            self._put_segment(_END)

    def _take_frames(self) -> list[Frame]:
        """Up to ``detect_batch`` frames, taken round-robin from the cameras' queues (each camera in order)."""
        batch: list[Frame] = []
        progress = True
        while progress and len(batch) < self.detect_batch:
            progress = False
            for camera in self.cameras.values():
                try:
                    batch.append(camera.frames.get_nowait())
                    progress = True
                except queue.Empty:
                    continue
                if len(batch) >= self.detect_batch:
                    break
        return batch

    def _process_frames(self, frames: list[Frame]) -> None:
        try:
            with self.metrics.stage("detect", len(frames)):
                detections = self.detector.detect(frames)
        except Exception as exc:  # a detector failure costs these frames, never the worker
            self.metrics.count("detect_errors", len(frames))
            logger.error("detection failed on %d frames (%s): %s", len(frames),
                         ", ".join(sorted({f.camera_id for f in frames})), exc)
            return
        for frame, found in zip(frames, detections):
            try:
                self._track_frame(frame, found)
            except Exception as exc:  # a bad frame (or a bug) costs this frame, never the camera
                self.metrics.count(f"{frame.camera_id}.frame_errors")
                logger.exception("camera %s: frame %d could not be tracked: %s", frame.camera_id, frame.index, exc)

    def _track_frame(self, frame: Frame, found: Detections) -> None:
        camera = self.cameras[frame.camera_id]
        with self.metrics.stage("track"):
            tracked = camera.tracker.update(frame, found)
            ended = camera.tracker.pop_finished()
        self.metrics.count(f"{camera.camera_id}.detections", len(found))
        segments = camera.accumulator.add(frame, tracked, self._timed_keypoints())
        segments += camera.accumulator.finish(ended)
        self._emit(segments)
        if camera.mot is not None:
            self._write_mot(camera, camera.mot, frame, tracked)

    def _write_mot(self, camera: CameraRuntime, writer: MotWriter, frame: Frame, tracked: Detections) -> None:
        """The tracked boxes of this frame as MOTChallenge lines (frames from 1); a write failure (disk full) is
        logged once and ends this camera's MOT output, never its tracking."""
        try:
            writer.append(frame.index + 1, tracked.track_ids, xyxy_to_xywh(tracked.boxes), tracked.scores)
        except OSError as exc:
            logger.error("camera %s: writing %s failed, no more MOT output: %s", camera.camera_id, writer.path, exc)
            self.metrics.count(f"{camera.camera_id}.mot_errors")
            camera.mot = None

    def _timed_keypoints(self) -> KeypointFn | None:
        if self.keypoints_fn is None:
            return None
        estimate = self.keypoints_fn

        def timed(frame: Frame, boxes: np.ndarray) -> np.ndarray:
            with self.metrics.stage("pose", len(boxes)):
                return estimate(frame, boxes)

        return timed

    def _emit(self, segments: list[TrackletSegment]) -> None:
        for segment in segments:
            self.metrics.count(f"{segment.tracklet.camera_id}.tracklets")
            self._put_segment(segment)

    def _put_segment(self, item: object) -> None:
        # Blocking: a slow model slows perception down (and a live camera then drops frames, counted) rather
        # than losing finished tracklets.
        self.segments.put(item)

    def _embed(self) -> None:
        finished = False
        while not finished:
            batch, finished = self._collect_segments()
            if batch:
                self._embed_and_publish(batch)

    def _collect_segments(self) -> tuple[list[TrackletSegment], bool]:
        first = self.segments.get()
        if first is _END:
            return [], True
        batch, clips = [first], self._clip_count(first)
        deadline = time.monotonic() + self.embed_max_wait_s
        while clips < self.embed_batch_clips:
            try:
                item = self.segments.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _END:
                return batch, True
            batch.append(item)
            clips += self._clip_count(item)
        return batch, False

    def _clip_count(self, segment: TrackletSegment) -> int:
        length = self.embedder.clip_length
        return min(-(-len(segment.tracklet) // length), self.embedder.max_clips)

    def _embed_and_publish(self, batch: list[TrackletSegment]) -> None:
        try:
            with self.metrics.stage("embed", len(batch)):
                descriptors = self.embedder.embed([segment.tracklet for segment in batch])
        except Exception as exc:  # one bad tracklet must not cost the others: retry them one by one
            if len(batch) == 1:
                self.metrics.count("embed_errors")
                logger.error("embedding failed for %s/%d: %s", batch[0].tracklet.camera_id,
                             batch[0].tracklet.track_id, exc)
                return
            logger.warning("embedding a batch of %d tracklets failed (%s); retrying one by one", len(batch), exc)
            for segment in batch:
                self._embed_and_publish([segment])
            return
        for segment, descriptor in zip(batch, descriptors):
            self._publish(segment, descriptor)

    def _publish(self, segment: TrackletSegment, descriptor: np.ndarray) -> None:
        tracklet = segment.tracklet
        if not np.isfinite(descriptor).all():
            self.metrics.count("embed_nonfinite")
            logger.error("the descriptor of %s/%d is not finite; not published", tracklet.camera_id,
                         tracklet.track_id)
            return
        message = TrackletMessage(
            camera_id=tracklet.camera_id, track_id=tracklet.track_id, start_time=segment.first_seen,
            end_time=segment.last_seen, num_frames=segment.frames_seen, descriptor=descriptor,
            model_name=self.embedder.model_name, model_version=self.embedder.model_version,
            thumbnail_jpeg=thumbnail_jpeg(tracklet) if self.thumbnails else None,
        )
        with self._latency_lock:
            self._pending_latency[message.message_id] = segment.ready_at
        with self.metrics.stage("publish"):
            self.publisher.publish(message)
        self.metrics.count(f"{tracklet.camera_id}.published")

    # -- callbacks and reports -------------------------------------------------------------------------------

    def on_ack(self, message_id: str, _latency_s: float) -> None:
        """Publisher callback: end-to-end latency from the tracklet's last frame read to the matcher's ack."""
        with self._latency_lock:
            ready_at = self._pending_latency.pop(message_id, None)
        if ready_at is not None:
            self.metrics.latency.add(time.monotonic() - ready_at)

    def heartbeats(self) -> list[Heartbeat]:
        """Publisher callback: one heartbeat per camera with its counters."""
        self._heartbeat_sequence += 1
        counters = self.metrics.snapshot()
        beats = []
        for camera_id, camera in self.cameras.items():
            prefix = f"{camera_id}."
            own = {key[len(prefix):]: value for key, value in counters.items() if key.startswith(prefix)}
            stats = camera.source.stats()
            own.update(reconnects=stats.reconnects, connected=int(stats.connected), open_tracks=len(
                camera.accumulator.open), ended=int(camera.done.is_set()),
                expected_frames=camera.source.expected_frames() or 0)  # 0: unknown (a live stream)
            beats.append(Heartbeat(camera_id=camera_id, timestamp=time.time(), sequence=self._heartbeat_sequence,
                                   counters={k: int(v) for k, v in sorted(own.items())[:32]}))
        return beats

    def _file_progress(self) -> list[str]:
        """Cameras reading a file or folder once: frames read of how many, and the time left at this rate."""
        lines, elapsed = [], time.monotonic() - self.metrics.started
        for camera_id, camera in self.cameras.items():
            total = camera.source.expected_frames()
            if total is None or camera.done.is_set():
                continue
            read = self.metrics.counter(f"{camera_id}.frames")
            lines.append(f"{camera_id}: frame {read} of {total} ({100 * read / max(total, 1):.0f}%), "
                         f"{format_time_left(time_left(read, total, elapsed))} "
                         f"({self.metrics.counter(f'{camera_id}.published')} tracklets published)")
        return lines

    def _queue_depths(self) -> dict[str, int]:
        depths = {f"frames[{cid}]": camera.frames.qsize() for cid, camera in self.cameras.items()}
        depths["segments"] = self.segments.qsize()
        return depths

    def _delivery(self) -> dict[str, int]:
        stats = self.publisher.stats()
        return {name: getattr(stats, name) for name in ("published", "acked", "buffered", "dropped", "rejected")}

    def _report(self, publisher_stats: PublisherStats) -> WorkerReport:
        errors = {cid: camera.error for cid, camera in self.cameras.items() if camera.error}
        return WorkerReport(time.monotonic() - self.metrics.started, self.metrics.snapshot(),
                            dict(self.metrics.rates()), publisher_stats, self.metrics.latency.percentile(50),
                            self.metrics.latency.percentile(95), errors,
                            {cid: camera.source.stats() for cid, camera in self.cameras.items()})

