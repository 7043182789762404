"""Tracklet listing over small synthetic dataset trees (empty files: the reader only looks at names)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from keyreid_stream.data.layouts import DATASETS, DatasetLayoutError, TrackletFiles, list_tracklets


def touch(root: Path, *relative_paths: str) -> None:
    for relative in relative_paths:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def by_key(tracklets: list[TrackletFiles]) -> dict[str, TrackletFiles]:
    return {tracklet.key: tracklet for tracklet in tracklets}


def build_mars(base: Path) -> None:
    touch(
        base,
        "bbox_train/0001/0001C1T0001F010.jpg",
        "bbox_train/0001/0001C1T0001F002.jpg",
        "bbox_train/0001/0001C1T0001F001.jpg",
        "bbox_train/0001/0001C2T0003F001.jpg",
        "bbox_train/00-1/00-1C4T0002F001.jpg",
        "bbox_train/0000/0000C6T0001F005.jpg",
        "bbox_test/0002/0002C1T0001F001.jpg",
    )


def build_ilidsvid(base: Path) -> None:
    touch(
        base,
        "i-LIDS-VID/sequences/cam1/person001/cam1_person001_10.png",
        "i-LIDS-VID/sequences/cam1/person001/cam1_person001_9.png",
        "i-LIDS-VID/sequences/cam2/person001/cam2_person001_1.png",
        "i-LIDS-VID/sequences/cam2/person002/cam2_person002_1.png",
    )


def build_prid(base: Path) -> None:
    touch(
        base,
        "prid_2011/multi_shot/cam_a/person_0001/0010.png",
        "prid_2011/multi_shot/cam_a/person_0001/0002.png",
        "prid_2011/multi_shot/cam_b/person_0001/0001.png",
        "prid_2011/single_shot/cam_a/person_0001.png",
    )


def build_folder(base: Path) -> None:
    touch(base, "top.jpg", "alice/walk/img10.png", "alice/walk/img2.png", "bob/IMG1.JPEG", "bob/notes.txt")


BUILDERS: dict[str, Callable[[Path], None]] = {
    "mars": build_mars,
    "ilidsvid": build_ilidsvid,
    "prid": build_prid,
    "folder": build_folder,
}


def test_mars_groups_files_into_tracklets_in_numeric_frame_order(tmp_path: Path) -> None:
    build_mars(tmp_path)
    tracklets = by_key(list_tracklets("mars", tmp_path))
    assert sorted(tracklets) == [
        "bbox_test/0002C1T0001",
        "bbox_train/00-1C4T0002",
        "bbox_train/0000C6T0001",
        "bbox_train/0001C1T0001",
        "bbox_train/0001C2T0003",
    ]
    first = tracklets["bbox_train/0001C1T0001"]
    assert (first.person_id, first.camera_id, len(first)) == ("0001", "1", 3)
    assert [Path(path).name[-8:-4] for path in first.paths] == ["F001", "F002", "F010"]
    junk = tracklets["bbox_train/00-1C4T0002"]
    assert (junk.person_id, junk.camera_id) == ("00-1", "4")
    assert junk.paths == ("bbox_train/00-1/00-1C4T0002F001.jpg",)


@pytest.mark.parametrize(
    ("dataset", "tree_dir", "root_dir", "path_prefix"),
    [
        ("mars", "", "", ""),
        ("mars", "MARS", "", "MARS/"),
        ("mars", "MARS", "MARS", ""),
        ("ilidsvid", "", "", "i-LIDS-VID/sequences/"),
        ("ilidsvid", "", "i-LIDS-VID", "sequences/"),
        ("ilidsvid", "", "i-LIDS-VID/sequences", ""),
        ("prid", "", "", "prid_2011/multi_shot/"),
        ("prid", "", "prid_2011", "multi_shot/"),
        ("prid", "", "prid_2011/multi_shot", ""),
    ],
)
def test_root_variants_give_the_same_keys_and_paths_relative_to_the_given_root(
    tmp_path: Path, dataset: str, tree_dir: str, root_dir: str, path_prefix: str
) -> None:
    BUILDERS[dataset](tmp_path / tree_dir)
    reference = list_tracklets(dataset, tmp_path / tree_dir)
    tracklets = list_tracklets(dataset, tmp_path / root_dir)
    assert [t.key for t in tracklets] == [t.key for t in reference]
    assert all(path.startswith(path_prefix) for t in tracklets for path in t.paths)
    assert all((tmp_path / root_dir / path).is_file() for t in tracklets for path in t.paths)


@pytest.mark.parametrize(
    ("dataset", "key", "person_id", "camera_id", "frame_names"),
    [
        ("ilidsvid", "cam1/person001", "person001", "1", ["cam1_person001_9.png", "cam1_person001_10.png"]),
        ("ilidsvid", "cam2/person002", "person002", "2", ["cam2_person002_1.png"]),
        ("prid", "cam_a/person_0001", "person_0001", "a", ["0002.png", "0010.png"]),
        ("prid", "cam_b/person_0001", "person_0001", "b", ["0001.png"]),
        ("folder", ".", None, "0", ["top.jpg"]),
        ("folder", "alice/walk", "alice", "0", ["img2.png", "img10.png"]),
        ("folder", "bob", "bob", "0", ["IMG1.JPEG"]),
    ],
)
def test_tracklet_ids_and_natural_frame_order(
    tmp_path: Path, dataset: str, key: str, person_id: str | None, camera_id: str, frame_names: list[str]
) -> None:
    root = tmp_path / "data"
    BUILDERS[dataset](root)
    tracklet = by_key(list_tracklets(dataset, root))[key]
    assert tracklet.person_id == (person_id or "data")
    assert tracklet.camera_id == camera_id
    assert [Path(path).name for path in tracklet.paths] == frame_names


def test_ilidsvid_and_prid_list_exactly_the_expected_tracklets(tmp_path: Path) -> None:
    build_ilidsvid(tmp_path)
    build_prid(tmp_path)
    assert [t.key for t in list_tracklets("ilidsvid", tmp_path)] == [
        "cam1/person001", "cam2/person001", "cam2/person002",
    ]
    assert [t.key for t in list_tracklets("prid", tmp_path)] == ["cam_a/person_0001", "cam_b/person_0001"]


def test_folder_skips_hidden_dirs_non_images_and_image_less_dirs(tmp_path: Path) -> None:
    build_folder(tmp_path)
    touch(tmp_path, ".cache/x.jpg", "bob/.hidden.jpg", "empty/readme.md")
    (tmp_path / "nothing").mkdir()
    tracklets = by_key(list_tracklets("folder", tmp_path))
    assert sorted(tracklets) == [".", "alice/walk", "bob"]
    assert tracklets["bob"].paths == ("bob/IMG1.JPEG",)


def test_folder_does_not_follow_a_link_back_to_a_parent(tmp_path: Path) -> None:
    touch(tmp_path, "a/b/1.png")
    try:
        os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop", target_is_directory=True)
    except OSError:
        pytest.skip("symlinks unavailable")
    assert [t.key for t in list_tracklets("folder", tmp_path)] == ["a/b"]


def test_mars_skips_misnamed_images_with_one_warning_per_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_mars(tmp_path)
    touch(
        tmp_path,
        "bbox_train/0001/frame.jpg",
        "bbox_train/0001/0001C1T01F001.jpg",
        "bbox_train/0001/0009C1T0001F001.jpg",
        "bbox_train/0001/Thumbs.db",
        "bbox_train/0001/0001C1T0001F003.txt",
    )
    with caplog.at_level(logging.WARNING, logger="keyreid_stream.data.layouts"):
        tracklets = by_key(list_tracklets("mars", tmp_path))
    assert len(tracklets["bbox_train/0001C1T0001"]) == 3
    assert "bbox_train/0009C1T0001" not in tracklets
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "skipped 3 of 7 images in bbox_train/0001" in warnings[0]


@pytest.mark.parametrize("dataset", DATASETS)
def test_listing_is_sorted_deterministic_and_relative(tmp_path: Path, dataset: str) -> None:
    BUILDERS[dataset](tmp_path)
    tracklets = list_tracklets(dataset, tmp_path)
    assert tracklets == list_tracklets(dataset, str(tmp_path))
    assert [t.key for t in tracklets] == sorted(t.key for t in tracklets)
    for path in (path for t in tracklets for path in t.paths):
        assert not Path(path).is_absolute() and "\\" not in path and ".." not in Path(path).parts
        assert (tmp_path / path).is_file()


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("make_root", ["missing", "file", "empty", "other_tree"])
def test_bad_roots_raise_a_readable_layout_error(tmp_path: Path, dataset: str, make_root: str) -> None:
    root = tmp_path / "root"
    if make_root == "file":
        root.write_bytes(b"")
    elif make_root == "empty":
        root.mkdir()
    elif make_root == "other_tree":
        touch(root, "videos/clip.mp4", "notes.txt")
    expected = {"missing": "does not exist", "file": "not a directory", "empty": "it is empty"}
    with pytest.raises(DatasetLayoutError, match=expected.get(make_root, "found notes.txt, videos/")) as info:
        list_tracklets(dataset, root)
    assert "\n" not in str(info.value)
    assert str(root) in str(info.value)


@pytest.mark.parametrize("dataset", ["mars", "ilidsvid", "prid"])
def test_layout_folders_without_tracklets_say_what_was_expected(tmp_path: Path, dataset: str) -> None:
    skeletons = {
        "mars": "bbox_train/0001",
        "ilidsvid": "i-LIDS-VID/sequences/cam1/person001",
        "prid": "multi_shot/cam_a",
    }
    (tmp_path / skeletons[dataset]).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=f"no {dataset} tracklets under .*: expected "):
        list_tracklets(dataset, tmp_path)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("ilids-vid", "did you mean 'ilidsvid'"), ("Mar", "did you mean 'mars'"), ("imagenet", None)],
)
def test_unknown_dataset_names_the_known_ones(tmp_path: Path, name: str, suggestion: str | None) -> None:
    with pytest.raises(DatasetLayoutError, match="known datasets: mars, ilidsvid, prid, folder") as info:
        list_tracklets(name, tmp_path)
    message = str(info.value)
    assert repr(name) in message
    assert (suggestion in message) if suggestion else ("did you mean" not in message)


def test_dataset_name_is_case_insensitive(tmp_path: Path) -> None:
    build_prid(tmp_path)
    assert list_tracklets("PRID", tmp_path) == list_tracklets("prid", tmp_path)
