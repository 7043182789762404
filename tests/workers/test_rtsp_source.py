"""RTSP cameras against a real RTSP server on 127.0.0.1 that serves RTP over UDP only (Debian's rtsp-server-perl
fed by ffmpeg): the per-camera transport (tcp, udp, auto), the message when a stream does not open, OpenCV's
own log lines routed through logging, and the worker's summary per camera."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyreid_stream.cli import main
from keyreid_stream.redis_server import free_port
from keyreid_stream.workers.capture import CaptureSource, ffmpeg_capture_options
from keyreid_stream.workers.native_log import NATIVE_LOGGER, parse_native_line
from keyreid_stream.workers.sources import SourceError, open_source

pytestmark = pytest.mark.video

FAST: dict[str, Any] = {"read_timeout_s": 2.0, "open_timeout_s": 5.0, "backoff_s": (0.1, 0.2)}


def _read(source: CaptureSource, count: int) -> list[Any]:
    frames = []
    with source:
        for frame in source:
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


@pytest.mark.parametrize("transport", ["udp", "auto"])
def test_reads_a_udp_only_rtsp_server(rtsp_server: Any, transport: str, caplog: pytest.LogCaptureFixture,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    source = open_source(rtsp_server.url, "cam1", transport=transport, max_reconnects=0, **FAST)
    assert isinstance(source, CaptureSource)
    with caplog.at_level(logging.DEBUG, logger="keyreid_stream.workers"):
        frames = _read(source, 8)
    assert [f.image.shape for f in frames] == [(120, 160, 3)] * 8
    stats = source.stats()
    assert source.connected_transport == "udp" and stats.ever_connected and stats.open_failures == 0
    opened = [r.getMessage() for r in caplog.records if "opened stream" in r.getMessage()]
    assert len(opened) == 1 and "RTSP over UDP" in opened[0], opened
    assert "[ WARN" not in capfd.readouterr().err  # auto's failed TCP try: OpenCV's warning went to logging


def test_tcp_to_a_udp_only_server_says_what_to_do(rtsp_server: Any, caplog: pytest.LogCaptureFixture,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    source = open_source(rtsp_server.url, "cam1", transport="tcp", max_reconnects=1, **FAST)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as error:
        _read(source, 1)
    message = str(error.value)
    assert (f"127.0.0.1:{rtsp_server.port} answers but no video stream could be opened (RTSP over TCP); the "
            "camera may serve RTSP over UDP only: set its transport to udp or auto") in message
    assert "gave up after 2 attempt(s)" in message and "unreachable" not in message
    err = capfd.readouterr().err
    assert "[ WARN" not in err and "VIDEOIO" not in err, err  # no raw OpenCV line, at either attempt

    def native_records() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == NATIVE_LOGGER]

    deadline = time.monotonic() + 5.0  # emitted by the router's own thread, shortly after
    while not native_records() and time.monotonic() < deadline:
        time.sleep(0.02)
    native = native_records()
    assert native and all(m.startswith(("opencv ", "ffmpeg ")) for m in native), native
    stats = source.stats()
    assert (stats.open_failures, stats.ever_connected) == (2, False)


@pytest.mark.parametrize(("url", "transport", "expected"), [
    ("rtsp://127.0.0.1:{port}/cam", "auto", "connection refused by 127.0.0.1:{port}: nothing listening there"),
    ("rtsp://127.0.0.1:{port}/cam", "udp", "connection refused by 127.0.0.1:{port}: nothing listening there"),
    ("http://127.0.0.1:{port}/cam.mjpg", "auto", "connection refused by 127.0.0.1:{port}"),
])
def test_nothing_listening_is_said_plainly(url: str, transport: str, expected: str) -> None:
    port = free_port()
    source = open_source(url.format(port=port), "cam1", transport=transport, max_reconnects=0, **FAST)
    with pytest.raises(SourceError, match="cannot open stream") as error:
        _read(source, 1)
    assert expected.format(port=port) in str(error.value)


@pytest.mark.parametrize(("user", "transport", "expected"), [
    (None, None, None),
    (None, "udp", "rtsp_transport;udp"),
    ("analyzeduration;500000", "tcp", "analyzeduration;500000|rtsp_transport;tcp"),
    ("rtsp_transport;tcp|rtsp_flags;prefer_tcp|probesize;32", "udp", "probesize;32|rtsp_transport;udp"),
    ("analyzeduration;500000", None, "analyzeduration;500000"),
])
def test_ffmpeg_options_keep_the_users_own(user: str | None, transport: str | None, expected: str | None) -> None:
    assert ffmpeg_capture_options(transport, user) == expected


@pytest.mark.parametrize(("line", "expected"), [
    ("[ WARN:0@0.098] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available",
     "opencv warn: cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available"),
    ("[ERROR:0@1.5] global cap_ffmpeg_impl.hpp:1200 open failed",
     "opencv error: cap_ffmpeg_impl.hpp:1200 open failed"),
    ("[mpeg4 @ 0x5589ad053ac0] warning: first frame is no keyframe",
     "ffmpeg mpeg4: warning: first frame is no keyframe"),
    ("2026-12-04 21:00:00 WARNING keyreid_stream: cam1 lost", None),
    ("plain text", None),
    ("[tcp @ 0x55d0] Connection to tcp://admin:hunter2@127.0.0.1:5/live failed: Connection refused",
     "ffmpeg tcp: Connection to tcp://admin:***@127.0.0.1:5/live failed: Connection refused"),
])
def test_native_log_lines_are_recognised(line: str, expected: str | None) -> None:
    assert parse_native_line(line) == expected


def test_worker_summary_shows_reconnects_and_never_connected(rtsp_server: Any, matcher: Any, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Two RTSP cameras in one worker: one read over UDP (auto), one that never connects (wrong transport)."""
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"id": "good", "source": rtsp_server.url, "max_frames": 15},
                    {"id": "wrong", "source": rtsp_server.url, "transport": "tcp"}],
        "source": {"open_timeout_s": 5.0, "read_timeout_s": 2.0, "backoff_s": [0.1, 0.2], "max_reconnects": 1},
        "detector": {"kind": "hog"}, "embedding": {"kind": "part-histogram"},
        "publish": {"matcher": matcher.endpoint}, "metrics": {"log_every_s": 60.0}}))
    main(["worker", "--config", str(config)])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("  good ", "  wrong "))}
    assert "reconnects" in out and set(rows) == {"good", "wrong"}, out
    assert rows["good"].split()[1] == "15" and rows["good"].split()[6] == "0" and "never" not in rows["good"]
    assert "never connected (2 failed open(s))" in rows["wrong"] and "set its transport to udp" in rows["wrong"]
