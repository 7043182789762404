"""The frame sources read with OpenCV: video files and image folders replayed on their own clock, and live
captures (webcams, network streams) that reconnect with backoff. Open them with
:func:`~keyreid_stream.workers.sources.open_source`; the base class, URI rules and counters are in
:mod:`~keyreid_stream.workers.frame_source`.

Files and folders: ``timestamp = start_time + index / fps`` (see :mod:`keyreid_stream.clock`). Without
``pace`` and without an explicit ``start_time`` that is media time, seconds from the start of the file (0):
read faster than real time, the frames never carry moments still to come. ``pace`` sleeps until ``t0 + index /
fps`` on the monotonic clock (no drift), and without an explicit ``start_time`` the clock starts when the
first frame is read, so that timestamps are wall-clock read times, as a live camera's are; ``loop`` restarts
at the end with the index counting on. A file frame that does not decode is skipped (up to
:data:`MAX_DECODE_SKIP` in a row before the file counts as ended) and counted.

Live captures: network streams open with the FFmpeg backend and its open and read timeouts, webcams by index
with any backend. A read that fails, times out or hits the end of the stream means the stream is *lost*: the
capture is released, one warning is logged for the outage, and the source re-opens it after exponential
backoff (``backoff_s[0]``, doubled up to ``backoff_s[1]``, minus up to 10 % jitter) until it is back -- one
info line then -- or until ``max_reconnects`` attempts in a row have failed (:class:`SourceError`). The
first open follows the same rule, so a camera that is not up yet is waited for. Frame indices continue
across reconnections; timestamps are the wall-clock time at capture.

RTSP transport: ``tcp``, ``udp``, or ``auto`` (the default: TCP, then UDP in the same attempt; the transport that
worked is tried first at the next reconnection). OpenCV's FFmpeg backend takes it from the environment variable
``OPENCV_FFMPEG_CAPTURE_OPTIONS`` at open, so network opens are serialised within a process and the variable is
set for each one (the user's own options, e.g. ``analyzeduration;500000`` for low-bitrate streams, are kept,
their ``rtsp_transport`` replaced). A stream that cannot be opened is diagnosed: nothing listening, host
unreachable, or the server answers but serves no video (over the transports tried, with the one to try next).
OpenCV's and FFmpeg's own log lines go through Python logging while a live capture runs
(:mod:`~keyreid_stream.workers.native_log`).

FFmpeg probes a new stream before the first frame (up to ``analyzeduration``, 5 s by default, cut short by the
open timeout).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from abc import abstractmethod
from collections.abc import Generator, Iterator
from os import PathLike
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import cv2
import numpy as np

from keyreid_stream.contracts import Frame
from keyreid_stream.workers.frame_source import (
    FALLBACK_FPS,
    IMAGE_SUFFIXES,
    MAX_SANE_FPS,
    FrameSource,
    SourceClosed,
    SourceError,
    SourceSpec,
    count_frames,
    open_video,
    redact,
    sane_fps,
)
from keyreid_stream.workers.native_log import routing_native_logs

__all__ = ["CaptureSource", "ImageFolderSource", "RtspTransport", "VideoFileSource", "backoff_delays",
           "ffmpeg_capture_options"]

logger = logging.getLogger(__name__)

MAX_DECODE_SKIP = 25  # undecodable frames in a row tried before a file is taken to have ended
JITTER = 0.1  # delays are shortened by up to this fraction, so cameras restarted together spread out
TIMED_OUT_FRACTION = 0.9  # a read this close to the read timeout has hit it
STALL_WINDOW_S = 1.0  # a timed-out read that fails within this window (decoder flush) is a stall
PROBE_TIMEOUT_S = 2.0  # the TCP connection test that tells why a stream did not open

RtspTransport = Literal["auto", "tcp", "udp"]
RTSP_SCHEMES = ("rtsp", "rtsps")
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
_OPEN_LOCK = threading.Lock()  # FFmpeg reads its capture options from the environment when a capture opens


# --------------------------------------------------------------------------- files and folders


class _ReplaySource(FrameSource):
    """Files and folders: a reproducible clock ``start_time + index / fps``, optional pacing and looping."""

    def __init__(
        self, camera_id: str, uri: str, *, fps: float, pace: bool, loop: bool, stride: int,
        start_time: float | None, max_frames: int | None,
    ) -> None:
        super().__init__(camera_id, uri, live=False, fps=fps, stride=stride, max_frames=max_frames)
        self.pace = pace
        self.loop = loop
        # media time unless given a start; paced: the wall clock from the first frame on (_wait_until_due)
        self.start_time = 0.0 if start_time is None else float(start_time)
        self._clock_from_first_frame = pace and start_time is None
        self._pace_origin: tuple[float, int] | None = None  # (monotonic time, index) of the first yield

    def _timestamp(self, index: int) -> float:
        return self.start_time + index / float(self.fps or FALLBACK_FPS)

    def _wait_until_due(self, index: int) -> None:
        """With ``pace``: sleep until ``t0 + (index - i0) / fps`` on the monotonic clock (no drift)."""
        if not self.pace:
            return
        if self._pace_origin is None:
            self._pace_origin = (time.monotonic(), index)
            if self._clock_from_first_frame:
                self.start_time = time.time() - index / float(self.fps or FALLBACK_FPS)
        t0, i0 = self._pace_origin
        self._sleep(t0 + (index - i0) / float(self.fps or FALLBACK_FPS) - time.monotonic())

    def expected_frames(self) -> int | None:
        total = self._length()
        if self.loop or not total:
            return None
        frames = -(-total // self._stride)
        return frames if self._max_frames is None else min(frames, self._max_frames)

    def _length(self) -> int:
        """Frames (or images) in one pass, 0 when unknown."""
        return 0

    def _frames(self) -> Generator[Frame, None, None]:
        while True:
            decoded = yield from self._one_pass()
            if not decoded:
                raise SourceError(f"{self.camera_id}: no frame could be decoded from {self.uri}")
            if not self.loop:
                return
            self._rewind()

    @abstractmethod
    def _one_pass(self) -> Generator[Frame, None, int]:
        """Yield one pass over the file or folder; return how many frames decoded (skipped ones included)."""

    def _rewind(self) -> None:
        """Prepare the next pass (``loop``)."""


class VideoFileSource(_ReplaySource):
    """A video file read with OpenCV; undecodable frames in the middle are skipped and counted."""

    def __init__(
        self, path: str | PathLike[str], camera_id: str, *, pace: bool = False, loop: bool = False,
        stride: int = 1, fps: float | None = None, start_time: float | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(camera_id, str(self.path), fps=fps or FALLBACK_FPS, pace=pace, loop=loop,
                         stride=stride, start_time=start_time, max_frames=max_frames)
        capture = open_video(self.path)
        self.fps = fps or sane_fps(capture.get(cv2.CAP_PROP_FPS), self.path)
        self.frame_count = count_frames(capture)
        self._replace_capture(capture)

    def _length(self) -> int:
        return self.frame_count

    def _rewind(self) -> None:
        self._replace_capture(None)
        self._replace_capture(open_video(self.path))

    def _one_pass(self) -> Generator[Frame, None, int]:
        start, decoded, failed = self._index, 0, 0  # failed: undecodable frames in a row
        while True:
            if not self._use_capture(_grab_only):
                past_the_end = self.frame_count and self._index - start >= self.frame_count
                if failed >= MAX_DECODE_SKIP or past_the_end:
                    break
                failed += 1
                self._index += 1
                continue
            if failed:
                self._decode_errors(self._index - failed, failed)
                failed = 0
            index = self._index
            self._index += 1
            if index % self._stride:
                decoded += 1
                continue
            ok, image = self._use_capture(_retrieve)
            if not ok or image is None:
                self._decode_errors(index, 1)
                continue
            decoded += 1
            self._wait_until_due(index)
            yield self._make_frame(index, self._timestamp(index), image)
        self._index = max(self._index - failed, start + self.frame_count)  # the next pass continues from here
        return decoded

    def _decode_errors(self, first: int, count: int) -> None:
        self._count("decode_errors", count)
        self._set_error(f"undecodable frame(s) at index {first}")
        logger.warning("%s: %s: %d undecodable frame(s) from index %d skipped",
                       self.camera_id, self.uri, count, first)


class ImageFolderSource(_ReplaySource):
    """The .jpg/.jpeg/.png/.bmp images of a folder, sorted by name (listed once, when the source opens)."""

    def __init__(
        self, folder: str | PathLike[str], camera_id: str, *, pace: bool = False, loop: bool = False,
        stride: int = 1, fps: float | None = None, start_time: float | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        if fps is None:
            logger.info("%s: no fps given for image folder %s; assuming %.0f fps", camera_id, folder,
                        FALLBACK_FPS)
        super().__init__(camera_id, str(self.folder), fps=fps or FALLBACK_FPS, pace=pace, loop=loop,
                         stride=stride, start_time=start_time, max_frames=max_frames)
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        images = (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files = sorted(images, key=lambda p: p.name)
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {self.folder}")

    def _length(self) -> int:
        return len(self.files)

    def _one_pass(self) -> Generator[Frame, None, int]:
        decoded = 0
        for path in self.files:
            if self._closed.is_set():
                raise SourceClosed
            index = self._index
            self._index += 1
            if index % self._stride:
                decoded += 1
                continue
            image = _read_image(path)
            if image is None:
                self._count("decode_errors")
                self._set_error(f"cannot decode image {path.name}")
                logger.warning("%s: cannot decode image %s; skipped", self.camera_id, path)
                continue
            decoded += 1
            self._wait_until_due(index)
            yield self._make_frame(index, self._timestamp(index), image)
        return decoded


def _grab_only(capture: cv2.VideoCapture) -> bool:
    return bool(capture.grab())


def _retrieve(capture: cv2.VideoCapture) -> tuple[bool, np.ndarray | None]:
    ok, image = capture.retrieve()
    return bool(ok), image


def _read_image(path: Path) -> np.ndarray | None:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None



# --------------------------------------------------------------------------- live captures


def backoff_delays(first: float, cap: float, jitter: float = JITTER) -> Iterator[float]:
    """Exponential backoff: ``first``, doubled each time up to ``cap``, each shortened by up to ``jitter``."""
    delay = first
    while True:
        yield delay * (1.0 - jitter * random.random())
        delay = min(cap, delay * 2.0)


def _read(capture: cv2.VideoCapture) -> tuple[bool, np.ndarray | None]:
    ok, image = capture.read()
    return bool(ok) and image is not None, image


def _grab(capture: cv2.VideoCapture) -> tuple[bool, np.ndarray | None]:
    return bool(capture.grab()), None


class CaptureSource(FrameSource):
    """A webcam or network stream; connects when iterated and reconnects whenever the stream is lost."""

    def __init__(
        self, spec: SourceSpec, camera_id: str, *, uri: str | None = None, stride: int = 1,
        fps: float | None = None, read_timeout_s: float = 5.0, open_timeout_s: float = 10.0,
        backoff_s: tuple[float, float] = (0.5, 30.0), max_reconnects: int | None = None,
        max_frames: int | None = None, transport: RtspTransport = "auto",
    ) -> None:
        if transport not in ("auto", "tcp", "udp"):
            raise ValueError(f"transport must be auto, tcp or udp, got {transport!r}")
        if spec.kind not in ("webcam", "network"):
            raise ValueError(f"CaptureSource reads webcams and network streams, not a {spec.kind}")
        super().__init__(camera_id, uri or spec.location, live=True, fps=fps, stride=stride,
                         max_frames=max_frames)
        self.spec = spec
        self.read_timeout_s = float(read_timeout_s)
        self.open_timeout_s = float(open_timeout_s)
        self.backoff_s = (float(backoff_s[0]), float(backoff_s[1]))
        self.max_reconnects = max_reconnects
        self._fps_given = fps is not None
        self._what = f"stream {self.uri}" if spec.kind == "network" else f"webcam {spec.location}"
        rtsp = spec.kind == "network" and urlsplit(spec.location).scheme.lower() in RTSP_SCHEMES
        self.transport = transport
        # the transports to try, best first (None: not RTSP, FFmpeg's defaults)
        self._transports: list[str | None] = ((["tcp", "udp"] if transport == "auto" else [transport]) if rtsp
                                              else [None])
        self.connected_transport: str | None = None

    def _frames(self) -> Generator[Frame, None, None]:
        with routing_native_logs():
            yield from self._frames_routed()

    def _frames_routed(self) -> Generator[Frame, None, None]:
        self._connect(lost_at=None)
        while True:
            reason, stalled = yield from self._read_until_lost()
            lost_at = time.monotonic()
            self._replace_capture(None)
            self._count("stalls", int(stalled))
            self._set_error(reason)
            if self.max_reconnects == 0:
                raise SourceError(f"{self.camera_id}: {self._what} lost ({reason}); max_reconnects=0")
            logger.warning("%s: %s lost (%s); reconnecting with backoff", self.camera_id, self._what, reason)
            self._connect(lost_at=lost_at)

    def _read_until_lost(self) -> Generator[Frame, None, tuple[str, bool]]:
        """Yield frames until a read fails; return why, and whether it timed out (a stall)."""
        timed_out_at = -float("inf")
        while True:
            index = self._index
            convert = index % self._stride == 0
            started = time.monotonic()
            ok, image = self._use_capture(_read if convert else _grab)
            now = time.monotonic()
            if now - started >= TIMED_OUT_FRACTION * self.read_timeout_s:
                timed_out_at = now
            if not ok:
                if now - timed_out_at <= STALL_WINDOW_S:
                    return f"read timed out: no frame for {self.read_timeout_s:g} s", True
                return "read failed or end of stream", False
            self._index += 1
            if image is not None:
                yield self._make_frame(index, time.time(), image)

    def _connect(self, lost_at: float | None) -> None:
        """Open the capture, retrying with backoff; ``lost_at`` (monotonic) is None for the first open."""
        first = lost_at is None
        started = time.monotonic() if lost_at is None else lost_at
        delays = backoff_delays(*self.backoff_s)
        allowed = None if self.max_reconnects is None else self.max_reconnects + int(first)
        failures = 0
        if not first:
            self._sleep(next(delays))
        while True:
            capture, error = self._try_open()
            if capture is not None:
                self._replace_capture(capture)
                self._connected(capture, first, failures + 1, time.monotonic() - started)
                return
            failures += 1
            self._count("open_failures")
            self._set_error(error)
            if allowed is not None and failures >= allowed:
                raise SourceError(f"{self.camera_id}: cannot open {self._what} ({error}); gave up after "
                                  f"{failures} attempt(s) in {time.monotonic() - started:.1f} s")
            if first and failures == 1:
                logger.warning("%s: cannot open %s (%s); retrying with backoff until it is up",
                               self.camera_id, self._what, error)
            else:
                logger.debug("%s: open attempt %d of %s failed (%s)", self.camera_id, failures, self._what,
                             error)
            self._sleep(next(delays))

    def _try_open(self) -> tuple[cv2.VideoCapture | None, str]:
        """One open attempt (each transport in turn): the opened capture, or None and the reason."""
        if self.closed:
            raise SourceClosed
        capture: cv2.VideoCapture | None
        if self.spec.kind == "webcam":
            try:
                capture = cv2.VideoCapture(int(self.spec.location), cv2.CAP_ANY)
            except cv2.error as exc:
                return None, f"OpenCV error: {str(exc).strip()}"
            if capture.isOpened():
                return capture, ""
            capture.release()
            return None, "no such camera"
        errors: list[str] = []
        for transport in list(self._transports):
            capture, error = self._open_stream(transport)
            if capture is not None:
                self.connected_transport = transport
                self._transports.remove(transport)
                self._transports.insert(0, transport)  # first again at the next reconnection
                return capture, ""
            errors.append(error + (f" (RTSP over {transport.upper()})" if error and transport else ""))
        if all(errors):  # timeouts or OpenCV errors: they say why
            return None, "; ".join(errors)
        return None, self._diagnose(self._transports)

    def _open_stream(self, transport: str | None) -> tuple[cv2.VideoCapture | None, str]:
        """Open the network stream over one RTSP transport: (capture, "") or (None, a reason; "" = not open)."""
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout_s * 1000)]
        started = time.monotonic()
        with _OPEN_LOCK:
            user_options = os.environ.get(FFMPEG_OPTIONS_ENV)
            options = ffmpeg_capture_options(transport, user_options)
            try:
                if options is not None:
                    os.environ[FFMPEG_OPTIONS_ENV] = options
                capture = cv2.VideoCapture(self.spec.location, cv2.CAP_FFMPEG, params)
            except cv2.error as exc:
                return None, f"OpenCV error: {redact(str(exc).strip())}"
            finally:
                if user_options is None:
                    os.environ.pop(FFMPEG_OPTIONS_ENV, None)
                else:
                    os.environ[FFMPEG_OPTIONS_ENV] = user_options
        if capture.isOpened():
            return capture, ""
        capture.release()
        elapsed = time.monotonic() - started
        if elapsed >= TIMED_OUT_FRACTION * self.open_timeout_s:
            return None, f"open timed out after {elapsed:.1f} s"
        return None, ""

    def _diagnose(self, transports: list[str | None]) -> str:
        """Why a network stream did not open: nothing listening, unreachable, or no video where it answers."""
        parts = urlsplit(self.spec.location)
        try:
            host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        except ValueError:
            return "not a valid stream URL"
        if not host or not port:
            return "FFmpeg could not open it (no host or port to test)"
        where = f"{host}:{port}"
        try:
            with socket.create_connection((host, port), timeout=min(PROBE_TIMEOUT_S, self.open_timeout_s)):
                pass
        except ConnectionRefusedError:
            return f"connection refused by {where}: nothing listening there"
        except OSError as exc:
            return f"{where} unreachable ({exc.strerror or exc})"
        if transports == [None]:
            return f"{where} accepts connections but FFmpeg found no video stream there (check the URL's path)"
        tried = " and ".join(f"RTSP over {t.upper()}" for t in transports if t)
        if self.transport == "auto":
            hint = "check the path and the credentials"
        else:
            other = "udp" if self.transport == "tcp" else "tcp"
            hint = (f"the camera may serve RTSP over {other.upper()} only: set its transport to {other} or auto; "
                    "else check the path and the credentials")
        return f"{where} answers but no video stream could be opened ({tried}); {hint}"

    def _connected(self, capture: cv2.VideoCapture, first: bool, attempts: int, elapsed: float) -> None:
        if not self._fps_given:
            raw = capture.get(cv2.CAP_PROP_FPS)
            self.fps = float(raw) if 0.0 < raw <= MAX_SANE_FPS else None  # NaN fails too
        if not first:
            self._count("reconnects")
            logger.info("%s: %s reconnected after %d attempt(s), %.1f s", self.camera_id, self._what,
                        attempts, elapsed)
            return
        size = f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        after = f" after {attempts} attempts, {elapsed:.1f} s" if attempts > 1 else ""
        over = f", RTSP over {self.connected_transport.upper()}" if self.connected_transport else ""
        logger.info("%s: opened %s (%s, %s fps%s)%s", self.camera_id, self._what, size,
                    "?" if self.fps is None else f"{self.fps:g}", over, after)


def ffmpeg_capture_options(transport: str | None, user_options: str | None) -> str | None:
    """``OPENCV_FFMPEG_CAPTURE_OPTIONS`` for one open: the user's ``key;value|...`` options with
    ``rtsp_transport`` set to ``transport`` (None: the user's options as they are)."""
    if transport is None:
        return user_options
    kept = [pair for pair in (user_options or "").split("|")
            if pair and pair.split(";", 1)[0].strip() not in ("rtsp_transport", "rtsp_flags")]
    return "|".join([*kept, f"rtsp_transport;{transport}"])
