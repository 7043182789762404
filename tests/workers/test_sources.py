"""The video file and image folder sources, on a small MJPG clip written here with cv2.VideoWriter."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from keyreid_stream.clock import is_media_time  # noqa: E402
from keyreid_stream.contracts import ContractError, Frame  # noqa: E402
from keyreid_stream.workers import frame_source, sources  # noqa: E402
from keyreid_stream.workers.sources import (  # noqa: E402
    ImageFolderSource,
    SourceError,
    SourceStats,
    VideoFileSource,
    VideoInfo,
    open_source,
    read_video_file,
    video_info,
)

pytestmark = pytest.mark.video

N_FRAMES, WIDTH, HEIGHT, FPS = 20, 64, 48, 10.0


def _colour(i: int) -> tuple[int, int, int]:
    """A distinct, well separated BGR colour per frame index."""
    return (20 + 11 * i, 230 - 11 * i, 40 if i % 2 else 200)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    try:
        for i in range(N_FRAMES):
            writer.write(np.full((HEIGHT, WIDTH, 3), _colour(i), dtype=np.uint8))
    finally:
        writer.release()
    return path


def _which_colour(image: np.ndarray) -> int:
    mean = image.reshape(-1, 3).mean(axis=0)
    distances = [np.abs(mean - np.array(_colour(i))).sum() for i in range(N_FRAMES)]
    return int(np.argmin(distances))


class _SpyCapture:
    """Wraps a real cv2.VideoCapture, counts release() calls and can override properties."""

    instances: list[_SpyCapture] = []
    overrides: dict[int, float] = {}

    def __init__(self, *args: Any) -> None:
        self._real = _REAL_CAPTURE(*args)
        self.releases = 0
        _SpyCapture.instances.append(self)

    def get(self, prop: int) -> float:
        return self.overrides.get(prop, self._real.get(prop))

    def release(self) -> None:
        self.releases += 1
        self._real.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


_REAL_CAPTURE = cv2.VideoCapture


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[_SpyCapture]:
    monkeypatch.setattr(_SpyCapture, "instances", [])
    monkeypatch.setattr(_SpyCapture, "overrides", {})
    monkeypatch.setattr(frame_source.cv2, "VideoCapture", _SpyCapture)
    return _SpyCapture


def test_video_info(clip: Path) -> None:
    assert video_info(clip) == VideoInfo(width=WIDTH, height=HEIGHT, fps=FPS, frame_count=N_FRAMES)


def test_reads_every_frame_with_index_timestamp_and_colour(clip: Path) -> None:
    frames = list(read_video_file(clip, "cam-1", start_time=100.0))
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert [f.timestamp for f in frames] == pytest.approx([100.0 + i / FPS for i in range(N_FRAMES)])
    assert all(f.camera_id == "cam-1" for f in frames)
    assert all(f.image.shape == (HEIGHT, WIDTH, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [_which_colour(f.image) for f in frames] == list(range(N_FRAMES))


@pytest.mark.parametrize(
    ("stride", "max_frames", "expected"),
    [
        (1, None, list(range(N_FRAMES))),
        (3, None, list(range(0, N_FRAMES, 3))),
        (7, None, [0, 7, 14]),
        (1, 5, [0, 1, 2, 3, 4]),
        (4, 3, [0, 4, 8]),
        (5, 100, [0, 5, 10, 15]),
        (1, 0, []),
        (50, None, [0]),
    ],
)
def test_stride_and_max_frames(clip: Path, stride: int, max_frames: int | None, expected: list[int]) -> None:
    frames = list(read_video_file(clip, "cam", stride=stride, max_frames=max_frames))
    assert [f.index for f in frames] == expected
    assert [_which_colour(f.image) for f in frames] == expected  # the right frames, not just the labels
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in expected])


@pytest.mark.parametrize("stop_after", [0, 1, 3])
def test_early_stop_releases_the_capture(clip: Path, spy: type[_SpyCapture], stop_after: int) -> None:
    iterator = read_video_file(clip, "cam")
    taken = [next(iterator) for _ in range(stop_after)]
    assert len(taken) == stop_after
    iterator.close()  # what a `for ... break` or garbage collection does
    assert [c.releases for c in spy.instances] == ([1] if stop_after else [])


def test_exhaustion_releases_the_capture(clip: Path, spy: type[_SpyCapture]) -> None:
    assert len(list(read_video_file(clip, "cam"))) == N_FRAMES
    assert [c.releases for c in spy.instances] == [1]


@pytest.mark.parametrize("bad_fps", [0.0, -5.0, float("nan"), 1e6])
def test_absurd_fps_falls_back_to_25(
    clip: Path, spy: type[_SpyCapture], caplog: pytest.LogCaptureFixture, bad_fps: float
) -> None:
    spy.overrides[cv2.CAP_PROP_FPS] = bad_fps
    with caplog.at_level("WARNING", logger=frame_source.__name__):
        frames = list(read_video_file(clip, "cam", max_frames=3))
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 1 / 25, 2 / 25])
    assert "assuming 25 fps" in caplog.text


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.avi"
    with pytest.raises(SourceError, match="nope.avi"):
        read_video_file(missing, "cam")
    with pytest.raises(SourceError, match="nope.avi"):
        video_info(missing)


@pytest.mark.parametrize("content", [b"", b"this is not a video" * 100, bytes(range(256)) * 64])
def test_garbage_file(tmp_path: Path, spy: type[_SpyCapture], content: bytes) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(content)
    with pytest.raises(SourceError, match="garbage.avi"):
        list(read_video_file(garbage, "cam"))
    with pytest.raises(SourceError, match="garbage.avi"):
        video_info(garbage)
    assert all(c.releases == 1 for c in spy.instances)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"stride": 0}, "stride"), ({"max_frames": -1}, "max_frames")]
)
def test_invalid_arguments(clip: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_video_file(clip, "cam", **kwargs)


# --------------------------------------------------------------------------- parse_source / redact


@pytest.mark.parametrize(
    ("uri", "kind", "location", "live"),
    [
        ("rtsp://cam.local:554/stream1", "network", "rtsp://cam.local:554/stream1", True),
        ("RTSPS://cam/x", "network", "RTSPS://cam/x", True),
        ("rtmp://server/live/key", "network", "rtmp://server/live/key", True),
        ("http://cam/video.mjpg", "network", "http://cam/video.mjpg", True),
        ("https://cam/playlist.m3u8", "network", "https://cam/playlist.m3u8", True),
        ("tcp://127.0.0.1:9000", "network", "tcp://127.0.0.1:9000", True),
        ("udp://@239.0.0.1:1234", "network", "udp://@239.0.0.1:1234", True),
        ("srt://host:9000?mode=caller", "network", "srt://host:9000?mode=caller", True),
        ("  rtsp://u:p@cam/s  ", "network", "rtsp://u:p@cam/s", True),
        ("0", "webcam", "0", True),
        ("12", "webcam", "12", True),
        ("webcam:2", "webcam", "2", True),
        ("/dev/video3", "webcam", "3", True),
        ("{clip}", "file", "{clip}", False),
        ("file://{clip}", "file", "{clip}", False),
        ("~/clip.avi", "file", "{clip}", False),
        ("{dir}", "folder", "{dir}", False),
        ("~", "folder", "{dir}", False),
    ],
)
def test_parse_source(
    clip: Path, monkeypatch: pytest.MonkeyPatch, uri: str, kind: str, location: str, live: bool
) -> None:
    monkeypatch.setenv("HOME", str(clip.parent))
    names = {"clip": str(clip), "dir": str(clip.parent)}
    spec = sources.parse_source(uri.format(**names))
    assert spec == sources.SourceSpec(kind, location.format(**names), live)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "empty source"),
        ("   ", "empty source"),
        ("/no/such/clip.avi", "no such file or directory: /no/such/clip.avi; a source is a video file"),
        ("ftp://user:secret@host/x.avi", r"unsupported scheme ftp:// in ftp://user:\*\*\*@host/x.avi"),
        ("file://otherhost/x.avi", "must name a local file"),
        ("webcam:x", "no such file or directory: webcam:x"),
        ("-1", "no such file or directory: -1"),
    ],
)
def test_parse_source_errors(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as error:
        sources.parse_source(uri)
    assert "secret" not in str(error.value)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream", "rtsp://admin:***@10.0.0.5:554/stream"),
        ("rtsp://admin:p@ss:w0rd@cam/s?x=1", "rtsp://admin:***@cam/s?x=1"),
        ("http://user:@cam/video", "http://user:***@cam/video"),
        ("rtsp://admin@cam/stream", "rtsp://admin@cam/stream"),
        ("rtsp://cam:554/a@b", "rtsp://cam:554/a@b"),
        ("https://cam/live?token=abc&x=1", "https://cam/live?token=***&x=1"),
        ("rtmp://u:pw@server/live?password=pw2", "rtmp://u:***@server/live?password=***"),
        ("tcp://127.0.0.1:9000?listen=1", "tcp://127.0.0.1:9000?listen=1"),
        ("/videos/a:b@c.avi", "/videos/a:b@c.avi"),
        ("0", "0"),
    ],
)
def test_redact(uri: str, expected: str) -> None:
    assert sources.redact(uri) == expected


# --------------------------------------------------------------------------- open_source: files and folders


def _read(source: sources.FrameSource) -> list[Frame]:
    with source:
        return list(source)


def test_file_source_indices_timestamps_colours_and_stats(clip: Path) -> None:
    source = open_source(str(clip), "cam-1", start_time=100.0)
    assert isinstance(source, VideoFileSource) and not source.live and source.fps == FPS
    assert source.stats().connected
    frames = _read(source)
    assert [f.index for f in frames] == list(range(N_FRAMES))
    assert [_which_colour(f.image) for f in frames] == list(range(N_FRAMES))
    assert [f.timestamp for f in frames] == pytest.approx([100.0 + i / FPS for i in range(N_FRAMES)])
    assert source.stats() == SourceStats(N_FRAMES, 0, 0, 0, 0, connected=False, last_error=None,
                                         ever_connected=True)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"stride": 3}, list(range(0, N_FRAMES, 3))),
        ({"stride": 25}, [0]),
        ({"loop": True, "max_frames": 45}, list(range(45))),
        ({"loop": True, "stride": 7, "max_frames": 8}, [0, 7, 14, 21, 28, 35, 42, 49]),
        ({"max_frames": 0}, []),
    ],
)
def test_file_source_stride_and_loop(clip: Path, kwargs: dict[str, Any], expected: list[int]) -> None:
    frames = _read(open_source(clip, "cam", start_time=0.0, **kwargs))
    assert [f.index for f in frames] == expected  # strictly increasing across loops
    assert [_which_colour(f.image) for f in frames] == [i % N_FRAMES for i in expected]
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in expected])


def test_fps_argument_overrides_the_container_clock(clip: Path) -> None:
    frames = _read(open_source(clip, "cam", fps=4.0, max_frames=3))
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.25, 0.5])  # media time


@pytest.mark.parametrize("source", ["file", "folder"])
def test_files_read_faster_than_real_time_are_on_media_time(clip: Path, image_folder: Path, source: str) -> None:
    """The clock rule (keyreid_stream.clock): a file read as fast as possible is stamped with media time, seconds
    from its start, never with wall-clock moments still to come (the end of an 8 s clip read in 0.1 s)."""
    frames = _read(open_source(clip if source == "file" else image_folder, "cam", fps=FPS))
    assert frames[0].timestamp == 0.0
    assert [f.timestamp for f in frames] == pytest.approx([f.index / FPS for f in frames])
    assert all(is_media_time(f.timestamp) for f in frames)


@pytest.mark.parametrize(
    ("kwargs", "minimum", "maximum"),
    [
        ({"pace": True, "max_frames": 10}, 0.85, 3.0),  # 9 intervals of 0.1 s
        ({"pace": True, "stride": 2, "max_frames": 5}, 0.75, 3.0),  # indices 0..8: the file's clock
        ({"pace": False}, 0.0, 0.5),
    ],
)
def test_pacing(clip: Path, kwargs: dict[str, Any], minimum: float, maximum: float) -> None:
    source = open_source(clip, "cam", **kwargs)
    started = time.monotonic()
    frames = _read(source)
    assert minimum <= time.monotonic() - started <= maximum
    assert frames


@pytest.mark.parametrize("start_time", [None, 1000.0])
def test_paced_files_are_on_the_wall_clock_unless_given_a_start(clip: Path, start_time: float | None) -> None:
    """Paced like a live camera: frame times are when the frames are read, however long the first read waits."""
    source = open_source(clip, "cam", pace=True, max_frames=3, start_time=start_time)
    time.sleep(0.3)  # e.g. a worker loading its models between opening the source and reading it
    read_at, frames = [], []
    for frame in source:
        read_at.append(time.time())
        frames.append(frame)
    expected = read_at if start_time is None else [start_time + i / FPS for i in range(3)]
    assert [f.timestamp for f in frames] == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("fps", [10.0, 0.2])  # closing during frames, or during a 5 s pacing sleep
def test_close_from_another_thread_ends_the_iteration(clip: Path, fps: float) -> None:
    source = open_source(clip, "cam", pace=True, loop=True, fps=fps)
    timer = threading.Timer(0.4, source.close)
    started = time.monotonic()
    timer.start()
    try:
        frames = list(source)
    finally:
        timer.cancel()
        source.close()
    assert time.monotonic() - started < 1.0
    assert 1 <= len(frames) <= 8
    assert source.closed and not source.stats().connected


def test_a_source_iterates_once_and_closed_sources_yield_nothing(clip: Path) -> None:
    source = open_source(clip, "cam")
    iterator = iter(source)
    assert next(iterator).index == 0
    with pytest.raises(RuntimeError, match="only once"):
        iter(source)
    source.close()
    assert list(iterator) == []
    closed = open_source(clip, "cam")
    closed.close()
    closed.close()
    assert list(closed) == [] and not closed.stats().connected


def _jpeg_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each frame's JPEG in an MJPG .avi: the '00dc' chunks whose data starts with SOI."""
    chunks, at = [], data.find(b"00dc")
    while at >= 0:
        size = int.from_bytes(data[at + 4:at + 8], "little")
        if data[at + 8:at + 10] == b"\xff\xd8":
            chunks.append((at + 8, size))
        at = data.find(b"00dc", at + 8)
    return chunks


