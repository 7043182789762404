"""Fixtures for the camera worker tests: a small MJPG clip and an ffmpeg TCP stream server that can be killed.

* ``mjpg_clip`` -- a 160x120, 10 fps, 40-frame MJPG .avi (session scoped); frame i has its own colour and
  its number drawn in white.
* ``ffmpeg_tcp_server`` -- :class:`FfmpegTcpServer` streaming that clip in a loop, in real time, as MPEG-2 in
  MPEG-TS on ``tcp://127.0.0.1:PORT`` (started; killed at teardown). ffmpeg's TCP listener serves ONE
  client: once that client disconnects (or after :meth:`FfmpegTcpServer.kill`), ``start()`` again.
  Without ffmpeg the tests using it are skipped -- or fail when ``CI`` is set (CI installs ffmpeg).
* ``rtsp_server`` -- :class:`RtspServer`: Debian's ``rtsp-server-perl`` on 127.0.0.1 (it serves RTP over UDP
  only, as many cameras and relays do) with ffmpeg publishing that clip (MPEG-4) into it in a loop, in real time,
  as ``rtsp://127.0.0.1:PORT/cam``. Skipped without both programs, or fails when ``CI`` is set.
* ``matcher`` -- ``worker_harness.Matcher``, a ROUTER socket on 127.0.0.1 that decodes and acknowledges what
  workers send (the wire protocol's receiving side, without Redis); ``start_matcher(port)`` starts one on a port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq

from keyreid_stream.redis_server import free_port

from worker_harness import Matcher

CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS, CLIP_FRAMES = 160, 120, 10.0, 40
LISTEN_TIMEOUT_S = 10.0


def _clip_colour(i: int) -> tuple[int, int, int]:
    """The BGR background colour of frame ``i`` of ``mjpg_clip``."""
    return (20 + 5 * i, 220 - 5 * i, 60 if i % 2 else 180)


@pytest.fixture(scope="session")
def mjpg_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MJPG .avi: 160x120, 10 fps, 40 frames, each with its own colour and its number drawn."""
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (CLIP_WIDTH, CLIP_HEIGHT))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    try:
        for i in range(CLIP_FRAMES):
            image = np.full((CLIP_HEIGHT, CLIP_WIDTH, 3), _clip_colour(i), dtype=np.uint8)
            cv2.putText(image, str(i), (40, 85), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 3)
            writer.write(image)
    finally:
        writer.release()
    return path


def _is_listening(port: int) -> bool | None:
    """Whether something listens on 127.0.0.1:port (from /proc/net/tcp, not by connecting); None: unknown."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    return any(f[1] == wanted and f[3] == "0A" for f in (line.split() for line in lines) if len(f) > 3)


class FfmpegTcpServer:
    """ffmpeg streaming a clip in a loop on ``url`` (MPEG-TS over TCP, one client per start); restartable."""

    def __init__(self, ffmpeg: str, clip: Path, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"tcp://127.0.0.1:{port}"
        self._command = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
            "-an", "-c:v", "mpeg2video", "-f", "mpegts", f"{self.url}?listen=1",
        ]
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> FfmpegTcpServer:
        """Start ffmpeg (a no-op while it runs) and wait until it listens."""
        if self.running:
            return self
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        started = time.monotonic()
        while time.monotonic() - started < LISTEN_TIMEOUT_S:
            listening = _is_listening(self.port)
            if listening or (listening is None and time.monotonic() - started >= 0.5):  # no /proc: just wait
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"ffmpeg did not listen on {self.url}: {self._log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL ffmpeg (the client sees the connection drop) and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
        if process is not None:
            process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP ffmpeg: the connection stays open but no data flows (a stalled camera)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)


@pytest.fixture
def ffmpeg_tcp_server(mjpg_clip: Path, tmp_path: Path) -> Iterator[FfmpegTcpServer]:
    """A started :class:`FfmpegTcpServer` on a free port (restarts reuse it); always killed at teardown."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        if os.environ.get("CI"):
            pytest.fail("ffmpeg is not installed (CI must install it)")
        pytest.skip("ffmpeg is not installed")
    server = FfmpegTcpServer(ffmpeg, mjpg_clip, free_port(), tmp_path / "ffmpeg.log")
    try:
        yield server.start()
    finally:
        server.kill()


class RtspServer:
    """``rtsp-server-perl`` (clients on ``port``, publishers on ``source_port``) fed by ffmpeg with a clip."""

    def __init__(self, server: str, ffmpeg: str, clip: Path, folder: Path) -> None:
        self.port, self.source_port = free_port(), free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self._commands = [
            [server, "--clientport", str(self.port), "--serverport", str(self.source_port),
             "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
             "--rtp_start_port", str(_free_udp_pair())],
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
             "-c", "copy", "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/cam"],
        ]
        self._log_path = folder / "rtsp.log"
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> RtspServer:
        with self._log_path.open("ab") as log:
            server, publisher = self._commands
            self._processes.append(subprocess.Popen(server, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
            self._wait(lambda: _is_listening(self.port) and _is_listening(self.source_port), "listen")
            self._processes.append(subprocess.Popen(publisher, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
            self._wait(self.describes, "serve the published stream")
        return self

    def describes(self) -> bool:
        """Whether the server answers an RTSP DESCRIBE of the stream with 200 (it is being published)."""
        request = f"DESCRIBE {self.url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
                sock.sendall(request)
                return sock.recv(256).startswith(b"RTSP/1.0 200")
        except OSError:
            return False

    def _wait(self, ready: Callable[[], object], what: str) -> None:
        started = time.monotonic()
        while time.monotonic() - started < LISTEN_TIMEOUT_S:
            if ready():
                return
            if any(process.poll() is not None for process in self._processes):
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the RTSP server did not {what}: {self._log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        self._processes.clear()


def _free_udp_pair() -> int:
    """An even UDP port whose successor is free too (RTP and RTCP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1]) & ~1
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of UDP ports")


def _program(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (CI must install {package})")
        pytest.skip(f"{name} is not installed (Debian package {package})")
    return path


@pytest.fixture(scope="session")
def mpeg4_clip(mjpg_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mjpg_clip`` as MPEG-4 in Matroska (a keyframe every 10 frames), for RTP packetisation."""
    ffmpeg = _program("ffmpeg", "ffmpeg")
    path = tmp_path_factory.mktemp("rtsp") / "clip.mkv"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(mjpg_clip), "-an", "-c:v", "mpeg4",
                    "-q:v", "3", "-g", "10", str(path)], check=True, timeout=60)
    return path


@pytest.fixture
def rtsp_server(mpeg4_clip: Path, tmp_path: Path) -> Iterator[RtspServer]:
    """A started :class:`RtspServer` (UDP transport only); stopped at teardown."""
    server = RtspServer(_program("rtsp-server-perl", "rtsp-server-perl"), _program("ffmpeg", "ffmpeg"), mpeg4_clip,
                        tmp_path)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def start_matcher(zmq_context: zmq.Context) -> Iterator[Callable[[int | None], Matcher]]:
    """Start a :class:`Matcher` (on ``port``, or a free one); all are closed at teardown."""
    started: list[Matcher] = []

    def start(port: int | None = None) -> Matcher:
        receiver = Matcher(zmq_context, port)
        receiver.start()
        started.append(receiver)
        return receiver

    try:
        yield start
    finally:
        for receiver in started:
            receiver.close()


@pytest.fixture
def matcher(start_matcher: Callable[[int | None], Matcher]) -> Matcher:
    return start_matcher(None)
