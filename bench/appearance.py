"""The part-histogram descriptor (``embedding.kind: part-histogram``): speed, and how well it links people on
real footage.

    python bench/appearance.py [--video PATH] [--frames 795] [--seconds 3] [--write docs/benchmarks.md]

Speed: tracklets of 16 observations (person crops of the video below, resized to 128x64 and 256x128 pixels, prior
keypoints), one at a time and in batches of 8; the best of repeated runs.

Quality: the sample video (768x576) cut into two overlapping "cameras", its left and its right 480 pixels (they
overlap by 192 px). Each goes through the worker's own parts: OpenCV's HOG detector, ByteTrack, the tracklet
accumulator with the prior keypoints (default tracklet settings: segments of at most 10 s and 32 observations).
Ground truth comes from geometry, not labels: two tracks of the two views are the same person when their boxes,
cut to the overlap strip, overlap (IoU >= 0.5) on at least 3 and at least half of their common frames; they are
certainly different people when they coexist (>= 3 common frames) and their boxes never overlap (IoU < 0.3).
Pairs of segments are scored by the cosine similarity of their descriptors, two ways:

* simultaneous -- the whole segments; a same-person pair sees the same pixels of the strip in both views
  (optimistic);
* disjoint -- each segment keeps only the frames in which the other track is not seen, so the two descriptors
  come from different frames and mostly different places in the hall (the honest cross-camera setting);
  pairs with fewer than 2 frames left on a side are dropped.

Compared: the part histograms and the demo's former descriptor (hue x saturation histograms of the upper and
lower half of the crop, 2 x 64 bins, averaged over the observations). Reported: AUC of same vs different pairs,
rank-1 (each left segment with a true match ranks the right segments of known relation), the thresholds that
keep 5 % and 1 % of the different-person pairs above them with the share of same-person pairs kept, and the
percentiles of both distributions.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, rate, write_section  # noqa: E402

from keyreid_stream.contracts import Frame, Tracklet  # noqa: E402
from keyreid_stream.inference.embedder import crop_keypoints  # noqa: E402
from keyreid_stream.keypoints.pose import PriorPose  # noqa: E402
from keyreid_stream.workers.appearance import (  # noqa: E402
    DESCRIPTOR_DIM,
    MODEL_NAME,
    MODEL_VERSION,
    PartHistogramEmbedder,
    describe,
    observation_histograms,
)
from keyreid_stream.workers.detection import create_detector  # noqa: E402
from keyreid_stream.workers.tracking import CameraTracker  # noqa: E402
from keyreid_stream.workers.tracklets import TrackletAccumulator  # noqa: E402

SECTION = "Appearance descriptor without weights (part-histogram)"
VIEWS = {"left": (0, 480), "right": (288, 768)}
STRIP = (288.0, 480.0)
MODES = ("simultaneous", "disjoint")
PRIOR = PriorPose()


# -- speed ----------------------------------------------------------------------------------------------------------


def speed(crops: list[np.ndarray], seconds: float) -> list[tuple[str, int, float]]:
    """(crop size, batch, tracklets/s) for 16-observation tracklets of real person crops resized to two sizes."""
    embedder = PartHistogramEmbedder()
    rows = []
    for height, width in ((128, 64), (256, 128)):
        boxes = np.tile(np.array([[10, 20, 10 + width, 20 + height]], np.float32), (16, 1))
        resized = [cv2.resize(crop, (width, height)) for crop in crops[:128]]
        tracklets = [Tracklet.create("c", i, np.arange(16), np.arange(16) / 10.0, boxes, PRIOR.layout(boxes),
                                     crops=resized[16 * i:16 * (i + 1)]) for i in range(8)]
        for batch in (1, 8):
            best, deadline = np.inf, time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                embedder.embed(tracklets[:batch])
                best = min(best, time.perf_counter() - start)
            rows.append((f"{height}x{width}", batch, batch / best))
    return rows


# -- the two views --------------------------------------------------------------------------------------------------


def run_views(video: Path, frames: int) -> dict[str, dict]:
    """Per view: the segments, and every tracked box per track in full-frame pixels ({track: {frame: box}})."""
    detector = create_detector("hog")
    state = {view: {"tracker": CameraTracker("bytetrack", frame_rate=10.0, id_base=(n + 1) * 100_000),
                    "accumulator": TrackletAccumulator(view), "boxes": defaultdict(dict), "segments": []}
             for n, view in enumerate(VIEWS)}
    capture = cv2.VideoCapture(str(video))
    try:
        for index in range(frames):
            ok, image = capture.read()
            if not ok:
                break
            for view, (left, right) in VIEWS.items():
                frame = Frame(view, index, index / 10.0, np.ascontiguousarray(image[:, left:right]))
                _step(state[view], detector, frame, left)
    finally:
        capture.release()
    for view in VIEWS:
        state[view]["segments"] += state[view]["accumulator"].flush()
    return state


def _step(view: dict, detector: object, frame: Frame, offset: int) -> None:
    tracked = view["tracker"].update(frame, detector.detect([frame])[0])
    for track, box in zip(tracked.track_ids.tolist(), tracked.boxes):
        view["boxes"][track][frame.index] = box + np.array([offset, 0, offset, 0], np.float32)
    segments = view["accumulator"].add(frame, tracked, lambda f, boxes: PRIOR.estimate_boxes(f.image, boxes))
    view["segments"] += segments + view["accumulator"].finish(view["tracker"].pop_finished())


def _strip_iou(one: np.ndarray, other: np.ndarray) -> float | None:
    """IoU of two full-frame boxes cut to the overlap strip (None when either has less than 8 px there)."""
    a = np.array([max(one[0], STRIP[0]), one[1], min(one[2], STRIP[1]), one[3]])
    b = np.array([max(other[0], STRIP[0]), other[1], min(other[2], STRIP[1]), other[3]])
    if a[2] - a[0] < 8 or b[2] - b[0] < 8:
        return None
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def relations(state: dict[str, dict]) -> dict[tuple[int, int], bool]:
    """(left track, right track) -> True (same person) or False (certainly different); unknown pairs absent."""
    known: dict[tuple[int, int], bool] = {}
    for one, left_boxes in state["left"]["boxes"].items():
        for other, right_boxes in state["right"]["boxes"].items():
            common = sorted(set(left_boxes) & set(right_boxes))
            if len(common) < 3:
                continue
            ious = [v for f in common if (v := _strip_iou(left_boxes[f], right_boxes[f])) is not None]
            good = sum(v >= 0.5 for v in ious)
            if good >= 3 and good >= len(ious) / 2:
                known[(one, other)] = True
            elif not any(v >= 0.3 for v in ious):
                known[(one, other)] = False
    identity = _identities([pair for pair, same in known.items() if same])
    return {pair: same for pair, same in known.items()
            if same or identity.get(("L", pair[0]), -1) != identity.get(("R", pair[1]), -2)}


def _identities(links: list[tuple[int, int]]) -> dict[tuple[str, int], int]:
    """Connected components of the same-person links (a track split in one view links to both parts)."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(node: tuple[str, int]) -> tuple[str, int]:
        parent.setdefault(node, node)
        while parent[node] != node:
            node = parent[node]
        return node

    for one, other in links:
        parent[find(("L", one))] = find(("R", other))
    roots = {node: find(node) for node in parent}
    numbers = {root: n for n, root in enumerate(sorted(set(roots.values())))}
    return {node: numbers[root] for node, root in roots.items()}


