"""Video sources for camera workers. For now: a video file read with OpenCV.

Frames carry their index in the file and a timestamp ``start_time + index / fps`` derived from the
container's frame rate (so a file replays on a reproducible clock, independent of decoding speed).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from keyreid_stream.contracts import Frame

logger = logging.getLogger(__name__)

FALLBACK_FPS = 25.0
MAX_SANE_FPS = 1000.0


class SourceError(RuntimeError):
    """A video source is missing, cannot be opened or yields no decodable frame."""


@dataclass(frozen=True)
class VideoInfo:
    """Container properties of a video file (``frame_count`` is 0 when the container does not say)."""

    width: int
    height: int
    fps: float
    frame_count: int


def _sane_fps(raw: float, path: Path) -> float:
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


def video_info(path: str | PathLike[str]) -> VideoInfo:
    """Width, height, fps and frame count of a video file, read from its container."""
    path = Path(path)
    capture = _open(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = _sane_fps(capture.get(cv2.CAP_PROP_FPS), path)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    if width <= 0 or height <= 0:
        raise SourceError(f"video file {path} reports no frame size ({width}x{height})")
    frame_count = int(count) if math.isfinite(count) and count > 0 else 0
    return VideoInfo(width=width, height=height, fps=fps, frame_count=frame_count)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _frames(
    path: Path, camera_id: str, stride: int, max_frames: int | None, start_time: float
) -> Iterator[Frame]:
    capture = _open(path)
    try:
        fps = _sane_fps(capture.get(cv2.CAP_PROP_FPS), path)
        index, emitted = 0, 0
        while max_frames is None or emitted < max_frames:
            if index % stride:
                if not capture.grab():  # skipped frames are demuxed but not converted
                    break
                index += 1
                continue
            ok, image = capture.read()
            if not ok or image is None:
                break
            timestamp = start_time + index / fps
            yield Frame(camera_id=camera_id, index=index, timestamp=timestamp, image=_as_bgr(image))
            emitted += 1
            index += 1
        if index == 0 and max_frames != 0:
            raise SourceError(f"no frame could be decoded from video file {path}")
        logger.debug("%s: read %d frames, emitted %d", path, index, emitted)
    finally:
        capture.release()


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
    return _frames(path, camera_id, stride, max_frames, float(start_time))
