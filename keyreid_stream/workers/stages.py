"""The seams of the worker pipeline, as Protocols: what :class:`~keyreid_stream.workers.pipeline.Worker` needs of
its frame sources, detector, trackers, embedder and sink. Any object with these members fits (the implementations
here do: :class:`~keyreid_stream.workers.frame_source.FrameSource`,
:class:`~keyreid_stream.workers.detection.PersonDetector`, :class:`~keyreid_stream.workers.tracking.CameraTracker`,
:class:`~keyreid_stream.inference.embedder.TrackletEmbedder` and
:class:`~keyreid_stream.workers.appearance.PartHistogramEmbedder`,
:class:`~keyreid_stream.workers.publisher.Publisher`), and a type checker verifies it where they meet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from keyreid_stream.contracts import Detections, Frame, Tracklet, TrackletMessage
from keyreid_stream.workers.frame_source import SourceStats
from keyreid_stream.workers.publisher import PublisherStats

__all__ = ["Closeable", "Detector", "Embedder", "Sink", "Source", "Tracker"]


class Closeable(Protocol):
    """A part the worker closes after its run (detector, keypoint backend, MOT writer)."""

    def close(self) -> None: ...


class Source(Protocol):
    """Frames of one camera: iterated by its reader thread, closed from any thread."""

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def stats(self) -> SourceStats: ...

    def expected_frames(self) -> int | None: ...


class Detector(Protocol):
    """People in frames of any cameras, one untracked :class:`Detections` per frame."""

    def detect(self, frames: Sequence[Frame]) -> list[Detections]: ...


class Tracker(Protocol):
    """One camera's tracker: track ids for its detections, and the ids of the tracks that ended."""

    def update(self, frame: Frame, detections: Detections) -> Detections: ...

    def pop_finished(self) -> list[int]: ...


class Embedder(Protocol):
    """Descriptors of finished tracklets, ``(N, D)`` float32, labelled with the model's name and version."""

    model_name: str
    model_version: str
    clip_length: int
    max_clips: int

    def embed(self, tracklets: Sequence[Tracklet]) -> np.ndarray: ...


class Sink(Protocol):
    """Where tracklet messages go (the publisher to the matcher): buffered, acknowledged, flushed at close."""

    @property
    def endpoint(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    def wait_connected(self, timeout_s: float, stop: threading.Event | None = None) -> bool: ...

    def publish(self, message: TrackletMessage) -> None: ...

    def stats(self) -> PublisherStats: ...

    def close(self, flush_timeout_s: float = 10.0) -> PublisherStats: ...
