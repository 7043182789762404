"""Video sources for camera workers: video files, image folders, webcams and network streams.

:func:`open_source` turns a URI into a :class:`FrameSource` (:func:`parse_source` has the rules): a video file
(``VideoFileSource``), a folder of images (``ImageFolderSource``), or a live capture -- a webcam index or a
stream URL such as ``rtsp://`` (``CaptureSource``). Those implementations live in
:mod:`keyreid_stream.workers.capture` (importable from here too). Iterating a source yields :class:`Frame`
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

import logging
import math
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from keyreid_stream.contracts import Frame

if TYPE_CHECKING:
    from keyreid_stream.workers.capture import CaptureSource, ImageFolderSource, VideoFileSource

__all__ = [
    "CaptureSource", "FrameSource", "ImageFolderSource", "SourceError", "SourceSpec", "SourceStats",
    "VideoFileSource", "VideoInfo", "open_source", "parse_source", "read_video_file", "redact", "video_info",
]

logger = logging.getLogger(__name__)

FALLBACK_FPS = 25.0
MAX_SANE_FPS = 1000.0
NETWORK_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https", "tcp", "udp", "srt"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

SourceKind = Literal["file", "folder", "webcam", "network"]
T = TypeVar("T")
S = TypeVar("S", bound="FrameSource")

_HINT = ("a source is a video file, an image folder, a webcam index or a stream URL "
         "(rtsp://, http://, tcp://, ...)")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_WEBCAM_RE = re.compile(r"(?:webcam:|/dev/video)?([0-9]+)")
_SECRET_QUERY_RE = re.compile(
    r"([?&;](?:password|passwd|pwd|pass|token|secret|api_?key|key)=)[^&;#]*", re.IGNORECASE
)
_PROBE_IMAGE = np.zeros((1, 1, 3), np.uint8)
_IMPLEMENTATIONS = frozenset({"CaptureSource", "ImageFolderSource", "VideoFileSource"})


class SourceError(RuntimeError):
    """A video source is missing, cannot be opened or yields no decodable frame."""


@dataclass(frozen=True)
class VideoInfo:
    """Container properties of a video file (``frame_count`` is 0 when the container does not say)."""

    width: int
    height: int
    fps: float
    frame_count: int


@dataclass(frozen=True)
class SourceSpec:
    """What a source URI names: its kind, where to open it (path, webcam index or URL), whether it is live."""

    kind: SourceKind
    location: str
    live: bool


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of a source's counters (see :meth:`FrameSource.stats`)."""

    frames: int
    reconnects: int
    open_failures: int
    stalls: int
    decode_errors: int
    connected: bool
    last_error: str | None
    ever_connected: bool = False  # opened at least once (a camera that never was: wrong URL, never up)


# --------------------------------------------------------------------------- URIs


def redact(uri: str) -> str:
    """``uri`` with the password of ``scheme://user:password@host`` (and secret query values) as ``***``."""
    match = _SCHEME_RE.match(uri)
    if match is None:
        return uri
    start = match.end()
    end = min((i for i in (uri.find(c, start) for c in "/?#") if i >= 0), default=len(uri))
    userinfo, at, hostport = uri[start:end].rpartition("@")  # the authority ends at the first / ? #
    authority = f"{userinfo.split(':', 1)[0]}:***@{hostport}" if at and ":" in userinfo else uri[start:end]
    return uri[:start] + authority + _SECRET_QUERY_RE.sub(r"\1***", uri[end:])


def parse_source(uri: str | PathLike[str]) -> SourceSpec:
    """Classify a source URI; raises :class:`SourceError` when it names nothing usable.

    Stream URLs (rtsp, rtsps, rtmp, http, https, tcp, udp, srt) are ``network``; ``"0"``, ``webcam:0`` and
    ``/dev/video0`` are ``webcam`` (location: the index); ``file:///path`` and existing files are ``file``;
    existing directories are ``folder`` (of .jpg/.jpeg/.png/.bmp images). ``~`` is expanded.
    """
    text = os.fspath(uri).strip()
    if not text:
        raise SourceError(f"empty source; {_HINT}")
    scheme = _SCHEME_RE.match(text)
    if scheme is not None:
        name = scheme.group(1).lower()
        if name in NETWORK_SCHEMES:
            return SourceSpec("network", text, True)
        if name == "file":
            return _local_spec(_file_uri_path(text), text)
        raise SourceError(f"unsupported scheme {name}:// in {redact(text)}; {_HINT}")
    webcam = _WEBCAM_RE.fullmatch(text)
    if webcam is not None:
        return SourceSpec("webcam", str(int(webcam.group(1))), True)
    return _local_spec(Path(text).expanduser(), text)


def _file_uri_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"{redact(uri)}: file:// URIs must name a local file (file:///path)")
    return Path(unquote(parts.path)).expanduser()


def _local_spec(path: Path, uri: str) -> SourceSpec:
    if path.is_file():
        return SourceSpec("file", str(path), False)
    if path.is_dir():
        return SourceSpec("folder", str(path), False)
    what = "not a regular file or directory" if path.exists() else "no such file or directory"
    raise SourceError(f"{what}: {redact(uri)}; {_HINT}")


# --------------------------------------------------------------------------- plain file readers


def _sane_fps(raw: float, path: Path | str) -> float:
    """The container's fps, or :data:`FALLBACK_FPS` (with a warning) when it is missing or absurd."""
    if math.isfinite(raw) and 0.0 < raw <= MAX_SANE_FPS:
        return float(raw)
    logger.warning("%s reports fps=%r; assuming %.0f fps for timestamps", path, raw, FALLBACK_FPS)
    return FALLBACK_FPS


