"""Video sources for camera workers: video files, image folders, webcams and network streams.

:func:`open_source` turns a URI into a :class:`FrameSource` (:func:`parse_source` has the rules): a video file
(``VideoFileSource``), a folder of images (``ImageFolderSource``), or a live capture -- a webcam index or a
stream URL such as ``rtsp://`` (``CaptureSource``). Those implementations live in
:mod:`keyreid_stream.workers.capture` (importable from here too), their base class and the URI rules in
:mod:`keyreid_stream.workers.frame_source`. Iterating a source yields :class:`Frame`
objects until the end of the file or folder, or until :meth:`FrameSource.close`, which any thread may call: a
running iteration returns within about the read timeout, sleeps included.

Indices and timestamps
    ``Frame.index`` counts every frame the source has read (the ones ``stride`` skips included) and increases
    strictly over the life of the source, across file loops and stream reconnections. Files and folders
    replay on a reproducible clock, ``timestamp = start_time + index / fps``: media time (``start_time`` 0)
    unless given a start; ``pace=True`` yields them no faster than that rate, on the wall clock from the first
    frame unless given a start. Live frames carry the wall-clock time (``time.time()``) at capture. The rule,
    and how outputs show both clocks, is in :mod:`keyreid_stream.clock`.

Reconnection
    A live stream whose read fails, times out (``read_timeout_s``) or ends is *lost*: the capture is released
    and re-opened with exponential backoff (``backoff_s``: first delay, doubled up to the cap, with jitter),
    with one warning per outage and one info when it is back. ``max_reconnects`` bounds the consecutive
    attempts (``None``: forever); the first open follows the same rule, so a camera that is not up yet is
    waited for. :meth:`FrameSource.stats` counts frames, reconnections, failed opens, stalls and decode
    errors.

URIs appear redacted (:func:`redact`) in every log line and error message.
:func:`read_video_file` and :func:`video_info` are the plain file readers used by the demo.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from keyreid_stream.contracts import Frame
from keyreid_stream.workers.capture import CaptureSource, ImageFolderSource, VideoFileSource
from keyreid_stream.workers.frame_source import (
    MAX_SANE_FPS,
    FrameSource,
    SourceError,
    SourceSpec,
    SourceStats,
    VideoInfo,
    parse_source,
    redact,
    video_info,
)

__all__ = [
    "CaptureSource", "FrameSource", "ImageFolderSource", "SourceError", "SourceSpec", "SourceStats",
    "VideoFileSource", "VideoInfo", "open_source", "parse_source", "read_video_file", "redact", "video_info",
]


def _file_frames(
    path: Path, camera_id: str, stride: int, max_frames: int | None, start_time: float
) -> Iterator[Frame]:
    source = VideoFileSource(path, camera_id, stride=stride, max_frames=max_frames, start_time=start_time)
    with source:
        yield from source


def read_video_file(
    path: str | PathLike[str],
    camera_id: str,
    *,
    stride: int = 1,
    max_frames: int | None = None,
    start_time: float = 0.0,
) -> Iterator[Frame]:
    """Yield every ``stride``-th frame of a video file as :class:`Frame` objects.

    ``Frame.index`` is the frame's index in the file (0, stride, 2*stride, ...), ``Frame.timestamp`` is
    ``start_time + index / fps``. At most ``max_frames`` frames are yielded. Arguments and the file's
    existence are checked at the call; opening and decoding happen on iteration, where an unreadable file
    raises :class:`SourceError`. The capture is released when the iterator is exhausted, closed or
    garbage-collected (stopping early is fine).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None, got {max_frames}")
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"video file not found: {path}")
    return _file_frames(path, camera_id, stride, max_frames, float(start_time))


# --------------------------------------------------------------------------- opening


def _check_options(
    stride: int, fps: float | None, read_timeout_s: float, open_timeout_s: float,
    backoff_s: tuple[float, float], max_reconnects: int | None, max_frames: int | None,
) -> None:
    checks = [
        (stride >= 1, f"stride must be >= 1, got {stride}"),
        (fps is None or (math.isfinite(fps) and 0 < fps <= MAX_SANE_FPS), f"fps must be in (0, 1000]: {fps}"),
        (read_timeout_s > 0, f"read_timeout_s must be > 0, got {read_timeout_s}"),
        (open_timeout_s > 0, f"open_timeout_s must be > 0, got {open_timeout_s}"),
        (len(backoff_s) == 2 and 0 < backoff_s[0] <= backoff_s[1],
         f"backoff_s must be (first, cap) with 0 < first <= cap, got {backoff_s}"),
        (max_reconnects is None or max_reconnects >= 0,
         f"max_reconnects must be >= 0 or None, got {max_reconnects}"),
        (max_frames is None or max_frames >= 0, f"max_frames must be >= 0 or None, got {max_frames}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def open_source(
    uri: str | PathLike[str],
    camera_id: str,
    *,
    pace: bool = False,
    loop: bool = False,
    stride: int = 1,
    fps: float | None = None,
    start_time: float | None = None,
    read_timeout_s: float = 5.0,
    open_timeout_s: float = 10.0,
    backoff_s: tuple[float, float] = (0.5, 30.0),
    max_reconnects: int | None = None,
    max_frames: int | None = None,
    transport: str = "auto",
) -> FrameSource:
    """Open the source a URI names (see :func:`parse_source`) as a :class:`FrameSource`.

    ``stride`` k converts only every k-th frame; ``max_frames`` ends the iteration after that many frames.
    Files and folders: ``fps`` overrides the container's rate (folders: default 25), ``start_time`` starts
    their clock (default: 0, media time; with ``pace``, the wall clock when the first frame is read), ``pace``
    replays in real time, ``loop`` restarts at the end. Live sources: the
    timeouts, ``backoff_s`` and ``max_reconnects`` govern (re)connection; ``fps`` only sets the nominal rate;
    ``transport`` (``auto``, ``tcp``, ``udp``) is the RTSP transport of rtsp:// and rtsps:// streams.
    Files are opened (and checked) here; live sources connect when iterated.
    """
    _check_options(stride, fps, read_timeout_s, open_timeout_s, backoff_s, max_reconnects, max_frames)
    spec = parse_source(uri)
    replay: dict[str, Any] = {"pace": pace, "loop": loop, "stride": stride, "fps": fps,
                              "start_time": start_time, "max_frames": max_frames}
    if spec.kind == "file":
        return VideoFileSource(spec.location, camera_id, **replay)
    if spec.kind == "folder":
        return ImageFolderSource(spec.location, camera_id, **replay)
    return CaptureSource(
        spec, camera_id, uri=os.fspath(uri).strip(), stride=stride, fps=fps, read_timeout_s=read_timeout_s,
        open_timeout_s=open_timeout_s, backoff_s=backoff_s, max_reconnects=max_reconnects,
        max_frames=max_frames, transport=transport,  # type: ignore[arg-type]
    )
