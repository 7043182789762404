"""Live network sources against a real ffmpeg TCP stream that is killed, restarted and stalled."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("cv2")

from keyreid_stream.contracts import Frame
from keyreid_stream.redis_server import free_port
from keyreid_stream.workers.capture import CaptureSource, backoff_delays
from keyreid_stream.workers.sources import FrameSource, SourceError, open_source

pytestmark = pytest.mark.video

FAST: dict[str, Any] = {"read_timeout_s": 1.0, "open_timeout_s": 5.0, "backoff_s": (0.1, 0.5)}
WATCHDOG_S = 25.0  # a test that hangs is closed (and fails) instead of waiting for pytest-timeout


@pytest.fixture
def watchdog() -> Iterator[list[FrameSource]]:
    """Sources appended here are closed after WATCHDOG_S, and always at teardown."""
    sources: list[FrameSource] = []
    timer = threading.Timer(WATCHDOG_S, lambda: [s.close() for s in sources])
    timer.start()
    try:
        yield sources
    finally:
        timer.cancel()
        for source in sources:
            source.close()


def _assert_live_frames(frames: list[Frame], started: float) -> None:
    indices = [f.index for f in frames]
    assert all(b > a for a, b in itertools.pairwise(indices)), indices
    stamps = [f.timestamp for f in frames]
    assert all(b >= a for a, b in itertools.pairwise(stamps))
    assert started - 1 <= stamps[0] and stamps[-1] <= time.time() + 1
    assert all(f.image.shape == (120, 160, 3) and f.camera_id == "cam1" for f in frames)


def test_reconnects_after_the_server_is_killed_and_restarted(
    ffmpeg_tcp_server: Any, watchdog: list[FrameSource], caplog: pytest.LogCaptureFixture
) -> None:
    source = open_source(ffmpeg_tcp_server.url, "cam1", **FAST)
    watchdog.append(source)
    assert isinstance(source, CaptureSource) and source.live
    while_down: list[Any] = []
    restart = threading.Timer(1.0, lambda: (while_down.append(source.stats()), ffmpeg_tcp_server.start()))
    frames: list[Frame] = []
    after_reconnect, started = 0, time.time()
    try:
        with caplog.at_level(logging.INFO, logger="keyreid_stream.workers"):
            for frame in source:
                frames.append(frame)
                if len(frames) == 10:
                    assert source.stats().connected
                    ffmpeg_tcp_server.kill()
                    restart.start()
                after_reconnect += source.stats().reconnects > 0
                if after_reconnect >= 10:
                    break
    finally:
        source.close()
        restart.cancel()
        if restart.is_alive():
            restart.join()
    assert after_reconnect >= 10, f"no frame after the restart: {source.stats()}"
    assert not while_down[0].connected and while_down[0].open_failures >= 1
    _assert_live_frames(frames, started)
    stats = source.stats()
    assert stats.reconnects == 1 and stats.open_failures >= 1 and stats.stalls == 0
    assert stats.frames == len(frames) and not stats.connected
    assert source.fps == pytest.approx(10.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "lost" in warnings[0] and ffmpeg_tcp_server.url in warnings[0], warnings
    assert sum("reconnected after" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(("max_reconnects", "attempts"), [(0, 1), (2, 3)])
def test_gives_up_after_max_reconnects_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture, watchdog: list[FrameSource], max_reconnects: int, attempts: int
) -> None:
    url = f"tcp://admin:hunter2@127.0.0.1:{free_port()}/live"
    source = open_source(url, "cam1", **FAST, max_reconnects=max_reconnects)
    watchdog.append(source)
    assert source.uri == url.replace("hunter2", "***")
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="keyreid_stream.workers"), \
            pytest.raises(SourceError, match=f"gave up after {attempts} attempt") as error:
        list(source)
    assert time.monotonic() - started < 3.0
    assert "hunter2" not in str(error.value) + caplog.text and "admin:***@127.0.0.1" in str(error.value)
    stats = source.stats()
    assert (stats.open_failures, stats.frames, stats.connected) == (attempts, 0, False)
    assert stats.last_error is not None
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == (1 if attempts > 1 else 0)


@pytest.mark.parametrize("close_while", ["reading", "backing_off"])
def test_close_from_another_thread_ends_a_stalled_stream_promptly(
    ffmpeg_tcp_server: Any, watchdog: list[FrameSource], close_while: str
) -> None:
    source = open_source(ffmpeg_tcp_server.url, "cam1", read_timeout_s=1.0, backoff_s=(30.0, 60.0))
    watchdog.append(source)
    frames: list[Frame] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for frame in source:
                frames.append(frame)
                if len(frames) == 3:
                    ffmpeg_tcp_server.pause()  # connection open, no more data: the next reads time out
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15.0
    def ready() -> bool:
        return len(frames) >= 3 if close_while == "reading" else source.stats().stalls > 0

    while time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    assert len(frames) >= 3, "no frame from the stream"
    time.sleep(0.3)  # in a blocked read, or well into the 30 s backoff
    started = time.monotonic()
    source.close()
    thread.join(5.0)
    assert not thread.is_alive() and not errors
    assert time.monotonic() - started < (1.5 if close_while == "reading" else 0.5)
    stats = source.stats()
    assert not stats.connected
    if close_while == "backing_off":
        assert stats.stalls == 1 and stats.reconnects == 0 and "no frame for 1 s" in str(stats.last_error)


def test_a_missing_webcam_gives_up_when_told_to(watchdog: list[FrameSource]) -> None:
    source = open_source("/dev/video57", "cam1", backoff_s=(0.05, 0.1), max_reconnects=1)
    watchdog.append(source)
    with pytest.raises(SourceError, match="cannot open webcam 57 .*gave up after 2 attempt"):
        list(source)
    assert source.stats().open_failures == 2


def test_close_before_iterating_yields_nothing() -> None:
    source = open_source(f"tcp://127.0.0.1:{free_port()}", "cam1", **FAST)
    source.close()
    source.close()  # idempotent
    assert list(source) == [] and source.stats().open_failures == 0


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    delays = backoff_delays(0.5, 4.0)
    got = [next(delays) for _ in range(8)]
    for delay, nominal in zip(got, [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]):
        assert 0.9 * nominal <= delay <= nominal
