"""The demo (foundation slice) on a real clip, over real ZeroMQ sockets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from keyreid_stream.cli import main
from keyreid_stream.demo import format_report, part_histogram_descriptor, resolve_source, run_demo

pytestmark = [pytest.mark.video, pytest.mark.zmq]


@pytest.fixture(scope="module")
def people_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short clip made from a real photo with people (shipped in the ultralytics wheel), panned a little."""
    ultralytics = pytest.importorskip("ultralytics")
    photo = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    assert photo is not None
    photo = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2))
    height, width = photo.shape[:2]
    path = tmp_path_factory.mktemp("clip") / "bus.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width - 16, height))
    for shift in range(0, 16, 2):
        writer.write(np.ascontiguousarray(photo[:, shift:shift + width - 16]))
    writer.release()
    return path


def test_demo_publishes_what_it_detects(people_clip: Path) -> None:
    report = run_demo(video=people_clip, camera_id="bus", max_frames=8, stride=1, hog_max_width=640,
                      min_score=0.0, histogram_bins=6)
    assert report.frames == 8
    assert report.detections >= 8, "HOG should find people in every frame of the bus photo"
    assert report.published == report.received == len(report.messages) > 0
    assert report.rejected == 0
    for message in report.messages:
        assert message.camera_id == "bus" and message.num_frames == 1
        assert message.descriptor.shape == (2 * 6 * 6,)
        assert np.isclose(message.descriptor.sum(), 2.0, atol=1e-4)  # two L1-normalised parts
        thumbnail = cv2.imdecode(np.frombuffer(message.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert thumbnail is not None and thumbnail.shape[0] == 128
    times = [m.start_time for m in report.messages]
    assert times == sorted(times) and times[-1] == pytest.approx(0.7)
    assert len({m.message_id for m in report.messages}) == len(report.messages)
    assert "foundation slice" in format_report(report)


def test_demo_without_thumbnails(people_clip: Path) -> None:
    report = run_demo(video=people_clip, max_frames=2, stride=1, thumbnails=False, min_score=0.0)
    assert report.received == report.published > 0
    assert all(m.thumbnail_jpeg is None for m in report.messages)


def test_cli_demo_runs_on_a_given_file(people_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--log-level", "WARNING", "demo", "--source", str(people_clip), "demo.max_frames=3",
                 "demo.stride=1", "demo.min_score=0.0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "foundation slice" in out and "frames read        3" in out and " 0 rejected" in out


def test_descriptor_separates_colours() -> None:
    red = np.zeros((64, 32, 3), np.uint8)
    red[:] = (0, 0, 255)
    blue = np.zeros((64, 32, 3), np.uint8)
    blue[:] = (255, 0, 0)
    a, b = part_histogram_descriptor(red, 8), part_histogram_descriptor(blue, 8)
    assert a.dtype == np.float32 and a.shape == (128,)
    assert np.dot(a, b) == 0.0 and np.dot(a, a) > 0


def test_resolve_source_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="video file not found"):
        resolve_source(str(tmp_path / "none.mp4"))
