"""Training clips and test tracklets read from disk, with keypoints from a store, the prior or nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keyreid_stream.data.datasets import VideoTracklet
from keyreid_stream.data.sampling import SampledItem
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.data.video import (
    FrameReadError,
    KeypointSource,
    TestClips,
    TrainClips,
    collate_test,
    collate_train,
)
from keyreid_stream.keypoints.store import KeypointStore


def _tracklet(root: Path, name: str, frames: int, person: int = 1, camera: int = 0) -> VideoTracklet:
    paths = []
    for index in range(frames):
        path = f"{name}/{index:03d}.jpg"
        (root / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / path), np.full((32, 16, 3), 10 * index, np.uint8))
        paths.append(path)
    return VideoTracklet(name, tuple(paths), person, camera)


def _store(root: Path, tracklets: list[VideoTracklet]) -> KeypointStore:
    store = KeypointStore.create(root / "kp", dataset="folder", backend="test")
    paths = [p for t in tracklets for p in t.paths]
    keypoints = np.zeros((len(paths), 17, 3), np.float32)
    keypoints[:, :, 0], keypoints[:, :, 1], keypoints[:, :, 2] = 8.0, np.arange(len(paths))[:, None] % 32, 0.9
    store.append([t.key for t in tracklets for _ in t.paths], paths, keypoints, np.zeros(len(paths), np.uint8))
    return store


def test_train_clips_follow_the_item_seed(tmp_path: Path) -> None:
    tracklets = [_tracklet(tmp_path, "a", 9), _tracklet(tmp_path, "b", 3, person=2, camera=1)]
    source = KeypointSource("store", _store(tmp_path, tracklets))
    dataset = TrainClips(tmp_path, tracklets, [0, 1], source, ClipTransform((64, 32), train=True), 4)
    first, again, other = dataset[SampledItem(0, 7)], dataset[SampledItem(0, 7)], dataset[SampledItem(0, 8)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    batch = collate_train([dataset[SampledItem(0, 1)], dataset[SampledItem(1, 2)]])
    assert batch.frames.shape == (2, 4, 3, 64, 32) and batch.keypoints.shape == (2, 4, 17, 3)
    assert batch.labels.tolist() == [0, 1] and batch.cameras.tolist() == [0, 1] and batch.erased.dtype == torch.bool


def test_test_clips_cover_the_tracklet_in_order(tmp_path: Path) -> None:
    tracklets = [_tracklet(tmp_path, "a", 10), _tracklet(tmp_path, "b", 2, camera=2)]
    transform = ClipTransform((32, 16), train=False)
    dataset = TestClips(tmp_path, tracklets, KeypointSource("prior"), transform, 4, max_clips=None)
    assert dataset.clip_counts == [3, 1]
    frames, keypoints, cameras = dataset[0]
    assert frames.shape == (3, 4, 3, 32, 16) and cameras.tolist() == [0, 0, 0]
    values = frames[:, :, 0, 0, 0].flatten()  # frame i is filled with 10 * i
    expected = (torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]) * 10 / 255.0 - 0.5) / 0.5
    torch.testing.assert_close(values, expected.float(), atol=0.02, rtol=0)
    assert (keypoints[..., 2] == 0.5).all()  # the prior layout
    batch = collate_test([dataset[0], dataset[1]])
    assert batch.frames.shape[0] == 4 and batch.clip_counts == [3, 1] and batch.cameras.tolist() == [0, 0, 0, 2]


def test_unreadable_frames_are_replaced_by_their_neighbours(tmp_path: Path, caplog) -> None:
    tracklet = _tracklet(tmp_path, "a", 4)
    (tmp_path / tracklet.paths[1]).write_bytes(b"broken")
    dataset = TestClips(tmp_path, [tracklet], KeypointSource("none"), ClipTransform((32, 16), train=False), 4)
    frames, keypoints, _ = dataset[0]
    assert torch.equal(frames[0, 1], frames[0, 0]) and (keypoints == 0).all()
    assert "cannot read frame" in caplog.text
    for path in tracklet.paths:
        (tmp_path / path).write_bytes(b"")
    with pytest.raises(FrameReadError, match="none of the 4 frames"):
        dataset[0]


def test_keypoints_missing_from_the_store(tmp_path: Path) -> None:
    tracklet = _tracklet(tmp_path, "a", 2)
    store = _store(tmp_path, [_tracklet(tmp_path, "other", 1)])
    transform = ClipTransform((32, 16), train=False)
    with pytest.raises(KeyError, match="not in"):
        TestClips(tmp_path, [tracklet], KeypointSource("store", store), transform, 2)[0]
    _, keypoints, _ = TestClips(tmp_path, [tracklet], KeypointSource("store", store, missing="zeros"),
                                transform, 2)[0]
    assert (keypoints == 0).all()


def test_keypoint_source_opens_a_store_by_backend_name(tmp_path: Path) -> None:
    (tmp_path / "keypoints-pifpaf").mkdir()
    KeypointStore.create(tmp_path / "keypoints-pifpaf", dataset="mars", backend="pifpaf")
    assert KeypointSource.open("pifpaf", tmp_path).kind == "store"
    assert KeypointSource.open(str(tmp_path / "keypoints-pifpaf"), "/elsewhere").kind == "store"
    assert KeypointSource.open("prior", tmp_path).kind == "prior"
    with pytest.raises(ValueError, match="kind must be"):
        KeypointSource("bogus")


def test_a_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    from keyreid_stream.keypoints.store import StoreError

    with pytest.raises(StoreError, match="keypoints extract"):
        KeypointSource.open("pifpaf", tmp_path)
