"""The demo, as far as the system exists today: the foundation slice.

Video file -> :class:`~keyreid_stream.contracts.Frame` -> OpenCV HOG people detector ->
:class:`~keyreid_stream.contracts.Detections` -> one :class:`~keyreid_stream.contracts.TrackletMessage` per
detection (a single-observation tracklet whose descriptor is a two-part HSV colour histogram and whose thumbnail
is the JPEG crop) -> wire codec -> ZeroMQ PUSH on 127.0.0.1 -> PULL in a receiver thread -> decode.

It exercises the real contracts, codec and transport end to end. It does not track, does not run KeyRe-ID and
does not match across cameras: those arrive with the worker, model and matcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import zmq

from keyreid_stream.contracts import Detections, Frame, Heartbeat, TrackletMessage
from keyreid_stream.wire import WireError, decode, encode
from keyreid_stream.workers.hog import HogPersonDetector
from keyreid_stream.workers.sources import read_video_file
from keyreid_stream.workers.tracklets import encode_thumbnail

logger = logging.getLogger(__name__)

DESCRIPTOR_NAME = "hsv-histogram-2part"
DESCRIPTOR_VERSION = "1"
THUMBNAIL_HEIGHT = 128
RECEIVE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DemoReport:
    video: Path
    frames: int
    detections: int
    published: int
    received: int
    rejected: int
    bytes_sent: int
    elapsed_s: float
    messages: tuple[TrackletMessage, ...] = field(repr=False)
    people_per_frame: tuple[int, ...] = field(repr=False)


def resolve_source(source: str) -> Path:
    """``"sample"`` -> the project's sample video (fetched when missing); anything else is a file path."""
    if source == "sample":
        from keyreid_stream.data.sample import fetch_sample

        return fetch_sample()
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    return path


def run_demo(
    *,
    video: Path,
    camera_id: str = "cam0",
    max_frames: int = 100,
    stride: int = 2,
    hog_max_width: int = 640,
    min_score: float = 0.3,
    histogram_bins: int = 8,
    thumbnails: bool = True,
    endpoint: str = "tcp://127.0.0.1:*",
    context: zmq.Context | None = None,
) -> DemoReport:
    """Run the foundation slice on ``video`` and return what was sent and what arrived."""
    own_context = context is None
    context = context or zmq.Context()
    receiver = _Receiver(context, endpoint)
    try:
        receiver.start()
        started = time.monotonic()
        detector = HogPersonDetector(max_width=hog_max_width, min_score=min_score)
        frames = read_video_file(video, camera_id, stride=stride, max_frames=max_frames)
        sent = _publish(context, receiver.endpoint, _messages(frames, detector, histogram_bins, thumbnails),
                        camera_id)
        receiver.join(RECEIVE_TIMEOUT_S)
        elapsed = time.monotonic() - started
    finally:
        receiver.close()
        if own_context:
            context.destroy(linger=0)
    return DemoReport(
        video=video, frames=sent.frames, detections=sent.detections, published=sent.published,
        received=len(receiver.messages), rejected=sum(receiver.rejected.values()), bytes_sent=sent.bytes_sent,
        elapsed_s=elapsed, messages=tuple(receiver.messages), people_per_frame=tuple(sent.people_per_frame),
    )


