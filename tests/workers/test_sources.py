"""The video file source, on a small MJPG clip written here with cv2.VideoWriter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from keyreid_stream.workers import sources  # noqa: E402
from keyreid_stream.workers.sources import SourceError, VideoInfo, read_video_file, video_info  # noqa: E402

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
    monkeypatch.setattr(sources.cv2, "VideoCapture", _SpyCapture)
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
    with caplog.at_level("WARNING", logger=sources.__name__):
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