# -- descriptors and scores -----------------------------------------------------------------------------------------


def old_demo_descriptor(crop: np.ndarray, bins: int = 8) -> np.ndarray:
    """The demo's former descriptor: hue x saturation histograms of the crop's upper and lower half."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    half = max(1, hsv.shape[0] // 2)
    parts = []
    for region in (hsv[:half], hsv[half:]):
        hist = cv2.calcHist([region], [0, 1], None, [bins, bins], [0, 180, 0, 256]).ravel()
        parts.append(hist / max(float(hist.sum()), 1.0))
    return np.concatenate(parts)


def _features(tracklet: Tracklet) -> dict[str, np.ndarray]:
    return {"part-histogram": observation_histograms(list(tracklet.crops), crop_keypoints(tracklet)),
            "2-stripe HSV (old demo)": np.stack([old_demo_descriptor(crop) for crop in tracklet.crops])}


def _descriptor(name: str, features: np.ndarray, keep: np.ndarray) -> np.ndarray:
    mean = features[keep].mean(axis=0)
    if name == "part-histogram":
        return describe(mean)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def pair_scores(state: dict[str, dict], known: dict[tuple[int, int], bool], mode: str) -> dict[str, list]:
    """Per descriptor, (left segment, similarity, same person) of every scored pair."""
    left, right = state["left"]["segments"], state["right"]["segments"]
    features = {id(segment): _features(segment.tracklet) for segment in left + right}
    scores: dict[str, list] = defaultdict(list)
    for n, one in enumerate(left):
        for other in right:
            pair = (one.tracklet.track_id, other.tracklet.track_id)
            together = min(one.last_seen, other.last_seen) >= max(one.first_seen, other.first_seen)
            if pair not in known or (mode == "simultaneous" and known[pair] and not together):
                continue
            keep_one, keep_other = np.ones(len(one.tracklet), bool), np.ones(len(other.tracklet), bool)
            if mode == "disjoint":
                keep_one = ~np.isin(one.tracklet.frame_indices, list(state["right"]["boxes"][pair[1]]))
                keep_other = ~np.isin(other.tracklet.frame_indices, list(state["left"]["boxes"][pair[0]]))
                if keep_one.sum() < 2 or keep_other.sum() < 2:
                    continue
            for name in features[id(one)]:
                a = _descriptor(name, features[id(one)][name], keep_one)
                b = _descriptor(name, features[id(other)][name], keep_other)
                scores[name].append((n, float(a @ b), known[pair]))
    return scores


def summary(rows: list[tuple[int, float, bool]]) -> dict[str, object]:
    same = np.array([s for _, s, label in rows if label])
    different = np.array([s for _, s, label in rows if not label])
    ranks = np.argsort(np.argsort(np.concatenate([same, different]))) + 1
    auc = (ranks[:len(same)].sum() - len(same) * (len(same) + 1) / 2) / (len(same) * len(different))
    by_query: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for query, score, label in rows:
        by_query[query].append((score, label))
    hits = [max(entries)[1] for entries in by_query.values() if any(label for _, label in entries)]
    result: dict[str, object] = {"same": len(same), "different": len(different), "auc": auc,
                                 "rank1": float(np.mean(hits)), "queries": len(hits)}
    for share in (0.05, 0.01):
        threshold = float(np.quantile(different, 1 - share, method="higher"))
        result[f"threshold@{share}"] = threshold
        result[f"kept@{share}"] = float((same > threshold).mean())
    result["same_pct"] = np.percentile(same, (5, 25, 50, 75, 95))
    result["different_pct"] = np.percentile(different, (5, 25, 50, 75, 95))
    return result


# -- report ---------------------------------------------------------------------------------------------------------


def render(args: argparse.Namespace, speeds: list, quality: dict, counts: dict) -> str:
    lines = [f"Machine: {machine()}.", (f"Command: `python bench/appearance.py --frames {args.frames}`. "
             f"Descriptor {MODEL_NAME} version {MODEL_VERSION}, {DESCRIPTOR_DIM} dimensions."), "",
             "Speed (16-observation tracklets of the video's person crops, best of repeated runs, CPU):", "",
             "| crops | batch | tracklets/s | observations/s |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {size} | {batch} | {rate(value)} | {rate(16 * value)} |" for size, batch, value in speeds]
    lines += ["", (f"Quality on the sample video cut into two overlapping views (left and right 480 px, HOG, "
                   f"ByteTrack, prior keypoints): {counts['segments']} segments, {counts['same']} same-person and "
                   f"{counts['different']} certainly-different track pairs. Threshold @5 % / @1 %: the similarity "
                   "that 5 % / 1 % of the different-person pairs exceed, and the share of same-person pairs above "
                   "it."), "",
              ("| pairs | descriptor | same / different | AUC | rank-1 (queries) | threshold @5 % (same kept) | "
               "threshold @1 % (same kept) | same p5 / p50 / p95 | different p5 / p50 / p95 |"),
              "| --- | --- | --- | ---: | --- | --- | --- | --- | --- |"]
    for mode in MODES:
        for name, r in quality[mode].items():
            same, different = r["same_pct"], r["different_pct"]
            lines.append(
                f"| {mode} | {name} | {r['same']} / {r['different']} | {r['auc']:.3f} | {r['rank1']:.2f} "
                f"({r['queries']}) | {r['threshold@0.05']:.3f} ({r['kept@0.05']:.2f}) | {r['threshold@0.01']:.3f} "
                f"({r['kept@0.01']:.2f}) | {same[0]:.2f} / {same[2]:.2f} / {same[4]:.2f} | "
                f"{different[0]:.2f} / {different[2]:.2f} / {different[4]:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None, help="default: the sample video (fetched if missing)")
    parser.add_argument("--frames", type=int, default=795, help="frames of the video to use (795: all)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per speed measurement")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    video = args.video
    if video is None:
        from keyreid_stream.data.sample import fetch_sample

        video = fetch_sample()
    state = run_views(video, args.frames)
    crops = [crop for view in VIEWS for segment in state[view]["segments"] for crop in segment.tracklet.crops]
    speeds = speed(crops, args.seconds)
    known = relations(state)
    quality = {mode: {name: summary(rows) for name, rows in pair_scores(state, known, mode).items()}
               for mode in MODES}
    counts = {"segments": sum(len(state[v]["segments"]) for v in VIEWS), "same": sum(known.values()),
              "different": sum(not same for same in known.values())}
    text = render(args, speeds, quality, counts)
    print(text)
    if args.write:
        write_section(args.write, SECTION, "\n" + text)


if __name__ == "__main__":
    main()
