"""Enumerate the tracklets of the standard video re-ID dataset trees on disk.

A *tracklet* is an ordered sequence of person crops: one identity seen by one camera. MARS, iLIDS-VID and
PRID-2011 all encode identity, camera and frame order in their folder and file names, so they can be read
without any of their metadata files (``.mat`` splits, info tables). A plain ``folder`` layout covers any other
tree: every directory that directly holds images is one tracklet. Keypoint extraction and the trainer both go
through :func:`list_tracklets`, so they agree on which frames make up which tracklet and on their order.

Directories are read with :func:`os.scandir`; a name with an image suffix is taken as an image without a
``stat`` call, which keeps a full MARS tree (about 1.2 million files) quick to list. Names starting with a
dot (hidden files and folders) are ignored everywhere.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mars", "ilidsvid", "prid", "folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
"""Image file suffixes, matched case-insensitively."""

MARS_SPLITS = ("bbox_train", "bbox_test")
MARS_NAME = re.compile(r"(?P<pid>\d{4}|00-1)C(?P<cam>\d)T(?P<tracklet>\d{4})F(?P<frame>\d{3,})\.\w+")
_ILIDS_CAMERA = re.compile(r"cam(\d+)")
_PRID_CAMERA = re.compile(r"cam_([a-z])")
_DIGIT_RUNS = re.compile(r"(\d+)")
_LISTED_NAMES = 5

_MarsFrames = dict[tuple[str, str, str, str], list[tuple[int, str]]]
"""(split, person id, camera, tracklet number) -> [(frame number, file name)]."""


class DatasetLayoutError(ValueError):
    """A dataset tree is missing or misshapen; the one-line message says what was expected where and found."""


@dataclass(frozen=True)
class TrackletFiles:
    """One tracklet: its stable ``key`` within the dataset, its identity, its camera and its frames in order.

    ``paths`` are relative to the dataset root given to :func:`list_tracklets`, with ``/`` separators, so
    ``Path(root) / path`` is the image file.
    """

    key: str
    person_id: str
    camera_id: str
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def list_tracklets(dataset: str, root: str | os.PathLike[str]) -> list[TrackletFiles]:
    """Every tracklet of ``dataset`` (one of :data:`DATASETS`) found under ``root``, sorted by key."""
    reader = _READERS.get(dataset.strip().lower())
    if reader is None:
        raise DatasetLayoutError(unknown_dataset_message(dataset))
    root_path = Path(root)
    if not root_path.exists():
        raise DatasetLayoutError(f"{dataset} dataset root {str(root_path)!r} does not exist")
    if not root_path.is_dir():
        raise DatasetLayoutError(f"{dataset} dataset root {str(root_path)!r} is not a directory")
    tracklets = sorted(reader(root_path), key=lambda tracklet: tracklet.key)
    logger.debug("%s: %d tracklets under %s", dataset, len(tracklets), root_path)
    return tracklets


def unknown_dataset_message(dataset: str) -> str:
    message = f"unknown dataset {dataset!r}"
    close = difflib.get_close_matches(dataset.strip().lower(), DATASETS, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + f" (known datasets: {', '.join(DATASETS)})"


def _natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders digit runs by value (``img2`` before ``img10``); ties fall back to the name."""
    parts = _DIGIT_RUNS.split(name)
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts)), name


