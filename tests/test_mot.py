"""MOTChallenge files: the tracks contract, tolerant reading, ground-truth filters, malformed lines named by file
and line, the live writer (threads, flushing, appending) and folders of cameras in both layouts."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from keyreid_stream.mot import (
    MotDataError,
    MotTracks,
    MotWriter,
    read_camera_dir,
    read_mot,
    write_mot,
    xyxy_to_xywh,
)


def tracks(rows: list[tuple[int, int, float, float, float, float, float]]) -> MotTracks:
    array = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    return MotTracks(array[:, 0], array[:, 1], array[:, 2:6], array[:, 6])


# ------------------------------------------------------------------------------------------ contract


def test_tracks_are_typed_read_only_arrays() -> None:
    t = tracks([(2, 7, 1.5, 2.5, 10, 20, 0.9), (1, 3, 0, 0, 5, 5, 1.0)])
    assert (t.frames.dtype, t.ids.dtype, t.boxes.dtype, t.scores.dtype) == (np.int64, np.int64, np.float32,
                                                                             np.float32)
    assert t.boxes.shape == (2, 4) and len(t) == 2
    with pytest.raises(ValueError):
        t.ids[0] = 1
    ordered = t.sorted()
    assert ordered.frames.tolist() == [1, 2] and ordered.ids.tolist() == [3, 7]
    assert len(MotTracks.empty()) == 0 and MotTracks.empty().boxes.shape == (0, 4)


@pytest.mark.parametrize(("frames", "ids", "boxes", "scores", "message"), [
    ([1, 2], [1], [[0, 0, 1, 1]] * 2, [1, 1], "2 frames but ids"),
    ([0], [1], [[0, 0, 1, 1]], [1], "start at 1"),
    ([1], [1], [[0, 0, np.nan, 1]], [1], "finite"),
    ([1], [1], [[0, 0, 1, 1]], [np.inf], "finite"),
    ([1], [1], [[0, 0, -1, 1]], [1], ">= 0"),
])
def test_invalid_tracks_are_refused(frames, ids, boxes, scores, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MotTracks(frames, ids, boxes, scores)


def test_xyxy_to_xywh() -> None:
    assert xyxy_to_xywh([[10, 20, 40, 100]]).tolist() == [[10, 20, 30, 80]]


# ------------------------------------------------------------------------------------------ reading


def test_reading_is_tolerant_of_columns_separators_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "pred.txt"
    path.write_text("\n1,5,10,20,30,40\n\n2, 5, 11.5, 20, 30, 40, 0.7\n"
                    "3 6 1 2 3 4 0.5 -1 -1 -1\r\n  \n4,6,1,2,3,4,0.25,-1,-1\n")
    t = read_mot(path)
    assert t.frames.tolist() == [1, 2, 3, 4] and t.ids.tolist() == [5, 5, 6, 6]
    assert t.scores.tolist() == pytest.approx([1.0, 0.7, 0.5, 0.25])  # a missing confidence reads as 1
    assert t.boxes[1].tolist() == [11.5, 20, 30, 40]


def test_empty_file_is_no_tracks(tmp_path: Path) -> None:
    (tmp_path / "e.txt").write_text("\n \n")
    assert len(read_mot(tmp_path / "e.txt")) == 0


@pytest.mark.parametrize(("line", "kept_as_gt"), [
    ("1,1,0,0,10,10,1,1,1.0", True),        # MOT16/17/20: considered pedestrian
    ("1,1,0,0,10,10,0,1,1.0", False),       # consider flag 0
    ("1,1,0,0,10,10,1,7,0.5", False),       # static person (class 7)
    ("1,1,0,0,10,10,1,2,0.5", False),       # person on a vehicle (class 2)
    ("1,1,0,0,10,10,1,-1,1.0", True),       # class unknown
    ("1,1,0,0,10,10,1,-1,-1,-1", True),     # MOT15: the 8th of 10 columns is a world coordinate, not a class
    ("1,1,0,0,10,10,1,5,3,-1", True),       # ... whatever its value
    ("1,1,0,0,10,10", True),                # no flags at all
])
def test_ground_truth_filters(tmp_path: Path, line: str, kept_as_gt: bool) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(line + "\n")
    assert len(read_mot(path, gt=True)) == int(kept_as_gt)
    assert len(read_mot(path)) == 1  # results are never filtered


@pytest.mark.parametrize(("content", "line", "problem"), [
    ("1,1,0,0,10,10\n1,2,3,4,5\n", 2, "expected 6 to 10 columns, got 5"),
    ("1,1,0,0,10,10\n\n1,1,0,0,10,10,1,1,1,1,1\n", 3, "got 11"),
    ("1,1,0,0,10,10\n2,x,0,0,10,10\n", 2, "not a number"),
    ("0,1,0,0,10,10\n", 1, "frame numbers start at 1"),
    ("1,1.5,0,0,10,10\n", 1, "integers"),
    ("1,1,0,0,-3,10\n", 1, "width and height"),
    ("1,1,0,inf,3,10\n", 1, "finite"),
    ("1,1,0,0,3,10,nan\n", 1, "confidence"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, content: str, line: int, problem: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(MotDataError) as caught:
        read_mot(path)
    assert str(caught.value).startswith(f"{path}:{line}: ") and problem in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MotDataError, match="no such file"):
        read_mot(tmp_path / "nope.txt")


# ------------------------------------------------------------------------------------------ writing


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    original = tracks([(3, 1_700_000_000_000_002, 1.25, 2.5, 30.75, 80, 0.875), (1, 9, 0, 0, 5, 5, 1.0),
                       (1, 2, 100, 50, 20, 40, 0.5)])
    path = write_mot(tmp_path / "sub" / "cam.txt", original)
    back = read_mot(path)
    expected = original.sorted()
    assert back.frames.tolist() == expected.frames.tolist() and back.ids.tolist() == expected.ids.tolist()
    np.testing.assert_allclose(back.boxes, expected.boxes, atol=0.005)
    np.testing.assert_allclose(back.scores, expected.scores, atol=5e-5)
    assert path.read_text().splitlines()[0] == "1,2,100.00,50.00,20.00,40.00,0.5000,-1,-1,-1"


def test_writer_from_several_threads_writes_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "live.txt"
    with MotWriter(path, flush_every_s=0.0) as writer:
        def work(track: int) -> None:
            for frame in range(1, 201):
                writer.append(frame, [track, track + 100], [[frame, 0, 10, 20], [0, frame, 5, 5]], [0.5, 0.25])

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert writer.rows == 4 * 200 * 2
    t = read_mot(path)
    assert len(t) == 1600 and sorted(set(t.ids.tolist())) == [0, 1, 2, 3, 100, 101, 102, 103]
    for track in range(4):
        assert sorted(t.frames[t.ids == track].tolist()) == list(range(1, 201))


def test_writer_flushes_on_time_and_on_request(tmp_path: Path) -> None:
    path = tmp_path / "cam.txt"
    writer = MotWriter(path, flush_every_s=3600.0).open()
    try:
        writer.append(1, [1], [[0, 0, 1, 1]], [1.0])
        assert path.read_text() == ""  # buffered: the hour has not passed
        writer.flush()
        assert len(read_mot(path)) == 1
        writer.flush_every_s = 0.0
        writer.append(2, [1], [[0, 0, 1, 1]], [1.0])
        assert len(read_mot(path)) == 2  # flushed at once
    finally:
        writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="not open"):
        writer.append(3, [1], [[0, 0, 1, 1]], [1.0])


@pytest.mark.parametrize(("append", "lines"), [(False, 1), (True, 2)])
def test_writer_empties_or_continues_a_file(tmp_path: Path, append: bool, lines: int) -> None:
    path = tmp_path / "cam.txt"
    path.write_text("1,1,0,0,1,1,1,-1,-1,-1\n")
    with MotWriter(path, append=append) as writer:
        writer.append(2, [1], [[0, 0, 1, 1]], [1.0])
    assert len(read_mot(path)) == lines


def test_writer_with_no_boxes_writes_nothing(tmp_path: Path) -> None:
    with MotWriter(tmp_path / "cam.txt") as writer:
        assert writer.append(1, np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0)) == 0
    assert (tmp_path / "cam.txt").read_text() == ""


# ------------------------------------------------------------------------------------------ folders


def _line(frame: int, ident: int) -> str:
    return f"{frame},{ident},0,0,10,10,1,1,1\n"


def test_folder_of_camera_files(tmp_path: Path) -> None:
    (tmp_path / "north.txt").write_text(_line(1, 1) + _line(2, 1))
    (tmp_path / "south.txt").write_text(_line(1, 2))
    (tmp_path / "identities.csv").write_text("number,identity\n")  # not a camera
    (tmp_path / "._north.txt").write_text("junk")  # hidden: not a camera
    cameras = read_camera_dir(tmp_path)
    assert {name: len(t) for name, t in cameras.items()} == {"north": 2, "south": 1}


def test_motchallenge_ground_truth_layout(tmp_path: Path) -> None:
    for name, rows in (("MOT17-02", _line(1, 1) + "1,2,0,0,10,10,0,1,1\n"), ("MOT17-04", _line(3, 4))):
        (tmp_path / name / "gt").mkdir(parents=True)
        (tmp_path / name / "gt" / "gt.txt").write_text(rows)
    (tmp_path / "cam3.txt").write_text(_line(1, 9))  # the two layouts may mix
    cameras = read_camera_dir(tmp_path, gt=True)
    assert {name: t.ids.tolist() for name, t in cameras.items()} == {"MOT17-02": [1], "MOT17-04": [4], "cam3": [9]}
    assert set(read_camera_dir(tmp_path)) == {"cam3"}  # results: CAMERA.txt only


@pytest.mark.parametrize(("make", "gt", "message"), [
    (lambda root: None, False, "no MOT files"),
    (lambda root: root.joinpath("x.csv").write_text(""), True, "no MOT files"),
    (lambda root: (root.joinpath("c", "gt").mkdir(parents=True), root.joinpath("c", "gt", "gt.txt").write_text(""),
                   root.joinpath("c.txt").write_text("")), True, "both"),
])
def test_bad_folders(tmp_path: Path, make, gt: bool, message: str) -> None:
    make(tmp_path)
    with pytest.raises(MotDataError, match=message):
        read_camera_dir(tmp_path, gt=gt)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MotDataError, match="no such folder"):
        read_camera_dir(tmp_path / "missing")
