"""MOTChallenge text files: read, write (also live, one frame at a time) and read a folder of cameras.

One line per box, comma separated (whitespace is accepted too), frames numbered from 1::

    frame,id,x,y,w,h,conf,x,y,z              results (the last three are world coordinates, -1)
    frame,id,x,y,w,h,consider,class,visibility   ground truth of MOT16/17/20
    frame,id,x,y,w,h,1,-1,-1,-1              ground truth of MOT15

Lines may have 6 to 10 columns; blank lines are skipped; a malformed line is a :class:`MotDataError` naming the
file and the line. With ``gt=True`` rows whose ``consider`` flag (7th column) is 0 are dropped, and on lines of 8
or 9 columns (where the 8th column is the class) only pedestrians (class 1; -1 = unknown) are kept. The official
MOT devkit also removes the results that match a distractor (static person, reflection, ...): that step is not
done here.

A folder of cameras (:func:`read_camera_dir`) is either one file per camera, ``DIR/CAMERA.txt``, or for ground
truth the MOTChallenge layout ``DIR/CAMERA/gt/gt.txt``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

__all__ = ["MotDataError", "MotTracks", "MotWriter", "read_camera_dir", "read_mot", "write_mot", "xyxy_to_xywh"]

logger = logging.getLogger(__name__)

MIN_COLUMNS, MAX_COLUMNS = 6, 10
PEDESTRIAN, UNKNOWN_CLASS = 1, -1


class MotDataError(ValueError):
    """A MOT file or folder cannot be used: missing, malformed (the message names the file and line), or
    inconsistent with the ground truth."""


@dataclass(frozen=True, eq=False)
class MotTracks:
    """N boxes of one camera: ``frames`` int64 (from 1), ``ids`` int64, ``boxes`` float32 (N, 4) as x, y, w, h
    (finite, w and h >= 0) and ``scores`` float32 (finite). Array-likes are converted; the arrays are read-only."""

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        frames = np.array(self.frames, dtype=np.int64).reshape(-1)
        n = len(frames)
        ids = np.array(self.ids, dtype=np.int64).reshape(-1)
        boxes = np.array(self.boxes, dtype=np.float32).reshape(-1, 4) if n else np.zeros((0, 4), np.float32)
        scores = np.array(self.scores, dtype=np.float32).reshape(-1)
        if ids.shape != (n,) or boxes.shape != (n, 4) or scores.shape != (n,):
            raise ValueError(f"MotTracks: {n} frames but ids {ids.shape}, boxes {boxes.shape}, "
                             f"scores {scores.shape}")
        if n and frames.min() < 1:
            raise ValueError(f"MotTracks: frame numbers start at 1, got {int(frames.min())}")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise ValueError("MotTracks: boxes and scores must be finite")
        if n and boxes[:, 2:].min() < 0:
            raise ValueError("MotTracks: box widths and heights must be >= 0")
        for name, array in (("frames", frames), ("ids", ids), ("boxes", boxes), ("scores", scores)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def empty(cls) -> MotTracks:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.float32),
                   np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, index: np.ndarray) -> MotTracks:
        """The rows of an index array or a bool mask."""
        return MotTracks(self.frames[index], self.ids[index], self.boxes[index], self.scores[index])

    def with_ids(self, ids: np.ndarray) -> MotTracks:
        return MotTracks(self.frames, ids, self.boxes, self.scores)

    def sorted(self) -> MotTracks:
        """Ordered by frame, then id (a stable sort)."""
        return self.select(np.lexsort((self.ids, self.frames)))


def xyxy_to_xywh(boxes: Any) -> np.ndarray:
    """(N, 4) corner boxes x1, y1, x2, y2 as x, y, w, h (float32)."""
    array = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([array[:, :2], array[:, 2:] - array[:, :2]], axis=1)


# ------------------------------------------------------------------------------------------ reading


def _split_lines(path: Path) -> tuple[list[int], list[list[str]]]:
    """The non-blank lines as fields, with their 1-based line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MotDataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MotDataError(f"{path}: cannot read it ({exc})") from None
    numbers, rows = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if fields:
            numbers.append(number)
            rows.append(fields)
    return numbers, rows


def _bad_line(path: Path, number: int, fields: list[str], problem: str) -> MotDataError:
    shown = ",".join(fields)
    return MotDataError(f"{path}:{number}: {problem}: {shown[:80]!r}")


def _parse_floats(fields: list[str]) -> np.ndarray | None:
    """Every field as a float64, parsed in C; None when one is not a number."""
    text = " ".join(fields)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (and stops) at a field that is not a number
        try:
            values = np.fromstring(text, dtype=np.float64, sep=" ")
        except (DeprecationWarning, ValueError):
            return None
    return values if len(values) == len(fields) else None


def _to_table(path: Path, numbers: list[int], rows: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 10) float64 with NaN for missing columns, and each line's column count."""
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero((counts < MIN_COLUMNS) | (counts > MAX_COLUMNS))
    if len(bad):
        row = int(bad[0])
        raise _bad_line(path, numbers[row], rows[row], f"expected {MIN_COLUMNS} to {MAX_COLUMNS} columns, "
                                                       f"got {counts[row]}")
    values = _parse_floats(list(itertools.chain.from_iterable(rows)))
    if values is None:
        for number, fields in zip(numbers, rows):
            if _parse_floats(fields) is None:
                raise _bad_line(path, number, fields, "not a number")
        raise MotDataError(f"{path}: unreadable numbers")  # not reached: some line failed above
    starts = np.cumsum(counts) - counts
    table = np.full((len(rows), MAX_COLUMNS), np.nan)
    line_of = np.repeat(np.arange(len(rows)), counts)
    table[line_of, np.arange(len(values)) - starts[line_of]] = values
    return table, counts


