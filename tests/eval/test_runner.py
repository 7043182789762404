"""Tracklet descriptors (mean over dense clips, batched across tracklets) and the split evaluation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from keyreid_stream.data.datasets import VideoTracklet
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.data.video import KeypointSource, TestClips
from keyreid_stream.eval.features import extract_features
from keyreid_stream.eval.runner import evaluate_split
from keyreid_stream.model.registry import build_model


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[VideoTracklet]]:
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    items = []
    for n, (frames, person, camera) in enumerate([(3, 1, 0), (9, 1, 1), (5, 2, 0), (4, 2, 1), (13, 3, 1)]):
        paths = []
        colour = rng.integers(0, 255, size=3)
        for f in range(frames):
            path = f"t{n}/{f}.png"
            (root / f"t{n}").mkdir(exist_ok=True)
            image = np.clip(colour + rng.normal(0, 20, size=(64, 32, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / path), image)
            paths.append(path)
        items.append(VideoTracklet(f"t{n}", tuple(paths), person, camera))
    return root, items


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("keyreid_test", 0, 2).eval()


def _dataset(root: Path, items: list[VideoTracklet]) -> TestClips:
    return TestClips(root, items, KeypointSource("prior"), ClipTransform((64, 32), train=False), 4, max_clips=None)


@pytest.mark.parametrize("batch_clips", [1, 3, 64])
def test_descriptors_do_not_depend_on_batching(tracklets, model, batch_clips: int) -> None:
    root, items = tracklets
    batched = extract_features(model, _dataset(root, items), batch_clips=batch_clips)
    alone = np.stack([extract_features(model, _dataset(root, [item]), batch_clips=64)[0] for item in items])
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)
    assert batched.shape == (5, model.descriptor_dim) and batched.dtype == np.float32


def test_descriptor_is_the_mean_over_clips(tracklets, model) -> None:
    root, items = tracklets
    frames, keypoints, cameras = _dataset(root, [items[1]])[0]
    with torch.no_grad():
        expected = model(frames, keypoints, cameras).descriptor.mean(dim=0).numpy()
    np.testing.assert_allclose(extract_features(model, _dataset(root, [items[1]]))[0], expected, rtol=1e-4,
                               atol=1e-5)
    assert not model.training


def test_evaluate_split_reports_each_protocol(tracklets, model) -> None:
    root, items = tracklets
    result = evaluate_split(model, items[:3:2], items[1::2] + items[4:], root=root, keypoints=KeypointSource("prior"),
                            image_size=(64, 32), clip_length=4, max_clips=None, protocol="both", rerank=True)
    assert result.distmat.shape == (2, 3)
    assert set(result.as_dict()) == {"standard", "official", "reranked"}
    assert result.standard.num_valid_queries == 2
    with pytest.raises(ValueError, match="protocol"):
        evaluate_split(model, items[:1], items[1:], root=root, keypoints=KeypointSource("prior"),
                       image_size=(64, 32), clip_length=4, max_clips=None, protocol="bogus")


@pytest.mark.parametrize(("dataset", "synthetic", "expected"), [
    ("mars", False, "MARS"), ("ilidsvid", False, "iLIDS-VID"), ("prid", False, "PRID-2011"),
    ("folder", False, "folder my-set"), ("mars", True, "synthetic (MARS layout)"),
])
def test_dataset_title_names_the_real_data(tmp_path: Path, dataset: str, synthetic: bool, expected: str) -> None:
    from keyreid_stream.data.synthetic import MARKER
    from keyreid_stream.eval.runner import dataset_title

    root = tmp_path / "my-set"
    root.mkdir()
    if synthetic:
        (root / MARKER).write_text("{}")
    assert dataset_title(dataset, root) == expected