def _open(path: Path) -> cv2.VideoCapture:
    """An opened capture for an existing file; raises SourceError otherwise (nothing is left open)."""
    if not path.is_file():
        raise SourceError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open video file {path} (unsupported or corrupt container)")
    return capture


def _frame_count(capture: cv2.VideoCapture) -> int:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if math.isfinite(count) and count > 0 else 0


def video_info(path: str | PathLike[str]) -> VideoInfo:
    """Width, height, fps and frame count of a video file, read from its container."""
    path = Path(path)
    capture = _open(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = _sane_fps(capture.get(cv2.CAP_PROP_FPS), path)
        frame_count = _frame_count(capture)
    finally:
        capture.release()
    if width <= 0 or height <= 0:
        raise SourceError(f"video file {path} reports no frame size ({width}x{height})")
    return VideoInfo(width=width, height=height, fps=fps, frame_count=frame_count)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _file_frames(
    path: Path, camera_id: str, stride: int, max_frames: int | None, start_time: float
) -> Iterator[Frame]:
    from keyreid_stream.workers.capture import VideoFileSource

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


# --------------------------------------------------------------------------- frame sources


class _Closed(Exception):
    """Internal: the source was closed while an iteration ran."""


class FrameSource(ABC):
    """A stream of :class:`Frame` objects from one camera; iterate it once, :meth:`close` it from any thread.

    Attributes: ``camera_id``, ``uri`` (redacted), ``live`` and ``fps`` (nominal; ``None`` while unknown).
    Also a context manager (closes on exit).
    """

    def __init__(
        self, camera_id: str, uri: str, *, live: bool, fps: float | None, stride: int, max_frames: int | None
    ) -> None:
        Frame(camera_id, 0, 0.0, _PROBE_IMAGE)  # a readable ContractError for a bad camera id, now
        self.camera_id = camera_id
        self.uri = redact(uri)
        self.live = live
        self.fps = fps
        self._stride = stride
        self._max_frames = max_frames
        self._index = 0  # the next frame's index
        self._closed = threading.Event()
        self._io_lock = threading.Lock()  # held around every use of the capture
        self._capture: cv2.VideoCapture | None = None
        self._state_lock = threading.Lock()
        self._counts = {"frames": 0, "reconnects": 0, "open_failures": 0, "stalls": 0, "decode_errors": 0}
        self._last_error: str | None = None
        self._ever_connected = False
        self._iterated = False

    @abstractmethod
    def _frames(self) -> Iterator[Frame]:
        """The frames; raises :class:`_Closed` (through the helpers below) once the source is closed."""

    def __iter__(self) -> Iterator[Frame]:
        with self._state_lock:
            if self._iterated:
                raise RuntimeError(f"{self.camera_id}: a frame source can be iterated only once")
            self._iterated = True
        return self._iterate()

    def _iterate(self) -> Iterator[Frame]:
        frames = self._frames()
        emitted = 0
        try:
            while not self._closed.is_set() and (self._max_frames is None or emitted < self._max_frames):
                frame = next(frames, None)
                if frame is None:
                    return
                self._count("frames")
                emitted += 1
                yield frame
        except _Closed:
            logger.debug("%s: %s closed during iteration", self.camera_id, self.uri)
        finally:
            frames.close()
            self._replace_capture(None)

    def close(self) -> None:
        """Stop the source: idempotent, thread-safe; a running iteration returns promptly."""
        self._closed.set()
        if self._io_lock.acquire(blocking=False):  # else the iterating thread releases after its read
            try:
                self._release_capture()
            finally:
                self._io_lock.release()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def expected_frames(self) -> int | None:
        """How many frames this source yields in all, when that is known (a file or folder read once), else None."""
        return None

    def stats(self) -> SourceStats:
        """A consistent snapshot of the counters."""
        with self._state_lock:
            connected = self._capture is not None
            return SourceStats(**self._counts, connected=connected, last_error=self._last_error,
                               ever_connected=self._ever_connected)

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.camera_id!r}, {self.uri!r})"

    # -- helpers for subclasses

    def _count(self, name: str, n: int = 1) -> None:
        with self._state_lock:
            self._counts[name] += n

    def _set_error(self, error: str) -> None:
        with self._state_lock:
            self._last_error = error

    def _sleep(self, seconds: float) -> None:
        """Sleep, or raise :class:`_Closed` as soon as the source is closed."""
        if self._closed.wait(max(0.0, seconds)):
            raise _Closed

    def _use_capture(self, operation: Callable[[cv2.VideoCapture], T]) -> T:
        """``operation(capture)`` under the I/O lock; :class:`_Closed` if closed before or during it."""
        with self._io_lock:
            if self._closed.is_set() or self._capture is None:
                raise _Closed
            result = operation(self._capture)
        if self._closed.is_set():
            raise _Closed
        return result

    def _replace_capture(self, capture: cv2.VideoCapture | None) -> None:
        """Release the current capture and install ``capture``; a capture arriving after close is released."""
        with self._io_lock:
            self._release_capture()
            if capture is not None and self._closed.is_set():
                capture.release()
                raise _Closed
            with self._state_lock:
                self._capture = capture
                self._ever_connected |= capture is not None

    def _release_capture(self) -> None:  # caller holds the I/O lock
        with self._state_lock:
            capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def _make_frame(self, index: int, timestamp: float, image: np.ndarray) -> Frame:
        return Frame(camera_id=self.camera_id, index=index, timestamp=timestamp, image=_as_bgr(image))


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
    from keyreid_stream.workers.capture import CaptureSource, ImageFolderSource, VideoFileSource

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


def __getattr__(name: str) -> object:  # the implementations live in capture.py, which imports this module
    if name in _IMPLEMENTATIONS:
        from keyreid_stream.workers import capture

        return getattr(capture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
