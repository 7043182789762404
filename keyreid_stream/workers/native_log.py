"""OpenCV's and FFmpeg's own log lines, routed through Python logging while live captures run.

OpenCV (``[ WARN:0@1.234] global cap.cpp:212 open VIDEOIO(FFMPEG): ...``) and FFmpeg (``[rtsp @ 0x55d0...] ...``)
write straight to the process's standard error, below Python, so a camera that is retried every few seconds
would print a raw line at every attempt. While at least one live capture is open (:func:`routing_native_logs`,
reference counted), file descriptor 2 is a pipe read by one thread: lines in those two formats become records
of the ``keyreid_stream.workers.opencv`` logger (DEBUG: the worker's own messages say what they mean; run with
``--log-level DEBUG`` to see them), every other line (Python's own logging included) goes on to the real standard
error unchanged and in order. The records are emitted by a second thread, so that the pump never writes into its
own pipe. The last user restores descriptor 2 at once (nothing waits); the pump still reads the pipe to its end,
so nothing is lost. ``faulthandler``, when enabled, writes to the real standard error meanwhile.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Iterator

from keyreid_stream.workers.frame_source import redact

__all__ = ["NATIVE_LOGGER", "parse_native_line", "routing_native_logs"]

NATIVE_LOGGER = "keyreid_stream.workers.opencv"
logger = logging.getLogger(NATIVE_LOGGER)

_OPENCV_RE = re.compile(r"\[ ?(?P<level>FATAL|ERROR|WARN|INFO|DEBUG|VERB)[^\]]*\]\s*(?:global\s+)?(?P<text>.*)")
_FFMPEG_RE = re.compile(r"\[(?P<component>[\w:-]+) @ 0x[0-9a-fA-F]+\]\s*(?P<text>.*)")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def parse_native_line(line: str) -> str | None:
    """The message of an OpenCV or FFmpeg log line (``opencv: ...`` / ``ffmpeg rtsp: ...``), else None; URLs in
    it are redacted (FFmpeg names the stream, password included)."""
    match = _OPENCV_RE.match(line)
    if match is not None:
        message = f"opencv {match['level'].lower()}: {match['text']}"
    elif (match := _FFMPEG_RE.match(line)) is not None:
        message = f"ffmpeg {match['component']}: {match['text']}"
    else:
        return None
    return _URL_RE.sub(lambda url: redact(url.group(0)), message)


class _Router:
    """Descriptor 2 -> a pipe -> one pumping thread, while ``users`` > 0."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved_fd: int | None = None
        self.threads: tuple[threading.Thread, threading.Thread] | None = None

    def acquire(self) -> None:
        with self.lock:
            self.users += 1
            if self.users == 1:
                self._install()

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                self._uninstall()

    def _install(self) -> None:
        _flush_python_streams()
        read_fd, write_fd = os.pipe()
        self.saved_fd = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        if faulthandler.is_enabled():
            faulthandler.enable(file=self.saved_fd)
        records: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        out_fd = os.dup(self.saved_fd)  # the pump's own copy: it closes it when the pipe ends
        self.threads = (
            threading.Thread(target=_pump, args=(read_fd, out_fd, records), name="native-log", daemon=True),
            threading.Thread(target=_emit, args=(records,), name="native-log-emit", daemon=True))
        for thread in self.threads:
            thread.start()

    def _uninstall(self) -> None:
        """Give descriptor 2 back. Nothing waits here: the pump reads the pipe to its end (when the last writer,
        perhaps a child process started meanwhile, is gone), forwards the rest and closes its copy of the real
        standard error; the emitter logs what is queued, then stops."""
        _flush_python_streams()
        assert self.saved_fd is not None
        os.dup2(self.saved_fd, 2)
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        os.close(self.saved_fd)
        self.saved_fd, self.threads = None, None


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _pump(read_fd: int, out_fd: int, records: queue.SimpleQueue[str | None]) -> None:
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    _route(line + b"\n", out_fd, records)
            if pending:
                _route(pending, out_fd, records)
    finally:
        records.put(None)  # the emitter stops after what is queued
        os.close(out_fd)


def _route(raw: bytes, out_fd: int, records: queue.SimpleQueue[str | None]) -> None:
    message = parse_native_line(raw.decode("utf-8", "replace").strip())
    if message is None:
        with contextlib.suppress(OSError):
            os.write(out_fd, raw)
    else:
        records.put(message)


def _emit(records: queue.SimpleQueue[str | None]) -> None:
    while (message := records.get()) is not None:
        logger.debug("%s", message)


_ROUTER = _Router()


@contextlib.contextmanager
def routing_native_logs() -> Iterator[None]:
    """While inside, OpenCV's and FFmpeg's log lines are records of :data:`NATIVE_LOGGER` (nests, any thread)."""
    _ROUTER.acquire()
    try:
        yield
    finally:
        _ROUTER.release()