def _corrupt(clip: Path, target: Path, frames: range | list[int]) -> Path:
    data = bytearray(clip.read_bytes())
    chunks = _jpeg_chunks(bytes(data))
    assert len(chunks) == N_FRAMES
    for i in frames:
        offset, size = chunks[i]
        data[offset:offset + size] = bytes(size)  # no JPEG data left: this frame cannot decode
    target.write_bytes(bytes(data))
    return target


def test_undecodable_frames_in_the_middle_are_skipped_and_counted(
    clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _corrupt(clip, tmp_path / "broken.avi", [5, 12, 13])
    with caplog.at_level("WARNING", logger="keyreid_stream.workers"):
        frames = _read(source := open_source(broken, "cam", start_time=0.0))
    expected = [i for i in range(N_FRAMES) if i not in (5, 12, 13)]
    assert [f.index for f in frames] == expected
    assert [_which_colour(f.image) for f in frames] == expected  # later frames keep their place in the file
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in expected])
    assert source.stats().decode_errors == 3
    assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) == 2  # one per episode


def test_a_file_without_a_decodable_frame_is_an_error(clip: Path, tmp_path: Path) -> None:
    broken = _corrupt(clip, tmp_path / "dead.avi", range(N_FRAMES))
    with pytest.raises(SourceError, match="no frame could be decoded from .*dead.avi"):
        _read(open_source(broken, "cam"))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Images 0..4 (png/jpg/bmp/PNG), a broken .jpeg as image 3, and files that are not images."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, suffix in [(0, ".png"), (1, ".jpg"), (2, ".bmp"), (4, ".PNG")]:
        cv2.imwrite(str(folder / f"f{i:02d}{suffix}"), np.full((HEIGHT, WIDTH, 3), _colour(i), np.uint8))
    (folder / "f03.jpeg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    (folder / "sub.png").mkdir()
    return folder


@pytest.mark.parametrize(
    ("kwargs", "expected", "errors"),
    [
        ({}, [0, 1, 2, 4], 1),
        ({"stride": 2}, [0, 2, 4], 0),
        ({"loop": True, "max_frames": 6}, [0, 1, 2, 4, 5, 6], 1),
        ({"loop": True, "stride": 3, "max_frames": 4}, [0, 6, 9, 12], 1),  # 3 is the broken one
    ],
)
def test_image_folder_source(
    image_folder: Path, caplog: pytest.LogCaptureFixture, kwargs: dict[str, Any], expected: list[int],
    errors: int,
) -> None:
    with caplog.at_level("INFO", logger="keyreid_stream.workers"):
        source = open_source(image_folder, "cam", start_time=10.0, **kwargs)
    assert isinstance(source, ImageFolderSource) and source.fps == 25.0 and "assuming 25 fps" in caplog.text
    frames = _read(source)
    assert [f.index for f in frames] == expected
    assert [_which_colour(f.image) for f in frames] == [i % 5 for i in expected]
    assert [f.timestamp for f in frames] == pytest.approx([10.0 + i / 25 for i in expected])
    assert source.stats().decode_errors == errors


@pytest.mark.parametrize(
    ("content", "message"), [(None, "no images"), (b"broken", "no frame could be decoded")]
)
def test_image_folder_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / "a.jpg").write_bytes(content)
    with pytest.raises(SourceError, match=message):
        _read(open_source(tmp_path, "cam", fps=5.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 0}, "stride"),
        ({"fps": 0.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"read_timeout_s": 0}, "read_timeout_s"),
        ({"open_timeout_s": -1}, "open_timeout_s"),
        ({"backoff_s": (2.0, 1.0)}, "backoff_s"),
        ({"backoff_s": (0.0, 1.0)}, "backoff_s"),
        ({"max_reconnects": -1}, "max_reconnects"),
        ({"max_frames": -1}, "max_frames"),
    ],
)
def test_open_source_rejects_bad_arguments(clip: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_source(clip, "cam", **kwargs)


def test_open_source_kinds_and_camera_id(clip: Path) -> None:
    with pytest.raises(ContractError, match="camera_id"):
        open_source(clip, "bad camera id")
    for uri in ("rtsp://admin:pw@cam/stream", "webcam:0"):
        source = open_source(uri, "cam")  # live sources connect only when iterated
        assert isinstance(source, sources.CaptureSource) and source.live and source.fps is None
        assert source.stats() == SourceStats(0, 0, 0, 0, 0, connected=False, last_error=None)
        assert "pw" not in source.uri
        source.close()
    with pytest.raises(SourceError, match="no such file or directory"):
        open_source(clip.parent / "missing.avi", "cam")
