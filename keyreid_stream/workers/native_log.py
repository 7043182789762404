"""OpenCV's and FFmpeg's own log lines, routed through Python logging while live captures run.

OpenCV (``[ WARN:0@1.234] global cap.cpp:212 open VIDEOIO(FFMPEG): ...``) and FFmpeg (``[rtsp @ 0x55d0...] ...``)
write straight to the process's standard error, below Python, so a camera that is retried every few seconds
would print a raw line at every attempt. While at least one live capture is open (:func:`routing_native_logs`,
reference counted), file descriptor 2 is a pipe read by one thread: lines in those two formats become records
of the ``keyreid_stream.workers.opencv`` logger (DEBUG: the worker's own messages say what they mean; run with
``--log-level DEBUG`` to see them), every other line (Python's own logging included) goes on to the real standard
error unchanged and in order. The records are emitted by a second thread, so that the pump never writes into its
own pipe. The last user restores descriptor 2 and drains the pipe, so nothing is lost; ``faulthandler``, when
enabled, keeps writing to the real standard error.
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

from keyreid_stream.workers.sources import redact

__all__ = ["NATIVE_LOGGER", "parse_native_line", "routing_native_logs"]

NATIVE_LOGGER = "keyreid_stream.workers.opencv"
logger = logging.getLogger(NATIVE_LOGGER)

_OPENCV_RE = re.compile(r"\[ ?(?P<level>FATAL|ERROR|WARN|INFO|DEBUG|VERB)[^\]]*\]\s*(?:global\s+)?(?P<text>.*)")
_FFMPEG_RE = re.compile(r"\[(?P<component>[\w:-]+) @ 0x[0-9a-fA-F]+\]\s*(?P<text>.*)")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
_DRAIN_TIMEOUT_S = 5.0


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
        self.records: queue.SimpleQueue[str | None] = queue.SimpleQueue()

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
        self.threads = (
            threading.Thread(target=_pump, args=(read_fd, self.saved_fd, self.records), name="native-log",
                             daemon=True),
            threading.Thread(target=_emit, args=(self.records,), name="native-log-emit", daemon=True))
        for thread in self.threads:
            thread.start()

    def _uninstall(self) -> None:
        _flush_python_streams()
        saved, threads = self.saved_fd, self.threads
        assert saved is not None and threads is not None
        os.dup2(saved, 2)  # the pipe's last writer is gone: the pump reads what is left, then the end
        if faulthandler.is_enabled():
            faulthandler.enable(file=sys.stderr)
        pump, emitter = threads
        pump.join(_DRAIN_TIMEOUT_S)
        self.records.put(None)
        emitter.join(_DRAIN_TIMEOUT_S)
        if not pump.is_alive():  # a writer that still holds the pipe (a child process) keeps it running
            os.close(saved)
        self.saved_fd, self.threads = None, None


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _pump(read_fd: int, out_fd: int, records: queue.SimpleQueue[str | None]) -> None:
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _route(line + b"\n", out_fd, records)
        if pending:
            _route(pending, out_fd, records)


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
