"""Evaluate a model on a query/gallery split, and write the PNG reports.

The standard protocol is the one of :func:`~keyreid_stream.eval.rank.evaluate_rank` (one camera id per tracklet,
same-identity-same-camera gallery entries removed). ``protocol="official"`` or ``"both"`` adds the result under
the camera ids that the authors' code ends up comparing (:func:`~keyreid_stream.eval.rank.official_camera_ids`),
so both numbers can be reported side by side; ``rerank`` adds k-reciprocal re-ranking.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from keyreid_stream.data.datasets import VideoTracklet
from keyreid_stream.data.synthetic import MARKER as SYNTHETIC_MARKER
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.data.video import KeypointSource, TestClips
from keyreid_stream.eval.distance import pairwise_distances
from keyreid_stream.eval.features import extract_features
from keyreid_stream.eval.rank import RankResult, evaluate_rank, official_camera_ids
from keyreid_stream.eval.rerank import re_ranking
from keyreid_stream.keypoints.heatmaps import PART_NAMES
from keyreid_stream.keypoints.regions import REGION_NAMES

__all__ = ["SplitEvaluation", "dataset_title", "evaluate_split", "query_counts", "write_reports"]

logger = logging.getLogger(__name__)

DATASET_NAMES = {"mars": "MARS", "ilidsvid": "iLIDS-VID", "prid": "PRID-2011", "folder": "folder"}


def dataset_title(dataset: str, root: str | os.PathLike[str]) -> str:
    """The data a result is on, for titles: ``MARS``, ``iLIDS-VID``, ``PRID-2011``, ``folder NAME``, or
    ``synthetic (MARS layout)`` for the generated dataset (``data synth``), which is read as MARS."""
    name = DATASET_NAMES.get(dataset, dataset)
    if (Path(root) / SYNTHETIC_MARKER).is_file():
        return f"synthetic ({name} layout)"
    return f"folder {Path(root).name}" if dataset == "folder" else name


def query_counts(result: RankResult) -> tuple[int, int]:
    """(valid, total) queries of a result: a query without a true match left in the gallery is skipped."""
    return result.num_valid_queries, result.num_valid_queries + result.num_skipped_queries


@dataclass(frozen=True)
class SplitEvaluation:
    standard: RankResult
    official: RankResult | None
    reranked: RankResult | None
    distmat: np.ndarray  # (Q, G) distances of the standard result

    def as_dict(self) -> dict[str, dict[str, float]]:
        results = {"standard": self.standard, "official": self.official, "reranked": self.reranked}
        return {name: result.as_dict() for name, result in results.items() if result is not None}


def _labels(tracklets: Sequence[VideoTracklet]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pids = np.array([t.person_id for t in tracklets], np.int64)
    cams = np.array([t.camera_id for t in tracklets], np.int64)
    frames = np.array([len(t.paths) for t in tracklets], np.int64)
    return pids, cams, frames


def evaluate_split(model: torch.nn.Module, query: Sequence[VideoTracklet], gallery: Sequence[VideoTracklet], *,
                   root: str | os.PathLike[str], keypoints: KeypointSource, image_size: tuple[int, int],
                   clip_length: int, max_clips: int | None, mean: Sequence[float] = (0.5, 0.5, 0.5),
                   std: Sequence[float] = (0.5, 0.5, 0.5), device: torch.device | str = "cpu",
                   batch_clips: int = 64, workers: int = 0, metric: str = "squared_euclidean",
                   rerank: bool = False, protocol: str = "standard", max_rank: int = 50,
                   amp_dtype: torch.dtype | None = None,
                   progress: Callable[[int], None] | None = None) -> SplitEvaluation:
    """Descriptors of ``query`` and ``gallery`` (mean over dense clips), distances and ranking metrics."""
    if protocol not in ("standard", "official", "both"):
        raise ValueError(f"protocol must be 'standard', 'official' or 'both', got {protocol!r}")
    if not query or not gallery:
        raise ValueError(f"need query and gallery tracklets, got {len(query)} and {len(gallery)}")
    transform = ClipTransform(image_size, train=False, mean=mean, std=std)

    def features(tracklets: Sequence[VideoTracklet]) -> np.ndarray:
        dataset = TestClips(root, tracklets, keypoints, transform, clip_length, max_clips)
        return extract_features(model, dataset, device=device, batch_clips=batch_clips, workers=workers,
                                amp_dtype=amp_dtype, progress=progress)

    query_features, gallery_features = features(query), features(gallery)
    distmat = pairwise_distances(query_features, gallery_features, metric=metric)
    q_pids, q_cams, q_frames = _labels(query)
    g_pids, g_cams, g_frames = _labels(gallery)
    standard = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    official = None
    if protocol in ("official", "both"):
        official = evaluate_rank(distmat, q_pids, g_pids, official_camera_ids(q_cams, q_frames),
                                 official_camera_ids(g_cams, g_frames), max_rank=max_rank)
    reranked = None
    if rerank:  # re_ranking squares its inputs (as the paper's code does): give it plain Euclidean distances
        base = "euclidean" if metric in ("squared_euclidean", "euclidean") else metric
        q_g = pairwise_distances(query_features, gallery_features, metric=base)
        q_q = pairwise_distances(query_features, query_features, metric=base)
        g_g = pairwise_distances(gallery_features, gallery_features, metric=base)
        reranked = evaluate_rank(re_ranking(q_g, q_q, g_g), q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    return SplitEvaluation(standard, official, reranked, distmat)


def _middle_frame(root: Path, tracklet: VideoTracklet) -> np.ndarray:
    image = cv2.imread(str(root / tracklet.paths[len(tracklet.paths) // 2]), cv2.IMREAD_COLOR)
    if image is None:
        return np.full((128, 64, 3), 127, np.uint8)
    return image


def _report_queries(evaluation: SplitEvaluation, count: int) -> list[int]:
    """Valid queries spread over the list (deterministic)."""
    valid = np.flatnonzero(evaluation.standard.valid)
    if len(valid) == 0:
        return []
    return sorted({int(i) for i in valid[np.linspace(0, len(valid) - 1, min(count, len(valid))).astype(int)]})


def write_reports(evaluation: SplitEvaluation, query: Sequence[VideoTracklet], gallery: Sequence[VideoTracklet],
                  *, root: str | os.PathLike[str], out_dir: str | os.PathLike[str], model: torch.nn.Module | None,
                  keypoints: KeypointSource, image_size: tuple[int, int], clip_length: int,
                  mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                  queries: int = 8, device: torch.device | str = "cpu", title: str = "") -> list[Path]:
    """CMC curve, top-10 ranked lists (Fig. 3 style) and, with a model, part-weight and attention overlays of
    the first report query (Fig. 4 style). Returns the PNG paths."""
    from keyreid_stream.eval import figures

    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"standard": evaluation.standard, "official protocol": evaluation.official,
               "re-ranked": evaluation.reranked}
    curves = {name: result.cmc for name, result in results.items() if result is not None}
    counts = {name: query_counts(result) for name, result in results.items() if result is not None}
    written = [figures.save_cmc_curves(curves, out_dir / "cmc.png", title=title, queries=counts)]
    chosen = _report_queries(evaluation, queries)
    if not chosen:
        return written
    q_pids, q_cams, _ = _labels(query)
    g_pids, g_cams, _ = _labels(gallery)
    kept = min(int((~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))).sum()) for i in chosen)
    ranked = figures.save_ranked_lists(
        evaluation.distmat, q_pids, g_pids, q_cams, g_cams, query_indices=chosen,
        load_query=lambda i: _middle_frame(root, query[i]), load_gallery=lambda i: _middle_frame(root, gallery[i]),
        path=out_dir / "ranked_lists.png", top_k=min(10, kept))
    written.append(ranked.path)
    if model is not None:
        written.extend(_overlays(model, query[chosen[0]], root=root, out_dir=out_dir, keypoints=keypoints,
                                 image_size=image_size, clip_length=clip_length, mean=mean, std=std, device=device))
    return written


def _overlays(model: torch.nn.Module, tracklet: VideoTracklet, *, root: Path, out_dir: Path,
              keypoints: KeypointSource, image_size: tuple[int, int], clip_length: int, mean: Sequence[float],
              std: Sequence[float], device: torch.device | str) -> list[Path]:
    from keyreid_stream.eval import figures

    dataset = TestClips(root, [tracklet], keypoints, ClipTransform(image_size, train=False, mean=mean, std=std),
                        clip_length, max_clips=1)
    frames, points, cameras = dataset[0]
    pixels = figures.denormalise_frames(frames[0], mean=mean, std=std)
    written = [figures.render_part_overlays(pixels, points[0].numpy(), out_dir / "part_weights.png")]
    model.eval()
    keypoints_in = points.to(device) if bool(getattr(model, "needs_keypoints", True)) else None
    named = _attention_rows(model, frames.to(device), keypoints_in, cameras.to(device))
    if named:
        written.append(figures.save_attention_overlays(pixels, named, out_dir / "attention.png"))
    return written


def _attention_rows(model: Any, frames: torch.Tensor, keypoints: torch.Tensor | None,
                    cameras: torch.Tensor) -> dict[str, np.ndarray]:
    """Named ``(T, gh, gw)`` or ``(gh, gw)`` maps of the first clip: KeyRe-ID's [CLS] attention, RAPA's relation
    attention per part."""
    from keyreid_stream.eval import figures

    if hasattr(model, "part_attention"):  # RAPA
        if not model.use_local:
            return {}
        regions = model.part_attention(frames, keypoints)[0].float().cpu().numpy()  # (T, 3, h, w)
        return {f"{name} relation attention": regions[:, k] for k, name in enumerate(REGION_NAMES)}
    maps = figures.attention_maps(model, frames, keypoints, cameras)
    named: dict[str, np.ndarray] = {}
    if maps.global_maps is not None:
        named["global [CLS] attention"] = maps.global_maps[0].float().cpu().numpy()
    if maps.part_maps is not None:
        keypoint_parts = getattr(model, "parts", "keypoints") == "keypoints"
        for k, part_map in enumerate(maps.part_maps[0].float().cpu().numpy()):
            named[f"{PART_NAMES[k] if keypoint_parts else f'stripe {k + 1}'} attention"] = part_map
    return named
