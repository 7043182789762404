"""The frame-source base every video source implements, the URI rules and the counters.

:class:`FrameSource` is the iteration, closing and counting every source shares; :func:`parse_source` turns a URI
into a :class:`SourceSpec` and :func:`redact` hides its secrets. The implementations are in
:mod:`keyreid_stream.workers.capture`, opening a URI is :func:`keyreid_stream.workers.sources.open_source`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from keyreid_stream.contracts import Frame

__all__ = [
    "FALLBACK_FPS", "IMAGE_SUFFIXES", "MAX_SANE_FPS", "FrameSource", "SourceClosed", "SourceError", "SourceSpec",
    "SourceStats", "VideoInfo", "count_frames", "open_video", "parse_source", "redact", "sane_fps", "video_info",
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


def sane_fps(raw: float, path: Path | str) -> float:
    """The container's fps, or :data:`FALLBACK_FPS` (with a warning) when it is missing or absurd."""
    if math.isfinite(raw) and 0.0 < raw <= MAX_SANE_FPS:
        return float(raw)
    logger.warning("%s reports fps=%r; assuming %.0f fps for timestamps", path, raw, FALLBACK_FPS)
    return FALLBACK_FPS


def open_video(path: Path) -> cv2.VideoCapture:
    """An opened capture for an existing file; raises SourceError otherwise (nothing is left open)."""
    if not path.is_file():
        raise SourceError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open video file {path} (unsupported or corrupt container)")
    return capture


def count_frames(capture: cv2.VideoCapture) -> int:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if math.isfinite(count) and count > 0 else 0


def video_info(path: str | PathLike[str]) -> VideoInfo:
    """Width, height, fps and frame count of a video file, read from its container."""
    path = Path(path)
    capture = open_video(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = sane_fps(capture.get(cv2.CAP_PROP_FPS), path)
        frame_count = count_frames(capture)
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




# --------------------------------------------------------------------------- frame sources


class SourceClosed(Exception):
    """The source was closed while an iteration ran (raised and caught inside the sources)."""


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
    def _frames(self) -> Generator[Frame, None, None]:
        """The frames; raises :class:`SourceClosed` (through the helpers below) once the source is closed."""

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
        except SourceClosed:
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
        """Sleep, or raise :class:`SourceClosed` as soon as the source is closed."""
        if self._closed.wait(max(0.0, seconds)):
            raise SourceClosed

    def _use_capture(self, operation: Callable[[cv2.VideoCapture], T]) -> T:
        """``operation(capture)`` under the I/O lock; :class:`SourceClosed` if closed before or during it."""
        with self._io_lock:
            if self._closed.is_set() or self._capture is None:
                raise SourceClosed
            result = operation(self._capture)
        if self._closed.is_set():
            raise SourceClosed
        return result

    def _replace_capture(self, capture: cv2.VideoCapture | None) -> None:
        """Release the current capture and install ``capture``; a capture arriving after close is released."""
        with self._io_lock:
            self._release_capture()
            if capture is not None and self._closed.is_set():
                capture.release()
                raise SourceClosed
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