def _check_values(path: Path, numbers: list[int], rows: list[list[str]], table: np.ndarray,
                  counts: np.ndarray) -> None:
    frame, ident, boxes = table[:, 0], table[:, 1], table[:, 2:6]
    problems = (
        (~np.isfinite(table[:, :6]).all(axis=1), "frame, id and box must be finite numbers"),
        ((counts > 6) & ~np.isfinite(table[:, 6]), "the confidence must be a finite number"),
        ((frame != np.round(frame)) | (ident != np.round(ident)), "frame and id must be integers"),
        (frame < 1, "frame numbers start at 1"),
        ((boxes[:, 2] < 0) | (boxes[:, 3] < 0), "box width and height must be >= 0"),
    )
    for bad, problem in problems:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise _bad_line(path, numbers[row], rows[row], problem)


def read_mot(path: str | Path, *, gt: bool = False) -> MotTracks:
    """One MOTChallenge file (see the module docstring); ``gt``: apply the ground-truth filters. A missing
    confidence reads as 1. Ids are read exactly up to 2**53 (the worker's are about 2**50)."""
    path = Path(path)
    numbers, rows = _split_lines(path)
    if not rows:
        return MotTracks.empty()
    table, counts = _to_table(path, numbers, rows)
    _check_values(path, numbers, rows, table, counts)
    keep = np.ones(len(table), dtype=bool)
    if gt:
        keep &= table[:, 6] != 0  # consider flag (NaN when absent: kept)
        has_class = (counts == 8) | (counts == 9)
        keep &= ~has_class | np.isin(table[:, 7], (PEDESTRIAN, UNKNOWN_CLASS))
    table = table[keep]
    scores = np.where(np.isnan(table[:, 6]), 1.0, table[:, 6])
    return MotTracks(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2:6], scores)


def read_camera_dir(directory: str | Path, *, gt: bool = False) -> dict[str, MotTracks]:
    """{camera: tracks} of a folder: ``DIR/CAMERA.txt`` files, or (``gt``) ``DIR/CAMERA/gt/gt.txt``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MotDataError(f"{directory}: no such folder")
    files = {path.stem: path for path in sorted(directory.glob("*.txt")) if not path.name.startswith(".")}
    if gt:
        for path in sorted(directory.glob("*/gt/gt.txt")):
            camera = path.parent.parent.name
            if camera in files:
                raise MotDataError(f"{directory}: camera {camera} has both {files[camera].name} and "
                                   f"{camera}/gt/gt.txt")
            files[camera] = path
    if not files:
        layout = "CAMERA.txt files or CAMERA/gt/gt.txt" if gt else "CAMERA.txt files"
        raise MotDataError(f"{directory}: no MOT files ({layout})")
    return {camera: read_mot(path, gt=gt) for camera, path in sorted(files.items())}


# ------------------------------------------------------------------------------------------ writing


def _lines(frames: np.ndarray, ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> str:
    return "".join(f"{f},{i},{x:.2f},{y:.2f},{w:.2f},{h:.2f},{s:.4f},-1,-1,-1\n"
                   for f, i, (x, y, w, h), s in zip(frames.tolist(), ids.tolist(), boxes.tolist(), scores.tolist()))


class MotWriter:
    """Appends boxes to a MOTChallenge results file as they come (thread-safe); a context manager.

    The file is created (its folder too) and emptied on :meth:`open`, or continued with ``append=True``.
    Written lines reach the file at least every ``flush_every_s`` seconds (0: after every append), on
    :meth:`flush` and on :meth:`close`.
    """

    def __init__(self, path: str | Path, *, append: bool = False, flush_every_s: float = 1.0) -> None:
        if flush_every_s < 0:
            raise ValueError(f"flush_every_s must be >= 0, got {flush_every_s}")
        self.path, self.append_mode, self.flush_every_s = Path(path), append, flush_every_s
        self.rows = 0
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._last_flush = 0.0

    def open(self) -> MotWriter:
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a" if self.append_mode else "w", encoding="utf-8")
                self._last_flush = time.monotonic()
        return self

    def append(self, frame: int, ids: Any, boxes_xywh: Any, scores: Any) -> int:
        """The boxes of one frame (``frame`` from 1); returns the number of lines written."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        frames = np.full(len(ids), frame, dtype=np.int64)
        return self.append_tracks(MotTracks(frames, ids, boxes_xywh, scores))

    def append_tracks(self, tracks: MotTracks) -> int:
        """Any rows, in their order."""
        text = _lines(tracks.frames, tracks.ids, tracks.boxes, tracks.scores)
        with self._lock:
            if self._file is None:
                raise ValueError(f"MotWriter({self.path}) is not open")
            self._file.write(text)
            self.rows += len(tracks)
            if time.monotonic() - self._last_flush >= self.flush_every_s:
                self._flush_locked()
        return len(tracks)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._flush_locked()

    def _flush_locked(self) -> None:
        assert self._file is not None
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> MotWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def write_mot(path: str | Path, tracks: MotTracks) -> Path:
    """A whole results file, ordered by frame and id; returns its path."""
    with MotWriter(path, flush_every_s=0) as writer:
        writer.append_tracks(tracks.sorted())
    return Path(path)
