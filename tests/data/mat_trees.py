"""Small dataset trees in the real MARS, iLIDS-VID and PRID-2011 layouts, metadata (.mat, .json) included.

Images are empty files: the readers only look at names. The ``.mat`` files are MATLAB v5 files written with
``scipy.io.savemat``, with the variable names and conventions of the distributed ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io


def touch(root: Path, *relative_paths: str) -> None:
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


@dataclass(frozen=True)
class MarsTrack:
    """One MARS tracklet: person id (-1 junk, 0 distractor), 1-based camera, tracklet number, frame count."""

    pid: int
    cam: int
    number: int
    frames: int

    @property
    def stem(self) -> str:
        folder = "00-1" if self.pid == -1 else f"{self.pid:04d}"
        return f"{folder}C{self.cam}T{self.number:04d}"

    def names(self) -> list[str]:
        return [f"{self.stem}F{frame:03d}.jpg" for frame in range(1, self.frames + 1)]


MARS_TRAIN = (
    MarsTrack(1, 1, 1, 3), MarsTrack(1, 2, 1, 2), MarsTrack(3, 1, 1, 12), MarsTrack(-1, 3, 1, 2),
)
MARS_TEST = (
    MarsTrack(2, 1, 1, 2), MarsTrack(2, 2, 1, 3), MarsTrack(2, 2, 2, 1), MarsTrack(4, 3, 1, 2),
    MarsTrack(4, 6, 1, 2), MarsTrack(0, 1, 1, 2), MarsTrack(-1, 2, 1, 1), MarsTrack(5, 4, 1, 2),
)
MARS_QUERY = (1, 4, 8)
"""1-based rows of MARS_TEST: pid 2 in camera 1, pid 4 in camera 3, pid 5 in camera 4."""


def _track_rows(tracks: Sequence[MarsTrack]) -> tuple[list[str], np.ndarray]:
    names: list[str] = []
    rows = []
    for track in tracks:
        start = len(names) + 1
        names.extend(track.names())
        rows.append([start, len(names), track.pid, track.cam])
    return names, np.array(rows, dtype=np.float64).reshape(-1, 4)  # the real tables are doubles


def build_mars(base: Path, train: Sequence[MarsTrack] = MARS_TRAIN, test: Sequence[MarsTrack] = MARS_TEST,
               query: Sequence[int] = MARS_QUERY) -> None:
    """``base/bbox_{train,test}/<pid>/<name>`` and ``base/info/`` as in the MARS evaluation kit."""
    info = base / "info"
    info.mkdir(parents=True, exist_ok=True)
    for split, tracks, tag in (("bbox_train", train, "train"), ("bbox_test", test, "test")):
        names, rows = _track_rows(tracks)
        touch(base, *(f"{split}/{name[:4]}/{name}" for name in names))
        (info / f"{tag}_name.txt").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
        scipy.io.savemat(str(info / f"tracks_{tag}_info.mat"), {f"track_{tag}_info": rows})
    scipy.io.savemat(str(info / "query_IDX.mat"), {"query_IDX": np.array([query], dtype=np.float64)})


def ilids_people(count: int) -> list[str]:
    """Person folder names with gaps, like the real ones (person001 ... person319 for 300 people)."""
    return [f"person{number:03d}" for number in range(1, 2 * count + 1, 2)]


def build_ilidsvid(holder: Path, people: Sequence[str], frames: int = 2, seed: int = 0) -> np.ndarray:
    """``holder/i-LIDS-VID/sequences/cam{1,2}/<person>/*.png`` and the splits .mat beside it; returns ls_set."""
    for camera in ("cam1", "cam2"):
        touch(holder / "i-LIDS-VID" / "sequences",
              *(f"{camera}/{p}/{camera}_{p}_{i}.png" for p in people for i in range(1, frames + 1)))
    rng = np.random.default_rng(seed)
    ls_set = np.stack([rng.permutation(len(people)) + 1 for _ in range(10)]).astype(np.float64)
    splits = holder / "train-test people splits"
    splits.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(splits / "train_test_splits_ilidsvid.mat"), {"ls_set": ls_set})
    return ls_set.astype(np.int64)


def build_prid(holder: Path, frames: Mapping[str, tuple[int, int]],
               splits: Iterable[Mapping[str, list[str]]] | None = None) -> None:
    """``holder/prid_2011/multi_shot/cam_{a,b}/<person>/NNNN.png``; ``frames``: person -> (cam_a, cam_b) frames
    (0 = absent from that camera); ``splits`` are written to ``holder/prid_2011/splits_prid2011.json``."""
    shot = holder / "prid_2011" / "multi_shot"
    for person, counts in frames.items():
        for camera, count in zip(("cam_a", "cam_b"), counts):
            touch(shot, *(f"{camera}/{person}/{i:04d}.png" for i in range(1, count + 1)))
    if splits is not None:
        (holder / "prid_2011" / "splits_prid2011.json").write_text(json.dumps(list(splits)), encoding="utf-8")
