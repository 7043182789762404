"""The synthetic MARS-layout dataset: it reads back like MARS, its keypoints are right, and it is not trivial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from keyreid_stream.data.datasets import ReIDSplit, VideoTracklet, read_split
from keyreid_stream.data.layouts import DatasetLayoutError, list_tracklets
from keyreid_stream.data.synthetic import SyntheticSpec, SyntheticSummary, write_synthetic_mars
from keyreid_stream.eval import evaluate_rank
from keyreid_stream.keypoints.store import KeypointStore

TINY = SyntheticSpec(train_ids=2, test_ids=2, distractor_tracklets=1, junk_tracklets=1, frames=(2, 3),
                     image_size=(64, 32), occlusion_rate=0.5)
NOSE, LEFT_EAR, RIGHT_EAR, LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 0, 3, 4, 5, 6, 11, 12


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticSummary, ReIDSplit, dict[str, Any]]:
    summary = write_synthetic_mars(tmp_path_factory.mktemp("synthetic"))
    marker = json.loads((summary.root / "synthetic.json").read_text(encoding="utf-8"))
    return summary, read_split("mars", summary.root), marker


def all_tracklets(split: ReIDSplit) -> tuple[VideoTracklet, ...]:
    return (*split.train, *split.query, *split.gallery)


def test_reads_back_as_mars_with_the_spec_counts(generated: tuple[SyntheticSummary, ReIDSplit, Any]) -> None:
    summary, split, _ = generated
    spec = SyntheticSpec()
    assert (len(split.train), len(split.query), len(split.gallery)) == (
        summary.train_tracklets, summary.query_tracklets, summary.gallery_tracklets)
    assert split.train_person_ids == tuple(range(1, spec.train_ids + 1))
    assert {t.person_id for t in split.query} == set(range(spec.train_ids + 1, spec.train_ids + spec.test_ids + 1))
    assert sum(t.person_id == 0 for t in split.gallery) == spec.distractor_tracklets
    assert split.num_cameras == spec.cameras
    assert all(spec.frames[0] <= len(t) <= spec.frames[1] for t in all_tracklets(split))
    for query in split.query:  # a true match in another camera
        assert any(g.person_id == query.person_id and g.camera_id != query.camera_id for g in split.gallery)
    listed = {t.key: t.paths for t in list_tracklets("mars", summary.root)}
    assert all(listed[t.key] == t.paths for t in all_tracklets(split))
    assert sum(len(paths) for paths in listed.values()) == summary.frames  # junk included
    assert sum(key.split("/")[1].startswith("00-1") for key in listed) == spec.junk_tracklets
    image = cv2.imread(str(summary.root / split.query[0].paths[0]))
    assert image.shape == (*spec.image_size, 3)


def test_the_keypoint_store_covers_every_frame(generated: tuple[SyntheticSummary, ReIDSplit, Any]) -> None:
    summary, _, _ = generated
    store = KeypointStore.open(summary.keypoint_store)
    tracklets = list_tracklets("mars", summary.root)
    assert (store.manifest["dataset"], store.manifest["backend"]) == ("mars", "synthetic")
    assert store.tracklet_keys() == {t.key for t in tracklets}
    assert len(store) == summary.frames == store.summary().frames
    assert store.summary().no_person == store.summary().unreadable == 0
    assert all(path in store for t in tracklets for path in t.paths)


def test_keypoints_lie_inside_the_image_and_hidden_ones_are_zero(
    generated: tuple[SyntheticSummary, ReIDSplit, Any]
) -> None:
    summary, split, _ = generated
    height, width = SyntheticSpec().image_size
    points = KeypointStore.open(summary.keypoint_store).get_many(p for t in all_tracklets(split) for p in t.paths)
    shown = points[..., 2] > 0
    assert 0.6 < shown.mean() < 0.97  # self-occluded face joints and occluders hide some
    assert (points[shown][:, 0] >= 0).all() and (points[shown][:, 0] <= width - 1).all()
    assert (points[shown][:, 1] >= 0).all() and (points[shown][:, 1] <= height - 1).all()
    assert (points[~shown] == 0).all()


@pytest.mark.parametrize(("view", "rule"), [
    ("front", "left shoulder on the image's right"),
    ("back", "left shoulder on the image's left, no face"),
    ("left", "facing left: nose left of the left ear, right ear hidden"),
    ("right", "facing right: nose right of the right ear, left ear hidden"),
])
def test_left_and_right_joints_stay_anatomically_right_in_every_view(
    generated: tuple[SyntheticSummary, ReIDSplit, dict[str, Any]], view: str, rule: str
) -> None:
    summary, split, marker = generated
    store = KeypointStore.open(summary.keypoint_store)
    keys = [t for t in all_tracklets(split) if marker["tracklets"][t.key]["view"] == view]
    points = store.get_many(p for t in keys for p in t.paths)
    x, shown = points[..., 0], points[..., 2] > 0
    if view in ("front", "back"):
        both = shown[:, LEFT_SHOULDER] & shown[:, RIGHT_SHOULDER] & shown[:, LEFT_HIP] & shown[:, RIGHT_HIP]
        sign = 1 if view == "front" else -1
        assert both.sum() > 20
        assert (sign * (x[both, LEFT_SHOULDER] - x[both, RIGHT_SHOULDER]) > 0).all(), rule
        assert (sign * (x[both, LEFT_HIP] - x[both, RIGHT_HIP]) > 0).all(), rule
        if view == "back":
            assert not shown[:, NOSE].any(), rule
    else:
        near, far = (LEFT_EAR, RIGHT_EAR) if view == "left" else (RIGHT_EAR, LEFT_EAR)
        both = shown[:, NOSE] & shown[:, near]
        sign = -1 if view == "left" else 1
        assert both.sum() > 20 and not shown[:, far].any(), rule
        assert (sign * (x[both, NOSE] - x[both, near]) > 0).all(), rule


def torso_colour(root: Path, store: KeypointStore, tracklet: VideoTracklet) -> np.ndarray:
    """Median BGR over the frames of a 3x3 patch half-way between the shoulders and the hips."""
    samples = []
    for path, joints in zip(tracklet.paths, store.get_many(tracklet.paths)):
        torso = joints[[LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP]]
        if (torso[:, 2] > 0).all():
            col, row = np.round(torso[:, :2].mean(axis=0)).astype(int)
            samples.append(cv2.imread(str(root / path))[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3))
    return np.median(np.concatenate(samples), axis=0)


def test_tracklets_of_one_person_differ_pixelwise_but_share_clothing_colours(
    generated: tuple[SyntheticSummary, ReIDSplit, dict[str, Any]]
) -> None:
    summary, split, marker = generated
    store = KeypointStore.open(summary.keypoint_store)
    plain = [int(pid) for pid, look in marker["identities"].items()
             if look["texture"] == "plain" and look["bag"] is None]
    checked = 0
    for pid in plain:  # seen from the front or the back (from a side an arm crosses the torso)
        tracklets = [t for t in all_tracklets(split) if t.person_id == pid
                     and marker["tracklets"][t.key]["view"] in ("front", "back")]
        pairs = [(a, b) for a in tracklets for b in tracklets if a.camera_id < b.camera_id]
        if not pairs:
            continue
        first, second = pairs[0]
        a, b = (cv2.imread(str(summary.root / t.paths[0])).astype(np.int16) for t in (first, second))
        assert np.abs(a - b).mean() > 10
        upper = np.array(marker["identities"][str(pid)]["upper"])
        for tracklet in (first, second):
            assert np.abs(torso_colour(summary.root, store, tracklet) - upper).max() < 25
        checked += 1
    assert checked >= 3


def colour_histogram(root: Path, tracklet: VideoTracklet) -> np.ndarray:
    """Mean over the frames of an 8x8x8 BGR histogram, L2-normalised."""
    histograms = []
    for path in tracklet.paths:
        histogram = cv2.calcHist([cv2.imread(str(root / path))], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3)
        histograms.append(histogram.ravel() / histogram.sum())
    mean = np.mean(histograms, axis=0)
    return mean / np.linalg.norm(mean)


def test_a_colour_histogram_baseline_is_well_above_chance_and_far_from_perfect(
    generated: tuple[SyntheticSummary, ReIDSplit, Any]
) -> None:
    summary, split, _ = generated
    query = np.stack([colour_histogram(summary.root, t) for t in split.query])
    gallery = np.stack([colour_histogram(summary.root, t) for t in split.gallery])
    ids = {name: (np.array([t.person_id for t in subset]), np.array([t.camera_id for t in subset]))
           for name, subset in (("query", split.query), ("gallery", split.gallery))}
    args = (*ids["query"][:1], *ids["gallery"][:1], ids["query"][1], ids["gallery"][1])
    result = evaluate_rank(1.0 - query @ gallery.T, *args)
    rng = np.random.default_rng(0)
    chance = np.mean([evaluate_rank(rng.random((len(query), len(gallery))), *args).mAP for _ in range(20)])
    assert 0.05 < chance < 0.15
    assert 0.18 < result.mAP < 0.6  # 0.37 on the default spec, 0.23-0.35 for seeds 1-3; chance 0.09
    assert result.mAP > 2 * chance


def test_the_same_spec_gives_the_same_bytes(tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for root, spec in zip(roots, (TINY, TINY, SyntheticSpec(**{**TINY.__dict__, "seed": 1}))):
        write_synthetic_mars(root, spec)

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and "keypoints-" not in str(p.relative_to(root))}

    assert files(roots[0]) == files(roots[1])
    assert files(roots[0]) != files(roots[2])
    paths = [p for t in list_tracklets("mars", roots[0]) for p in t.paths]
    stores = [KeypointStore.open(root / "keypoints-synthetic").get_many(paths) for root in roots[:2]]
    np.testing.assert_array_equal(*stores)


def test_rewrites_a_previous_synthetic_dataset_but_refuses_other_folders(tmp_path: Path) -> None:
    first = write_synthetic_mars(tmp_path / "data", TINY)
    again = write_synthetic_mars(tmp_path / "data", TINY)
    assert (again.frames, len(KeypointStore.open(again.keypoint_store))) == (first.frames, first.frames)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DatasetLayoutError, match=r"must be a new or empty folder .*found \['notes.txt'\]"):
        write_synthetic_mars(tmp_path / "other", TINY)
    assert (tmp_path / "other" / "notes.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("changes", [{"cameras_per_id": (1, 2)}, {"cameras": 2, "cameras_per_id": (2, 3)},
                                     {"frames": (5, 4)}, {"occlusion_rate": 1.5}, {"train_ids": 0}])
def test_spec_values_out_of_range_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="SyntheticSpec needs"):
        SyntheticSpec(**changes)


@pytest.mark.parametrize("previous", [False, True])
def test_an_interrupted_run_leaves_no_half_dataset(tmp_path: Path, previous: bool) -> None:
    """``data synth`` killed while writing: the output folder holds nothing (or the previous complete dataset),
    never a half dataset with its marker; the next run cleans up and completes."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "data"
    if previous:
        write_synthetic_mars(root, TINY)
        before = len(list_tracklets("mars", root))
    command = [sys.executable, "-m", "keyreid_stream", "data", "synth", "--out", str(root), "--train-ids", "40",
               "--test-ids", "20"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if any(len(list(p.glob("bbox_train/*"))) >= 5 for p in tmp_path.glob(".data.partial-*")):
                break  # well into writing the frames
            time.sleep(0.02)
        assert process.poll() is None, "data synth ended before it could be interrupted"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    if previous:
        assert json.loads((root / "synthetic.json").read_text())["spec"]["train_ids"] == TINY.train_ids
        assert len(list_tracklets("mars", root)) == before
    else:
        assert not root.exists()
    assert list(tmp_path.glob(".data.partial-*"))  # what the killed run wrote stays aside
    again = write_synthetic_mars(root, TINY)
    assert not list(tmp_path.glob(".data.partial-*")) and (root / "synthetic.json").is_file()
    assert again.root == root and again.keypoint_store == root / "keypoints-synthetic"
    assert len(KeypointStore.open(again.keypoint_store)) == again.frames
