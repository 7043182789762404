"""Benchmark split readers over small trees in the real layouts, metadata files included (built by mat_trees)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from keyreid_stream.data.datasets import SPLIT_COUNTS, ReIDSplit, VideoTracklet, read_split, split_count
from keyreid_stream.data.layouts import DatasetLayoutError, list_tracklets

from mat_trees import MarsTrack, build_ilidsvid, build_mars, build_prid, ilids_people, touch

PRID_FRAMES = {
    "person_0001": (25, 30), "person_0002": (21, 22), "person_0003": (20, 40), "person_0004": (30, 0),
    "person_0005": (30, 30), "person_0006": (40, 21), "person_0007": (22, 10), "person_0008": (50, 60),
}
PRID_ELIGIBLE = ["person_0001", "person_0002", "person_0005", "person_0006", "person_0008"]


def keys(tracklets: tuple[VideoTracklet, ...]) -> list[str]:
    return [tracklet.key for tracklet in tracklets]


def assert_paths_match_layouts(split: ReIDSplit) -> None:
    listed = {t.key: t.paths for t in list_tracklets(split.dataset, split.root)}
    for tracklet in (*split.train, *split.query, *split.gallery):
        assert tracklet.paths == listed[tracklet.key]
        assert len(tracklet) == len(tracklet.paths) > 0


# --------------------------------------------------------------------------- MARS


@pytest.mark.parametrize(("tree_dir", "root_dir", "prefix"), [("", "", ""), ("MARS", "", "MARS/"),
                                                               ("MARS", "MARS", "")])
def test_mars_reads_train_query_gallery_from_the_info_tables(
    tmp_path: Path, tree_dir: str, root_dir: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    build_mars(tmp_path / tree_dir)
    with caplog.at_level(logging.DEBUG, logger="keyreid_stream.data.datasets"):
        split = read_split("mars", tmp_path / root_dir)
    assert keys(split.train) == ["bbox_train/0001C1T0001", "bbox_train/0001C2T0001", "bbox_train/0003C1T0001"]
    assert keys(split.query) == ["bbox_test/0002C1T0001", "bbox_test/0004C3T0001", "bbox_test/0005C4T0001"]
    assert keys(split.gallery) == ["bbox_test/0002C2T0001", "bbox_test/0002C2T0002", "bbox_test/0004C6T0001",
                                   "bbox_test/0000C1T0001"]
    assert [(t.person_id, t.camera_id) for t in split.gallery] == [(2, 1), (2, 1), (4, 5), (0, 0)]
    assert split.train_person_ids == (1, 3)
    assert (split.dataset, split.split, split.num_cameras) == ("mars", 0, 6)
    assert split.train[0].paths[0] == f"{prefix}bbox_train/0001/0001C1T0001F001.jpg"
    assert_paths_match_layouts(split)
    assert any("dropped 1 junk" in record.getMessage() for record in caplog.records)


def test_mars_summary_counts_ids_tracklets_and_frames(tmp_path: Path) -> None:
    build_mars(tmp_path)
    assert read_split("mars", tmp_path).summary() == {
        "train_ids": 2, "train_tracklets": 3, "train_frames": 17,
        "query_ids": 3, "query_tracklets": 3, "query_frames": 6,
        "gallery_ids": 3, "gallery_tracklets": 4, "gallery_frames": 8,
    }


def test_mars_drops_junk_and_distractor_queries_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_mars(tmp_path, query=(1, 6, 7))  # pid 2, the distractor and the junk row
    with caplog.at_level(logging.WARNING, logger="keyreid_stream.data.datasets"):
        split = read_split("mars", tmp_path)
    assert keys(split.query) == ["bbox_test/0002C1T0001"]
    assert "bbox_test/0000C1T0001" not in keys(split.gallery)
    assert "dropped 2 query tracklets" in caplog.text


def test_mars_info_may_sit_in_the_given_root_above_the_mars_folder(tmp_path: Path) -> None:
    build_mars(tmp_path / "MARS")
    (tmp_path / "MARS" / "info").rename(tmp_path / "info")
    assert len(read_split("mars", tmp_path).query) == 3


def test_mars_orders_frames_numerically_whatever_the_name_list_order(tmp_path: Path) -> None:
    build_mars(tmp_path, train=(MarsTrack(1, 1, 1, 12), MarsTrack(1, 2, 1, 2)))
    names_file = tmp_path / "info" / "train_name.txt"
    names = names_file.read_text(encoding="utf-8").split()
    names_file.write_text("\n".join(sorted(names[:12], reverse=True) + names[12:]), encoding="utf-8")
    split = read_split("mars", tmp_path)
    assert [path[-7:-4] for path in split.train[0].paths] == [f"{i:03d}" for i in range(1, 13)]
    assert_paths_match_layouts(split)


def _remove_query_file(root: Path) -> None:
    (root / "info" / "query_IDX.mat").unlink()


def _query_out_of_range(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "query_IDX.mat"), {"query_IDX": np.array([[1, 9]])})


def _end_beyond_names(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"), {"track_train_info": np.array([[1, 99, 1, 1]])})


def _end_before_start(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"), {"track_train_info": np.array([[3, 2, 1, 1]])})


def _wrong_camera(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"),
                     {"track_train_info": np.array([[1, 3, 1, 1], [4, 5, 1, 3]])})


def _row_spans_two_tracklets(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"), {"track_train_info": np.array([[1, 4, 1, 1]])})


def _wrong_variable(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "tracks_test_info.mat"), {"tracks": np.zeros((1, 4))})


def _wrong_shape(root: Path) -> None:
    scipy.io.savemat(str(root / "info" / "tracks_test_info.mat"), {"track_test_info": np.zeros((2, 3))})


@pytest.mark.parametrize(("damage", "expected"), [
    (_remove_query_file, "MARS metadata missing: expected train_name.txt, test_name.txt, tracks_train_info.mat"),
    (_remove_query_file, "MARS evaluation kit"),
    (_query_out_of_range, "query index 9 is outside the 8 rows of tracks_test_info.mat"),
    (_end_beyond_names, "row 1 [start=1, end=99, pid=1, camid=1]: expected 1 <= start <= end <= 19"),
    (_end_before_start, "row 1 [start=3, end=2, pid=1, camid=1]: expected 1 <= start <= end"),
    (_wrong_camera, "row 2 [start=4, end=5, pid=1, camid=3]: expected its first image to be named 0001C3T<n>F"),
    (_row_spans_two_tracklets, "expected only images of tracklet 0001C1T0001, found '0001C2T0001F001.jpg'"),
    (_wrong_variable, "holds no variable 'track_test_info'"),
    (_wrong_shape, "expected track_test_info rows [start, end, pid, camid], found shape (2, 3)"),
])
def test_mars_metadata_errors_say_what_was_expected_and_found(
    tmp_path: Path, damage: Callable[[Path], None], expected: str
) -> None:
    build_mars(tmp_path)
    damage(tmp_path)
    with pytest.raises(DatasetLayoutError) as error:
        read_split("mars", tmp_path)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- iLIDS-VID


@pytest.mark.parametrize(("root_dir", "prefix"), [("", "i-LIDS-VID/sequences/"), ("i-LIDS-VID", "sequences/"),
                                                  ("i-LIDS-VID/sequences", "")])
@pytest.mark.parametrize("split_index", [0, 9])
def test_ilidsvid_splits_follow_ls_set_first_half_test(
    tmp_path: Path, root_dir: str, prefix: str, split_index: int
) -> None:
    people = ilids_people(8)
    ls_set = build_ilidsvid(tmp_path, people)
    split = read_split("ilidsvid", tmp_path / root_dir, split_index)
    test_people = sorted(people[i - 1] for i in ls_set[split_index, :4])
    train_people = sorted(people[i - 1] for i in ls_set[split_index, 4:])
    assert keys(split.query) == [f"cam1/{p}" for p in test_people]
    assert keys(split.gallery) == [f"cam2/{p}" for p in test_people]
    assert keys(split.train) == [f"cam{c}/{p}" for c in (1, 2) for p in train_people]
    assert [t.person_id for t in split.query] == [people.index(p) + 1 for p in test_people]
    assert {t.camera_id for t in split.query} == {0} and {t.camera_id for t in split.gallery} == {1}
    assert split.num_cameras == 2 and split.query[0].paths[0].startswith(prefix)
    assert_paths_match_layouts(split)


def test_ilidsvid_errors(tmp_path: Path) -> None:
    people = ilids_people(4)
    build_ilidsvid(tmp_path, people)
    splits = tmp_path / "train-test people splits" / "train_test_splits_ilidsvid.mat"
    scipy.io.savemat(str(splits), {"ls_set": np.tile(np.array([1, 2, 3, 9]), (10, 1))})
    with pytest.raises(DatasetLayoutError, match=r"person indices 1\.\.9, expected 1\.\.4"):
        read_split("ilidsvid", tmp_path, 2)
    splits.unlink()
    with pytest.raises(DatasetLayoutError, match="iLIDS-VID splits missing: expected 'train-test people splits/"):
        read_split("ilidsvid", tmp_path)


# --------------------------------------------------------------------------- PRID-2011


def test_prid_generated_splits_are_deterministic_halves_of_the_eligible_people(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build_prid(tmp_path, PRID_FRAMES)
    with caplog.at_level(logging.INFO, logger="keyreid_stream.data.datasets"):
        splits = [read_split("prid", tmp_path, index) for index in range(split_count("prid"))]
    assert "drawing 10 random half/half splits of the 5 people" in caplog.text
    assert splits == [read_split("prid", str(tmp_path), index) for index in range(10)]
    for split in splits:
        train = sorted({t.key.split("/")[1] for t in split.train})
        test = [t.key.split("/")[1] for t in split.query]
        assert len(train) == 2 and len(test) == 3 and sorted(train + test) == PRID_ELIGIBLE
        assert test == sorted(test) and keys(split.gallery) == [f"cam_b/{p}" for p in test]
        assert [t.person_id for t in split.query] == [int(p[-4:]) for p in test]
        assert {t.camera_id for t in split.query} == {0} and {t.camera_id for t in split.gallery} == {1}
        assert_paths_match_layouts(split)
    assert len({tuple(keys(split.query)) for split in splits}) > 1


def test_prid_reads_its_splits_json_when_present(tmp_path: Path) -> None:
    splits = [{"train": ["person_0007", "person_0001"], "test": ["person_0008", "person_0002"]}] * 10
    build_prid(tmp_path, PRID_FRAMES, splits)
    split = read_split("prid", tmp_path / "prid_2011", 4)
    assert keys(split.train) == ["cam_a/person_0001", "cam_a/person_0007", "cam_b/person_0001",
                                 "cam_b/person_0007"]
    assert keys(split.query) == ["cam_a/person_0002", "cam_a/person_0008"]
    assert split.train[0].paths[0] == "multi_shot/cam_a/person_0001/0001.png"
    assert_paths_match_layouts(split)


@pytest.mark.parametrize(("splits", "expected"), [
    ([{"train": ["person_0004"], "test": ["person_0001"]}] * 10, "names 'person_0004', which is not a person"),
    ([{"train": ["person_0001"]}] * 10, "expected a list of 10 objects"),
    ([], "with split 0"),
])
def test_prid_bad_splits_json(tmp_path: Path, splits: list[dict[str, list[str]]], expected: str) -> None:
    build_prid(tmp_path, PRID_FRAMES, splits)
    with pytest.raises(DatasetLayoutError, match=expected):
        read_split("prid", tmp_path)


# --------------------------------------------------------------------------- folder


def test_folder_maps_names_to_ids_consistently_across_subsets(tmp_path: Path) -> None:
    touch(tmp_path, "train/carol/north/t1/2.jpg", "train/carol/north/t1/10.jpg",
          "query/alice/north/t1/a.png", "query/bob/south/1.png",
          "gallery/alice/south/t9/x.png", "gallery/bob/east/t1/y.png", "gallery/bob/east/t2/y.png")
    split = read_split("folder", tmp_path)
    people = {t.key: t.person_id for t in (*split.train, *split.query, *split.gallery)}
    assert people == {"train/carol/north/t1": 2, "query/alice/north/t1": 0, "query/bob/south": 1,
                      "gallery/alice/south/t9": 0, "gallery/bob/east/t1": 1, "gallery/bob/east/t2": 1}
    assert [t.camera_id for t in split.query] == [1, 2] and split.num_cameras == 3
    assert split.train[0].paths == ("train/carol/north/t1/2.jpg", "train/carol/north/t1/10.jpg")


def test_folder_uses_numeric_person_names_as_ids_and_train_is_optional(tmp_path: Path) -> None:
    touch(tmp_path, "query/0007/c1/1.jpg", "gallery/0007/c2/1.jpg", "gallery/12/c2/1.jpg")
    split = read_split("folder", tmp_path)
    assert split.train == () and [t.person_id for t in split.gallery] == [7, 12]


@pytest.mark.parametrize(("files", "expected"), [
    (["train/a/c/1.jpg", "gallery/a/c/1.jpg"], r"expected train/ \(optional\), query/ and gallery/.*query/ missing"),
    (["query/a/c/1.jpg", "gallery/a/1.jpg"], r"expected images in gallery/<person>/<camera>/\[<tracklet>/\], "
                                             r"found 1 in gallery/a/"),
    (["query/a/c/1.jpg", "gallery/readme.txt"], r"no images in gallery/<person>/<camera>/"),
])
def test_folder_layout_errors(tmp_path: Path, files: list[str], expected: str) -> None:
    touch(tmp_path, *files)
    with pytest.raises(DatasetLayoutError, match=expected):
        read_split("folder", tmp_path)


# --------------------------------------------------------------------------- names, splits, roots


@pytest.mark.parametrize(("dataset", "split", "expected"), [
    ("marz", 0, r"unknown dataset 'marz'; did you mean 'mars'\?"),
    ("mars", 1, r"mars has splits 0\.\.0, not 1"),
    ("ilidsvid", 10, r"ilidsvid has splits 0\.\.9, not 10"),
    ("prid", -1, r"prid has splits 0\.\.9, not -1"),
])
def test_unknown_dataset_and_split_out_of_range(tmp_path: Path, dataset: str, split: int, expected: str) -> None:
    with pytest.raises(DatasetLayoutError, match=expected):
        read_split(dataset, tmp_path, split)


def test_split_counts_and_missing_roots(tmp_path: Path) -> None:
    assert {name: split_count(name.upper()) for name in SPLIT_COUNTS} == SPLIT_COUNTS
    with pytest.raises(DatasetLayoutError, match="is not an existing directory"):
        read_split("mars", tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match="no MARS tree under .*expected bbox_train/"):
        read_split("mars", tmp_path)


def test_helper_names_frames_like_mars() -> None:
    assert MarsTrack(-1, 3, 2, 2).names() == ["00-1C3T0002F001.jpg", "00-1C3T0002F002.jpg"]