def _has_image_suffix(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _scan(directory: Path) -> tuple[list[str], list[str]]:
    """The image names and the sub-directory names (both unsorted) directly inside ``directory``."""
    images: list[str] = []
    subdirs: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _has_image_suffix(entry.name):
                images.append(entry.name)
            elif entry.is_dir():
                subdirs.append(entry.name)
    return images, subdirs


def join_prefix(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def describe_folder(directory: Path) -> str:
    with os.scandir(directory) as entries:
        names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in entries)
    if not names:
        return "it is empty"
    shown = ", ".join(names[:_LISTED_NAMES])
    more = f" and {len(names) - _LISTED_NAMES} more" if len(names) > _LISTED_NAMES else ""
    return f"found {shown}{more}"


def _no_tracklets(dataset: str, root: Path, expected: str) -> DatasetLayoutError:
    found = describe_folder(root)
    return DatasetLayoutError(f"no {dataset} tracklets under {str(root)!r}: expected {expected}; {found}")


def locate_prefix(root: Path, prefixes: Sequence[str], holds: Callable[[list[str]], bool]) -> str | None:
    """The first of ``prefixes`` (under ``root``) naming a directory whose sub-folders satisfy ``holds``."""
    for prefix in prefixes:
        candidate = root / prefix  # Path("r") / "" is Path("r")
        if candidate.is_dir() and holds(_scan(candidate)[1]):
            return prefix
    return None


def _mars(root: Path) -> list[TrackletFiles]:
    expected = "bbox_train/ and/or bbox_test/ (in root or MARS/) holding <pid>/<pid>C<cam>T<n>F<frame>.jpg"
    prefix = locate_prefix(root, ("", "MARS"), lambda subdirs: any(split in subdirs for split in MARS_SPLITS))
    if prefix is None:
        raise _no_tracklets("mars", root, expected)
    frames: _MarsFrames = defaultdict(list)
    for split in MARS_SPLITS:
        split_rel = join_prefix(prefix, split)
        if (root / split_rel).is_dir():
            for person in _scan(root / split_rel)[1]:
                _collect_mars_person(root, join_prefix(split_rel, person), split, person, frames)
    if not frames:
        raise _no_tracklets("mars", root, expected)
    return [
        TrackletFiles(
            key=f"{split}/{pid}C{cam}T{tracklet}",
            person_id=pid,
            camera_id=cam,
            paths=tuple(join_prefix(prefix, f"{split}/{pid}/{name}") for _, name in sorted(numbered)),
        )
        for (split, pid, cam, tracklet), numbered in frames.items()
    ]


def _collect_mars_person(root: Path, person_rel: str, split: str, person: str, frames: _MarsFrames) -> None:
    images = _scan(root / person_rel)[0]
    skipped = 0
    for name in images:
        match = MARS_NAME.fullmatch(name)
        if match is None or match["pid"] != person:
            skipped += 1
            continue
        frames[(split, person, match["cam"], match["tracklet"])].append((int(match["frame"]), name))
    if skipped:
        logger.warning(
            "mars: skipped %d of %d images in %s not named %sC<cam>T<tracklet>F<frame>",
            skipped, len(images), person_rel, person,
        )


def _camera_person_tracklets(
    dataset: str, root: Path, prefix: str, camera_pattern: re.Pattern[str]
) -> Iterator[TrackletFiles]:
    """Tracklets of a ``<camera>/<person>/<images>`` tree at ``root / prefix``."""
    for camera in _scan(root / prefix)[1]:
        camera_match = camera_pattern.fullmatch(camera)
        if camera_match is None:
            continue
        camera_rel = join_prefix(prefix, camera)
        for person in _scan(root / camera_rel)[1]:
            person_rel = join_prefix(camera_rel, person)
            images = _scan(root / person_rel)[0]
            if not images:
                logger.debug("%s: no images in %s", dataset, person_rel)
                continue
            paths = tuple(join_prefix(person_rel, name) for name in sorted(images, key=_natural_key))
            yield TrackletFiles(f"{camera}/{person}", person, camera_match[1], paths)


def _read_camera_person_tree(
    dataset: str, root: Path, prefixes: Sequence[str], camera_pattern: re.Pattern[str], expected: str
) -> list[TrackletFiles]:
    def holds_camera(subdirs: list[str]) -> bool:
        return any(camera_pattern.fullmatch(name) for name in subdirs)

    prefix = locate_prefix(root, prefixes, holds_camera)
    found = [] if prefix is None else _camera_person_tracklets(dataset, root, prefix, camera_pattern)
    tracklets = list(found)
    if not tracklets:
        raise _no_tracklets(dataset, root, expected)
    return tracklets


def _ilidsvid(root: Path) -> list[TrackletFiles]:
    expected = "i-LIDS-VID/sequences/cam<N>/<person>/<images> (root may also be i-LIDS-VID/ or sequences/)"
    prefixes = ("i-LIDS-VID/sequences", "sequences", "")
    return _read_camera_person_tree("ilidsvid", root, prefixes, _ILIDS_CAMERA, expected)


def _prid(root: Path) -> list[TrackletFiles]:
    expected = "prid_2011/multi_shot/cam_a|cam_b/<person>/<images> (root may be prid_2011/ or multi_shot/)"
    prefixes = ("prid_2011/multi_shot", "multi_shot", "")
    return _read_camera_person_tree("prid", root, prefixes, _PRID_CAMERA, expected)


def _folder(root: Path) -> list[TrackletFiles]:
    tracklets = list(_walk_folder(root, root, "", frozenset()))
    if not tracklets:
        expected = f"at least one directory holding images ({', '.join(IMAGE_SUFFIXES)})"
        raise _no_tracklets("folder", root, expected)
    return tracklets


def _walk_folder(root: Path, directory: Path, rel: str, ancestors: frozenset[str]) -> Iterator[TrackletFiles]:
    real = os.path.realpath(directory)
    if real in ancestors:
        logger.warning("folder: not following %s, a link back to one of its parents", rel)
        return
    images, subdirs = _scan(directory)
    if images:
        key = rel or "."
        person_id = rel.split("/", 1)[0] if rel else root.resolve().name
        paths = tuple(join_prefix(rel, name) for name in sorted(images, key=_natural_key))
        yield TrackletFiles(key, person_id, "0", paths)
    for subdir in sorted(subdirs):
        yield from _walk_folder(root, directory / subdir, join_prefix(rel, subdir), ancestors | {real})


_READERS: dict[str, Callable[[Path], list[TrackletFiles]]] = {
    "mars": _mars,
    "ilidsvid": _ilidsvid,
    "prid": _prid,
    "folder": _folder,
}
