"""The keypoint store: round trip at float16, whole-tracklet shards, resume bookkeeping, damaged stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from keyreid_stream.keypoints.store import KeypointStore, StoreError


def _keypoints(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 256, size=(count, 17, 3)).astype(np.float32)
    points[..., 2] = rng.uniform(0, 1, size=(count, 17))
    return points


def test_round_trip_keeps_float16_precision_and_status(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path / "kp", dataset="mars", backend="prior")
    points = _keypoints(5, seed=0)
    paths = [f"bbox_train/0001/0001C1T0001F{i:03d}.jpg" for i in range(5)]
    store.append(["t1"] * 5, paths, points, np.array([0, 0, 1, 2, 0]))
    reopened = KeypointStore.open(tmp_path / "kp")
    assert len(reopened) == 5 and paths[3] in reopened and "other.jpg" not in reopened
    np.testing.assert_allclose(reopened.get_many(paths), points, rtol=1e-3, atol=0.125)
    assert reopened[paths[0]].dtype == np.float32 and reopened[paths[0]].shape == (17, 3)
    assert [reopened.status_of(p) for p in paths[1:4]] == ["found", "no_person", "unreadable"]
    assert reopened.tracklet_keys() == {"t1"}
    shard = np.load(next((tmp_path / "kp").glob("shard-*.npz")), allow_pickle=False)
    assert shard["keypoints"].dtype == np.float16  # 102 bytes a frame on disk


def test_appends_accumulate_in_numbered_shards(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="prid", backend="pifpaf")
    for index in range(3):
        store.append([f"cam_a/person_{index}"] * 2, [f"{index}/a.png", f"{index}/b.png"], _keypoints(2, index),
                     np.zeros(2))
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == [f"shard-00000{i}.npz" for i in (1, 2, 3)]
    reopened = KeypointStore.open(tmp_path)
    assert len(reopened) == 6 and len(reopened.tracklet_keys()) == 3
    np.testing.assert_allclose(reopened["2/b.png"], _keypoints(2, 2)[1], rtol=1e-3, atol=0.125)


def test_missing_paths_raise_or_read_as_no_joints(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    store.append(["t"], ["a.jpg"], _keypoints(1, 0), np.zeros(1))
    with pytest.raises(KeyError, match="1 of 2 frames are not in"):
        store.get_many(["a.jpg", "b.jpg"])
    both = store.get_many(["a.jpg", "b.jpg"], missing="zeros")
    assert both[0].any() and not both[1].any()


def test_summary_counts_frames_by_status(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    points = np.zeros((4, 17, 3), np.float32)
    points[0, :, 2], points[1, :, 2] = 0.5, 0.75
    store.append(["a", "a", "b", "b"], list("wxyz"), points, np.array([0, 0, 1, 2]))
    summary = store.summary()
    assert (summary.frames, summary.tracklets, summary.no_person, summary.unreadable) == (4, 2, 1, 1)
    assert summary.mean_confidence == pytest.approx(0.625)


def test_non_ascii_paths_round_trip(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="folder", backend="prior")
    store.append(["straße"], ["straße/bild_ä.png"], _keypoints(1, 3), np.zeros(1))
    assert "straße/bild_ä.png" in KeypointStore.open(tmp_path)


@pytest.mark.parametrize(("identity", "message"), [
    ({"dataset": "prid", "backend": "prior"}, "dataset 'mars', not 'prid'"),
    ({"dataset": "mars", "backend": "pifpaf"}, "backend 'prior', not 'pifpaf'"),
])
def test_reopening_for_another_dataset_or_backend_is_refused(tmp_path: Path, identity: dict, message: str) -> None:
    KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    with pytest.raises(StoreError, match=message):
        KeypointStore.create(tmp_path, **identity)


def test_a_folder_that_is_not_a_store_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a keypoint store"):
        KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    with pytest.raises(StoreError, match="no store.json"):
        KeypointStore.open(tmp_path)


@pytest.mark.parametrize(("manifest", "message"), [
    ("{not json", "unreadable"),
    (json.dumps({"format": "something/else", "version": 1}), "not a keyreid-stream keypoint store"),
    (json.dumps({"format": "keyreid-stream/keypoints", "version": 99}), "store version 99"),
])
def test_bad_manifests_are_explained(tmp_path: Path, manifest: str, message: str) -> None:
    (tmp_path / "store.json").write_text(manifest)
    with pytest.raises(StoreError, match=message):
        KeypointStore.open(tmp_path)


def test_a_damaged_shard_is_named(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    store.append(["t"], ["a.jpg"], _keypoints(1, 0), np.zeros(1))
    (tmp_path / "shard-000001.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(StoreError, match="shard-000001.npz is damaged"):
        KeypointStore.open(tmp_path)


def test_a_half_written_shard_from_an_interrupted_writer_is_discarded(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    store.append(["t"], ["a.jpg"], _keypoints(1, 0), np.zeros(1))
    (tmp_path / "tmpab12cd.tmp").write_bytes(b"partial")
    reopened = KeypointStore.open(tmp_path)
    assert len(reopened) == 1 and not list(tmp_path.glob("*.tmp"))


def test_append_checks_its_arrays(tmp_path: Path) -> None:
    store = KeypointStore.create(tmp_path, dataset="mars", backend="prior")
    with pytest.raises(ValueError, match="one tracklet key"):
        store.append(["t"], ["a.jpg", "b.jpg"], _keypoints(2, 0), np.zeros(2))
    assert len(store) == 0 and not list(tmp_path.glob("shard-*"))
