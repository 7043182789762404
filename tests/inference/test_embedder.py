"""The worker's descriptors are the evaluation's descriptors: same clips, same transform, same model pass."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keyreid_stream.contracts import Tracklet
from keyreid_stream.data.datasets import VideoTracklet
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.data.video import KeypointSource, TestClips
from keyreid_stream.eval.features import extract_features
from keyreid_stream.inference.embedder import TrackletEmbedder, crop_keypoints
from keyreid_stream.inference.loading import RANDOM_VERSION, EmbeddingModel, load_embedding_model
from keyreid_stream.keypoints.store import KeypointStore
from keyreid_stream.model.checkpoint import CheckpointError, save_checkpoint
from keyreid_stream.model.registry import build_model


def _tracklet(camera: str, track_id: int, length: int, seed: int) -> Tracklet:
    rng = np.random.default_rng(seed)
    crops, boxes, points = [], [], np.zeros((length, 17, 3), np.float32)
    for t in range(length):
        height, width = int(rng.integers(40, 90)), int(rng.integers(20, 40))
        x, y = int(rng.integers(0, 100)), int(rng.integers(0, 50))
        crops.append(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        boxes.append([x, y, x + width, y + height])
        points[t, :, 0] = x + rng.integers(0, width, 17)  # integers: exact in the store's float16
        points[t, :, 1] = y + rng.integers(0, height, 17)
        points[t, :, 2] = rng.choice([0.0, 1.0], 17, p=[0.2, 0.8])
    points[points[..., 2] == 0] = 0
    return Tracklet.create(camera, track_id, np.arange(length), np.arange(length) / 10.0, boxes, points, crops=crops)


def _model(num_cameras: int = 0, arch: str = "keyreid_test") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, 0, num_cameras).eval()


def _evaluation_descriptors(model: torch.nn.Module, tracklets: list[Tracklet], root: Path, max_clips: int,
                            mean: tuple = (0.5, 0.5, 0.5), std: tuple = (0.5, 0.5, 0.5)) -> np.ndarray:
    """The same tracklets written as a dataset (PNG frames, keypoint store) through the evaluation code."""
    store = KeypointStore.create(root / "store", dataset="test", backend="test")
    videos = []
    for tracklet in tracklets:
        key = f"{tracklet.camera_id}-{tracklet.track_id}"
        paths = []
        for t, crop in enumerate(tracklet.crops):
            path = f"{key}/{t:04d}.png"
            (root / key).mkdir(exist_ok=True)
            cv2.imwrite(str(root / path), crop)
            paths.append(path)
        store.append([key] * len(paths), paths, crop_keypoints(tracklet), np.zeros(len(paths), np.uint8))
        videos.append(VideoTracklet(key, tuple(paths), person_id=1, camera_id=0))
    transform = ClipTransform((64, 32), train=False, mean=mean, std=std)
    dataset = TestClips(root, videos, KeypointSource("store", store), transform, clip_length=4, max_clips=max_clips)
    return extract_features(model, dataset, batch_clips=5)


@pytest.mark.parametrize(("arch", "max_clips"), [("keyreid_test", 8), ("keyreid_test", 2), ("rapa_test", 8)])
def test_worker_descriptors_equal_evaluation_descriptors(tmp_path: Path, arch: str, max_clips: int) -> None:
    model = _model(arch=arch)
    tracklets = [_tracklet("cam1", 1, 9, 0), _tracklet("cam2", 7, 3, 1), _tracklet("cam1", 2, 16, 2)]
    embedder = TrackletEmbedder(EmbeddingModel(model, arch, "v"), device="cpu", batch_clips=5,
                                max_clips=max_clips)
    worker = embedder.embed(tracklets)
    expected = _evaluation_descriptors(model, tracklets, tmp_path, max_clips)
    assert worker.shape == (3, model.descriptor_dim) and worker.dtype == np.float32
    np.testing.assert_allclose(worker, expected, rtol=1e-4, atol=1e-5)
    alone = embedder.embed(tracklets[1:2])  # batching does not change a descriptor
    np.testing.assert_allclose(alone[0], worker[1], rtol=1e-4, atol=1e-5)


def test_camera_indices_reach_the_model() -> None:
    model = _model(num_cameras=3)
    with torch.no_grad():
        model.backbone.camera_embed.normal_()
    loaded = EmbeddingModel(model, "keyreid_test", "v")
    tracklet = _tracklet("cam1", 1, 4, 0)
    first = TrackletEmbedder(loaded, device="cpu", camera_indices={"cam1": 0}).embed([tracklet])
    second = TrackletEmbedder(loaded, device="cpu", camera_indices={"cam1": 2}).embed([tracklet])
    assert not np.allclose(first, second)
    with pytest.raises(ValueError, match="camera_index 3"):
        TrackletEmbedder(loaded, device="cpu", camera_indices={"cam1": 3})


def test_empty_and_crop_less_tracklets() -> None:
    embedder = TrackletEmbedder(EmbeddingModel(_model(), "keyreid_test", "v"), device="cpu")
    assert embedder.embed([]).shape == (0, embedder.descriptor_dim)
    bare = Tracklet.create("cam1", 1, [0], [0.0], [[0, 0, 10, 20]], np.zeros((1, 17, 3)))
    with pytest.raises(ValueError, match="no crops"):
        embedder.embed([bare])


def test_load_embedding_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        random = load_embedding_model("keyreid_test")
    assert random.version == RANDOM_VERSION and "RANDOM weights" in caplog.text
    path = save_checkpoint(_model(), tmp_path / "model.pt")
    loaded = load_embedding_model("ignored_arch", str(path))
    assert loaded.name == "keyreid_test" and loaded.version.startswith("sha256:")
    assert load_embedding_model("keyreid_test", str(path)).version == loaded.version  # stable
    with pytest.raises(FileNotFoundError, match="not found"):
        load_embedding_model("keyreid_test", str(tmp_path / "missing.pt"))


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_crops_are_normalised_as_the_checkpoint_was_trained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``train`` records its normalisation in the checkpoint; the worker uses it unless told otherwise."""
    path = save_checkpoint(_model(arch="rapa_test"), tmp_path / "rapa.pt",
                           extra={"input_mean": list(IMAGENET_MEAN), "input_std": list(IMAGENET_STD)})
    loaded = load_embedding_model("", str(path))
    tracklets = [_tracklet("cam1", 1, 6, 0), _tracklet("cam2", 2, 5, 1)]
    embedder = TrackletEmbedder(loaded, device="cpu")
    assert (embedder.mean, embedder.std) == (IMAGENET_MEAN, IMAGENET_STD)
    expected = _evaluation_descriptors(loaded.model, tracklets, tmp_path, 8, IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(embedder.embed(tracklets), expected, rtol=1e-4, atol=1e-5)
    with caplog.at_level(logging.WARNING):
        forced = TrackletEmbedder(loaded, device="cpu", mean=(0.5, 0.5, 0.5))
    assert forced.mean == (0.5, 0.5, 0.5) and forced.std == IMAGENET_STD and "differs from the mean" in caplog.text
    assert TrackletEmbedder(EmbeddingModel(_model(), "keyreid_test", "v"), device="cpu").mean == (0.5, 0.5, 0.5)


def test_rapa_has_no_authors_checkpoint_format(tmp_path: Path) -> None:
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="rapa_test has no other checkpoint format"):
        load_embedding_model("rapa_test", str(tmp_path / "foreign.pth"))
