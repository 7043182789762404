"""Train / query / gallery splits of the video re-ID benchmarks, read from their on-disk layout and metadata.

Readers only parse; sampling frames out of tracklets happens elsewhere. Every tracklet's ``paths`` are exactly
the strings :func:`keyreid_stream.data.layouts.list_tracklets` gives for the same root, so the keypoint store
(keyed by those paths) can be looked up with them.

* ``mars`` -- MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV
  2016). Tracklets come from the evaluation kit's ``info/`` folder: ``train_name.txt`` / ``test_name.txt``
  (image names in order) and ``tracks_{train,test}_info.mat`` (rows ``[start, end, pid, camid]``, 1-based
  inclusive indices into the name list). ``query_IDX.mat`` picks the query rows of the test table; every other
  test row is gallery. Rows of pid -1 (junk) are dropped; pid 0 (distractors) stay in the gallery only.
* ``ilidsvid`` -- iLIDS-VID (Wang et al., "Person Re-identification by Video Ranking", ECCV 2014). The ten
  splits of ``train-test people splits/train_test_splits_ilidsvid.mat`` (``ls_set``, 1-based indices into the
  sorted person folders of ``cam1``): the first half of a row are test people, the second half train people.
  Query is cam1 and gallery cam2 of the test people.
* ``prid`` -- PRID-2011 (Hirzer et al., "Person Re-identification by Descriptive and Discriminative
  Classification", SCIA 2011), ``multi_shot``: the people seen by both cameras in at least
  :data:`PRID_MIN_FRAMES` frames each, split in half ten times. The splits are read from
  ``splits_prid2011.json`` when the dataset root holds one (a list of ``{"train": [names], "test": [names]}``
  objects); otherwise they are drawn with ``numpy.random.default_rng(0)`` (deterministic, not the published
  splits of any paper). Query is cam_a, gallery cam_b.
* ``folder`` -- your own data: ``ROOT/{train,query,gallery}/<person>/<camera>/[<tracklet>/]<images>``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from keyreid_stream.data.layouts import (
    MARS_NAME,
    MARS_SPLITS,
    DatasetLayoutError,
    TrackletFiles,
    describe_folder,
    join_prefix,
    list_tracklets,
    locate_prefix,
    unknown_dataset_message,
)

__all__ = ["PRID_MIN_FRAMES", "SPLIT_COUNTS", "ReIDSplit", "VideoTracklet", "read_split", "split_count"]

logger = logging.getLogger(__name__)

SPLIT_COUNTS: dict[str, int] = {"mars": 1, "ilidsvid": 10, "prid": 10, "folder": 1}
PRID_MIN_FRAMES = 21
MARS_INFO_FILES = ("train_name.txt", "test_name.txt", "tracks_train_info.mat", "tracks_test_info.mat",
                   "query_IDX.mat")
ILIDS_SPLITS = ("train-test people splits", "train_test_splits_ilidsvid.mat")
PRID_SPLITS = "splits_prid2011.json"
FOLDER_SUBSETS = ("train", "query", "gallery")


@dataclass(frozen=True)
class VideoTracklet:
    """One tracklet of a split: a stable ``key``, frame ``paths`` relative to the root, person and camera."""

    key: str
    paths: tuple[str, ...]
    person_id: int
    camera_id: int

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class ReIDSplit:
    """The train, query and gallery tracklets of split number ``split`` (0 for single-split datasets)."""

    dataset: str
    root: Path
    split: int
    train: tuple[VideoTracklet, ...]
    query: tuple[VideoTracklet, ...]
    gallery: tuple[VideoTracklet, ...]
    num_cameras: int

    @property
    def train_person_ids(self) -> tuple[int, ...]:
        """The sorted distinct person ids of the training tracklets."""
        return tuple(sorted({tracklet.person_id for tracklet in self.train}))

    def summary(self) -> dict[str, int]:
        """``{subset}_ids``, ``{subset}_tracklets`` and ``{subset}_frames`` for train, query and gallery."""
        counts: dict[str, int] = {}
        for name, tracklets in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            counts[f"{name}_ids"] = len({tracklet.person_id for tracklet in tracklets})
            counts[f"{name}_tracklets"] = len(tracklets)
            counts[f"{name}_frames"] = sum(len(tracklet) for tracklet in tracklets)
        return counts


def split_count(dataset: str) -> int:
    """How many train/test splits ``dataset`` has."""
    name = dataset.strip().lower()
    if name not in SPLIT_COUNTS:
        raise DatasetLayoutError(unknown_dataset_message(dataset))
    return SPLIT_COUNTS[name]


def read_split(dataset: str, root: str | os.PathLike[str], split: int = 0) -> ReIDSplit:
    """Split number ``split`` (0-based) of ``dataset`` stored under ``root``."""
    name = dataset.strip().lower()
    count = split_count(name)
    if not 0 <= split < count:
        raise DatasetLayoutError(f"{name} has splits 0..{count - 1}, not {split}")
    root_path = Path(root)
    if not root_path.is_dir():
        raise DatasetLayoutError(f"{name} dataset root {str(root_path)!r} is not an existing directory")
    train, query, gallery, num_cameras = _READERS[name](root_path, split)
    result = ReIDSplit(name, root_path, split, tuple(train), tuple(query), tuple(gallery), num_cameras)
    logger.info("%s split %d under %s: %s", name, split, root_path, result.summary())
    return result


_Subsets = tuple[list[VideoTracklet], list[VideoTracklet], list[VideoTracklet], int]

# --------------------------------------------------------------------------- MARS


def _mars(root: Path, split: int) -> _Subsets:
    prefix = locate_prefix(root, ("", "MARS"), lambda subdirs: any(name in subdirs for name in MARS_SPLITS))
    if prefix is None:
        raise DatasetLayoutError(
            f"no MARS tree under {str(root)!r}: expected bbox_train/ and bbox_test/ (in root or MARS/); "
            f"{describe_folder(root)}")
    info = _mars_info_dir(root, prefix)
    train, test = (_mars_tracks(info, prefix, f"bbox_{tag}", f"{tag}_name.txt", f"tracks_{tag}_info.mat",
                                f"track_{tag}_info") for tag in ("train", "test"))
    query_rows = _mat_variable(info / "query_IDX.mat", "query_IDX").astype(np.int64).ravel()
    bad = query_rows[(query_rows < 1) | (query_rows > len(test))]
    if bad.size:
        raise DatasetLayoutError(
            f"{info / 'query_IDX.mat'}: query index {int(bad[0])} is outside the {len(test)} rows of "
            "tracks_test_info.mat (1-based)")
    chosen = dict.fromkeys((query_rows - 1).tolist())  # query_IDX order, duplicates once
    query = [test[row] for row in chosen]
    kept = [tracklet for tracklet in query if tracklet.person_id > 0]
    if len(kept) < len(query):
        logger.warning("mars: dropped %d query tracklets of junk or distractor ids", len(query) - len(kept))
    gallery = [tracklet for row, tracklet in enumerate(test) if row not in chosen and tracklet.person_id >= 0]
    train_kept = [tracklet for tracklet in train if tracklet.person_id > 0]
    logger.debug("mars: dropped %d junk/distractor train rows and %d junk test rows",
                 len(train) - len(train_kept), sum(t.person_id < 0 for t in test))
    cameras = max((tracklet.camera_id + 1 for tracklet in (*train_kept, *kept, *gallery)), default=0)
    return train_kept, kept, gallery, cameras


def _mars_info_dir(root: Path, prefix: str) -> Path:
    candidates = list(dict.fromkeys([root / prefix / "info", root / "info"]))
    for candidate in candidates:
        if all((candidate / name).is_file() for name in MARS_INFO_FILES):
            return candidate
    found = [str(c / n) for c in candidates for n in MARS_INFO_FILES if (c / n).is_file()]
    raise DatasetLayoutError(
        f"MARS metadata missing: expected {', '.join(MARS_INFO_FILES)} in {str(candidates[0])!r} (the info/ "
        "folder of the MARS evaluation kit, github.com/liangzheng06/MARS-evaluation); "
        + (f"found only {', '.join(found)}" if found else "found none of them"))


def _mat_variable(path: Path, variable: str) -> np.ndarray:
    try:
        contents = scipy.io.loadmat(str(path), variable_names=[variable])
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetLayoutError(f"{path} is not a readable MATLAB v5 file: {exc}") from None
    if variable not in contents:
        raise DatasetLayoutError(f"{path} holds no variable {variable!r}")
    return np.asarray(contents[variable])


def _mars_tracks(info: Path, prefix: str, split_dir: str, names_file: str, mat_file: str,
                 variable: str) -> list[VideoTracklet]:
    names = [line.strip() for line in (info / names_file).read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    table = _mat_variable(info / mat_file, variable)
    if table.ndim != 2 or table.shape[1] != 4:
        raise DatasetLayoutError(
            f"{info / mat_file}: expected {variable} rows [start, end, pid, camid], found shape "
            f"{table.shape}")
    return [_mars_row(names, row, index, split_dir, prefix, info / mat_file)
            for index, row in enumerate(table.astype(np.int64).tolist(), start=1)]


def _mars_row(names: Sequence[str], row: Sequence[int], number: int, split_dir: str, prefix: str,
              mat_path: Path) -> VideoTracklet:
    start, end, pid, camid = row
    where = f"{mat_path} row {number} [start={start}, end={end}, pid={pid}, camid={camid}]"
    if not 1 <= start <= end <= len(names) or camid < 1:
        raise DatasetLayoutError(
            f"{where}: expected 1 <= start <= end <= {len(names)} (the names in its name list) and "
            "camid >= 1")
    match = MARS_NAME.fullmatch(names[start - 1])
    folder = "00-1" if pid == -1 else f"{pid:04d}"
    if match is None or match["pid"] != folder or int(match["cam"]) != camid:
        raise DatasetLayoutError(
            f"{where}: expected its first image to be named {folder}C{camid}T<n>F<frame>, found "
            f"{names[start - 1]!r}")
    stem = names[start - 1][:11]
    frames = sorted(names[start - 1:end], key=lambda name: (len(name), name))  # numeric frame order
    stray = next((name for name in frames if not name.startswith(stem)), None)
    if stray is not None:
        raise DatasetLayoutError(f"{where}: expected only images of tracklet {stem}, found {stray!r}")
    paths = tuple(join_prefix(prefix, f"{split_dir}/{folder}/{name}") for name in frames)
    return VideoTracklet(f"{split_dir}/{stem}", paths, int(pid), int(camid) - 1)


# --------------------------------------------------------------------------- iLIDS-VID and PRID-2011


def _by_camera(tracklets: Iterable[TrackletFiles]) -> dict[str, dict[str, TrackletFiles]]:
    """camera id -> person folder name -> tracklet."""
    cameras: dict[str, dict[str, TrackletFiles]] = {}
    for tracklet in tracklets:
        cameras.setdefault(tracklet.camera_id, {})[tracklet.person_id] = tracklet
    return cameras


def _tree_base(root: Path, tracklets: Sequence[TrackletFiles]) -> Path:
    """The folder holding the camera folders (``sequences`` / ``multi_shot``)."""
    return root.joinpath(*tracklets[0].paths[0].split("/")[:-3])


def _find_near(root: Path, base: Path, relative: str) -> Path | None:
    """``relative`` in ``root``, or in the dataset folder above ``base``, or the folder above that."""
    for folder in dict.fromkeys([root, base.parent, base.parent.parent]):
        if (folder / relative).is_file():
            return folder / relative
    return None


def _two_camera_subsets(cameras: dict[str, dict[str, TrackletFiles]], names: tuple[str, str],
                        train: Iterable[str], test: Iterable[str], ids: dict[str, int]) -> _Subsets:
    def pick(camera: int, people: Iterable[str]) -> list[VideoTracklet]:
        folders = cameras[names[camera]]
        return [VideoTracklet(folders[p].key, folders[p].paths, ids[p], camera) for p in people]

    train, test = sorted(train), sorted(test)
    return pick(0, train) + pick(1, train), pick(0, test), pick(1, test), 2


def _ilidsvid(root: Path, split: int) -> _Subsets:
    tracklets = list_tracklets("ilidsvid", root)
    cameras = _by_camera(tracklets)
    people = sorted(cameras.get("1", {}))
    base = _tree_base(root, tracklets)
    relative = "/".join(ILIDS_SPLITS)
    mat_path = _find_near(root, base, relative)
    if mat_path is None:
        raise DatasetLayoutError(
            f"iLIDS-VID splits missing: expected {relative!r} beside i-LIDS-VID/ (looked in "
            f"{str(root)!r} and the folders above {str(base)!r})")
    sets = _mat_variable(mat_path, "ls_set").astype(np.int64)
    if sets.ndim != 2 or sets.shape[0] <= split or sets.shape[1] % 2:
        raise DatasetLayoutError(f"{mat_path}: expected ls_set of shape (10, even), found {sets.shape}")
    row = sets[split]
    if row.min() < 1 or row.max() > len(people):
        raise DatasetLayoutError(
            f"{mat_path}: split {split} has person indices {row.min()}..{row.max()}, expected "
            f"1..{len(people)} (the person folders of cam1 in {str(base)!r})")
    half = len(row) // 2
    test, train = [people[i - 1] for i in row[:half]], [people[i - 1] for i in row[half:]]
    missing = [p for p in (*train, *test) if p not in cameras.get("2", {})]
    if missing:
        raise DatasetLayoutError(f"iLIDS-VID split {split} uses {missing[0]} but {str(base)!r} has no "
                                 f"cam2/{missing[0]}/ ({len(missing)} such people)")
    ids = {person: index for index, person in enumerate(people, start=1)}
    return _two_camera_subsets(cameras, ("1", "2"), train, test, ids)


def _prid(root: Path, split: int) -> _Subsets:
    tracklets = list_tracklets("prid", root)
    cameras = _by_camera(tracklets)
    cam_a, cam_b = cameras.get("a", {}), cameras.get("b", {})
    base = _tree_base(root, tracklets)
    eligible = sorted(p for p in cam_a.keys() & cam_b.keys()
                      if min(len(cam_a[p]), len(cam_b[p])) >= PRID_MIN_FRAMES)
    json_path = _find_near(root, base, PRID_SPLITS)
    if json_path is None:
        logger.info("prid: no %s; drawing 10 random half/half splits of the %d people seen by both cameras "
                    "in >= %d frames (numpy default_rng(0))", PRID_SPLITS, len(eligible), PRID_MIN_FRAMES)
        train, test = _prid_generated_split(eligible, split)
    else:
        train, test = _prid_json_split(json_path, split, cam_a.keys() & cam_b.keys())
    ids = {person: _prid_number(person, base) for person in (*train, *test)}
    return _two_camera_subsets(cameras, ("a", "b"), train, test, ids)


def _prid_generated_split(people: Sequence[str], split: int) -> tuple[list[str], list[str]]:
    if len(people) < 2:
        raise DatasetLayoutError(
            f"prid: {len(people)} people are seen by both cameras in >= {PRID_MIN_FRAMES} frames; "
            "need at least 2")
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(people)) for _ in range(SPLIT_COUNTS["prid"])]
    half = len(people) // 2
    order = orders[split]
    return sorted(people[i] for i in order[:half]), sorted(people[i] for i in order[half:])


def _prid_json_split(path: Path, split: int, both: set[str]) -> tuple[list[str], list[str]]:
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
        train, test = splits[split]["train"], splits[split]["test"]
    except (OSError, ValueError, LookupError, TypeError) as exc:
        raise DatasetLayoutError(
            f"{path}: expected a list of {SPLIT_COUNTS['prid']} objects {{\"train\": [person names], "
            f"\"test\": [person names]}} with split {split}; reading it failed ({exc!r})") from None
    unknown = [p for p in (*train, *test) if p not in both]
    if unknown:
        raise DatasetLayoutError(f"{path}: split {split} names {unknown[0]!r}, which is not a person folder "
                                 f"in both cam_a/ and cam_b/ ({len(unknown)} such names)")
    return [str(p) for p in train], [str(p) for p in test]


def _prid_number(person: str, base: Path) -> int:
    digits = person.rpartition("_")[2]
    if not digits.isdigit():
        raise DatasetLayoutError(f"prid: expected person folders named person_<number> in {str(base)!r}, "
                                 f"found {person!r}")
    return int(digits)


# --------------------------------------------------------------------------- folder


def _folder(root: Path, split: int) -> _Subsets:
    missing = [name for name in ("query", "gallery") if not (root / name).is_dir()]
    if missing:
        raise DatasetLayoutError(
            f"folder dataset {str(root)!r}: expected train/ (optional), query/ and gallery/ holding "
            f"<person>/<camera>/[<tracklet>/]<images>; {'/, '.join(missing)}/ missing, {describe_folder(root)}")
    subsets: dict[str, list[tuple[TrackletFiles, str, str]]] = {name: [] for name in FOLDER_SUBSETS}
    for tracklet in list_tracklets("folder", root):
        parts = tracklet.key.split("/")
        if parts[0] not in subsets:
            logger.debug("folder: ignoring %s, outside train/, query/ and gallery/", tracklet.key)
        elif len(parts) not in (3, 4):
            raise DatasetLayoutError(
                f"folder dataset {str(root)!r}: expected images in {parts[0]}/<person>/<camera>/"
                f"[<tracklet>/], found {len(tracklet)} in {tracklet.key}/")
        else:
            subsets[parts[0]].append((tracklet, parts[1], parts[2]))
    for name in ("query", "gallery"):
        if not subsets[name]:
            raise DatasetLayoutError(f"folder dataset {str(root)!r}: no images in {name}/<person>/<camera>/")
    everyone = [entry for entries in subsets.values() for entry in entries]
    people = sorted({person for _, person, _ in everyone})
    digits = all(person.isdigit() for person in people)
    person_ids = {p: int(p) if digits else index for index, p in enumerate(people)}
    camera_ids = {c: index for index, c in enumerate(sorted({camera for _, _, camera in everyone}))}

    def build(name: str) -> list[VideoTracklet]:
        return [VideoTracklet(t.key, t.paths, person_ids[p], camera_ids[c]) for t, p, c in subsets[name]]

    return build("train"), build("query"), build("gallery"), len(camera_ids)


_READERS: dict[str, Callable[[Path, int], _Subsets]] = {
    "mars": _mars, "ilidsvid": _ilidsvid, "prid": _prid, "folder": _folder}