def part_histogram_descriptor(crop: np.ndarray, bins: int) -> np.ndarray:
    """Hue x saturation histograms of the upper and lower half of a person crop, each L1-normalised."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    half = max(1, hsv.shape[0] // 2)
    parts = []
    for region in (hsv[:half], hsv[half:]):
        hist = cv2.calcHist([region], [0, 1], None, [bins, bins], [0, 180, 0, 256]).ravel()
        parts.append(hist / max(float(hist.sum()), 1.0))
    return np.concatenate(parts).astype(np.float32)


def format_report(report: DemoReport) -> str:
    lines = [
        "keyreid-stream demo: foundation slice (video -> HOG people -> wire messages -> ZeroMQ -> decode).",
        "Not yet part of it: tracking, KeyRe-ID embeddings, the Redis matcher and cross-camera identities.",
        "",
        f"  video              {report.video}",
        f"  frames read        {report.frames}",
        f"  people detected    {report.detections} (max {max(report.people_per_frame, default=0)} in a frame)",
        f"  messages sent      {report.published} ({report.bytes_sent / 1024:.1f} KiB on the wire)",
        f"  messages received  {report.received} decoded, {report.rejected} rejected",
        f"  time               {report.elapsed_s:.1f} s ({report.frames / max(report.elapsed_s, 1e-9):.1f} frames/s)",
    ]
    if report.messages:
        lines += ["", "  first messages:", "    camera  track  time (s)  descriptor     thumbnail"]
        for message in report.messages[:5]:
            thumb = f"{len(message.thumbnail_jpeg)} B jpeg" if message.thumbnail_jpeg else "-"
            lines.append(f"    {message.camera_id:<7} {message.track_id:>5}  {message.start_time:>8.1f}  "
                         f"{message.model_name}[{message.descriptor.shape[0]}]  {thumb}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- internals


@dataclass
class _Sent:
    frames: int = 0
    detections: int = 0
    published: int = 0
    bytes_sent: int = 0
    people_per_frame: list[int] = field(default_factory=list)


def _messages(
    frames: Iterator[Frame], detector: HogPersonDetector, bins: int, thumbnails: bool
) -> Iterator[tuple[Frame, Detections, list[TrackletMessage]]]:
    track_counter = 0
    for frame in frames:
        detections = detector.detect(frame)
        messages = []
        for box in detections.boxes:
            crop = _crop(frame.image, box)
            if crop is None:
                continue
            messages.append(TrackletMessage(
                camera_id=frame.camera_id, track_id=track_counter, start_time=frame.timestamp,
                end_time=frame.timestamp, num_frames=1, descriptor=part_histogram_descriptor(crop, bins),
                model_name=DESCRIPTOR_NAME, model_version=DESCRIPTOR_VERSION,
                thumbnail_jpeg=_thumbnail(crop) if thumbnails else None,
            ))
            track_counter += 1
        yield frame, detections, messages


def _publish(context: zmq.Context, endpoint: str, batches: Iterator, camera_id: str) -> _Sent:
    sent = _Sent()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.setsockopt(zmq.SNDTIMEO, int(RECEIVE_TIMEOUT_S * 1000))
    try:
        push.connect(endpoint)
        for _frame, detections, messages in batches:
            sent.frames += 1
            sent.detections += len(detections)
            sent.people_per_frame.append(len(detections))
            for message in messages:
                payload = encode(message)
                push.send(payload, copy=False)
                sent.published += 1
                sent.bytes_sent += len(payload)
        final = Heartbeat(camera_id=camera_id, timestamp=time.time(), sequence=0,
                          counters={"frames": sent.frames, "published": sent.published, "final": 1})
        push.send(encode(final))
    finally:
        push.close()
    return sent


class _Receiver(threading.Thread):
    """PULL socket in its own thread: decodes until the sender's final heartbeat has arrived."""

    def __init__(self, context: zmq.Context, endpoint: str):
        super().__init__(name="demo-receiver", daemon=True)
        self.pull = context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.bind(endpoint)
        self.endpoint = self.pull.getsockopt_string(zmq.LAST_ENDPOINT)
        self.messages: list[TrackletMessage] = []
        self.rejected: Counter[str] = Counter()
        self._stop_requested = threading.Event()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        while not self._stop_requested.is_set():
            if not poller.poll(100):
                continue
            try:
                message = decode(self.pull.recv(copy=True))
            except WireError as exc:
                if not self.rejected[exc.code]:
                    logger.warning("rejected a message (%s): %s", exc.code, exc)
                self.rejected[exc.code] += 1
                continue
            if isinstance(message, Heartbeat):
                if message.counters.get("final"):
                    return
                continue
            self.messages.append(message)

    def close(self) -> None:
        self._stop_requested.set()
        if self.is_alive():
            self.join(2.0)
        self.pull.close(linger=0)


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    if x2 - x1 < 8 or y2 - y1 < 16:
        return None
    return image[y1:y2, x1:x2]


def _thumbnail(crop: np.ndarray) -> bytes:
    return encode_thumbnail(crop, THUMBNAIL_HEIGHT)
