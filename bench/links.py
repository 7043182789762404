"""Where the demo's cross-view links are lost, stage by stage, and the online association against the offline
optimum on the demo's two views and on the matcher's synthetic multi-camera scenes.

    python bench/links.py [--recording DIR] [--record DIR] [--seeds 0,1] [--write docs/benchmarks.md]

The demo's part runs the demo once (``--record DIR`` keeps what it recorded; default: a temporary folder) or reads
a recording made before (``--recording DIR``): the workers' MOT files and every tracklet the matcher stored
(camera, track, times, descriptor, the identity it got). The analysis reruns on the recording in seconds.
Ground truth is the views' geometry (``keyreid_stream.demo.geometry``): a left and a right track are the same
person when their boxes coincide in the source frame; a link is a (left track, right track) pair in one identity.

Stages, each against the geometric ground truth:

* detection and tracking -- the two views' tracks against each other inside the shared columns (left view as the
  reference): IDF1, HOTA, DetA, AssA, ID switches, fragmentations; tracks per view;
* publishing -- tracks become tracklets only with enough usable observations: the best link F1 any association
  could reach on the published tracks (the connected components of the true pairs);
* association -- the online matcher (replayed on the stored tracklets in arrival order, batches as they arrived,
  one re-clustering pass at the end, as the demo does) against the offline optimum (average-linkage clustering
  of the same tracks with the same constraints, at the threshold that is best on the ground truth:
  ``keyreid_stream.matcher.association.offline``): both F1 and their ratio, with the sample's transit constraint before and
  after the transit change; then the threshold rule (``association.threshold_rule: midpoint``,
  ``keyreid_stream.matcher.association.calibration``) as the matcher runs it and forced on whatever evidence there is.

Synthetic scenes: ``generate_scene`` (many cameras, distractors, look-alikes, split tracks, arrival out of order)
at its defaults and four other kinds (noisier, more alike, both, easier), seeds 0-2 (on which the threshold rule
was chosen) and 3-5 (held out); the online association with the fixed default threshold and with the threshold
rule against the offline optimum, pair precision/recall over tracklets.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, write_section  # noqa: E402

from keyreid_stream.demo.geometry import true_view_pairs  # noqa: E402
from keyreid_stream.eval.mtmc import evaluate_camera  # noqa: E402
from keyreid_stream.matcher.association.association import AssociationParams, associate  # noqa: E402
from keyreid_stream.matcher.association.calibration import calibrate, estimate_threshold  # noqa: E402
from keyreid_stream.matcher.association.offline import f1_score, offline_optimum  # noqa: E402
from keyreid_stream.matcher.association.recluster import apply_changes, recluster  # noqa: E402
from keyreid_stream.matcher.association.synthetic import (  # noqa: E402
    generate_scene,
    pair_precision_recall,
    replay_scene,
    stored_tracklet,
)
from keyreid_stream.matcher.association.topology import Topology  # noqa: E402
from keyreid_stream.matcher.state.records import StoredTracklet  # noqa: E402
from keyreid_stream.mot import MotTracks, read_mot  # noqa: E402

LEFT, RIGHT = "cam-left", "cam-right"
BATCH_GAP_S = 0.5  # tracklets stored within this time of the first of a batch were decided together
BEFORE_TRANSIT = {"min_s": -3600.0, "max_s": 5.0}  # the sample's transit constraint before this change
SYNTHETIC = {"default": {}, "harder (noise 0.8, alike 0.5)": {"noise": 0.8, "similar_people": 0.5},
             "noisy (noise 0.8)": {"noise": 0.8}, "alike (alike 0.5)": {"similar_people": 0.5},
             "easy (noise 0.3, alike 0.2)": {"noise": 0.3, "similar_people": 0.2}}
SYNTHETIC_THRESHOLDS = np.round(np.arange(0.3, 0.8, 0.01), 2)  # the offline optimum's sweep on these scenes
TRAINING_SEEDS = (0, 1, 2)  # the threshold rule (keyreid_stream.matcher.association.calibration) was chosen on these
_FIELDS = ("tracklet_id", "camera_id", "track_id", "start_time", "end_time", "num_frames", "space", "identity",
           "ingested_at")


# --------------------------------------------------------------------------- recording

def record_demo(folder: Path) -> None:
    """Run the demo with the models it picks on this machine; keep its MOT files and stored tracklets."""
    import redis

    from keyreid_stream.config.schema import DemoConfig
    from keyreid_stream.data.sample import default_cache_dir
    from keyreid_stream.demo import choose_models, prepare_cameras, run_demo
    from keyreid_stream.matcher.state.keys import Keys
    from keyreid_stream.matcher.state.store import load_tracklets

    view_width = DemoConfig().view_width
    cameras = prepare_cameras(("sample",), cache_dir=default_cache_dir(), view_width=view_width)
    models = choose_models("auto")

    def keep(result) -> None:
        client = redis.Redis.from_url(result.redis_url)
        keys = Keys("krs")
        ids = [key.decode() for key in client.zrange(keys.by_ingest, 0, -1)]
        tracklets = load_tracklets(client, keys, ids)
        client.close()
        np.savez(folder / "tracklets.npz", descriptor=np.stack([t.descriptor for t in tracklets]),
                 **{name: np.asarray([getattr(t, name) for t in tracklets]) for name in _FIELDS})
        shutil.copytree(result.workdir / "mot", folder / "mot", dirs_exist_ok=True)
        quality = result.link_quality
        info = {"offsets": {c.camera_id: c.view_x0 for c in result.cameras}, "view_width": view_width,
                "models": list(models.lines),
                "association": models.association, "printed": None if quality is None else {
                    "true_pairs": quality.true_pairs, "predicted_pairs": quality.predicted_pairs,
                    "correct_pairs": quality.correct_pairs, "precision": quality.precision,
                    "recall": quality.recall},
                "tracklets": len(tracklets), "identities": len(result.identities)}
        (folder / "recording.json").write_text(json.dumps(info, indent=1))

    folder.mkdir(parents=True, exist_ok=True)
    run_demo(cameras, models, workdir=folder / "work", report=None, on_result=keep)


def load_recording(folder: Path) -> tuple[list[StoredTracklet], dict]:
    data = np.load(folder / "tracklets.npz")
    tracklets = [StoredTracklet(str(i), str(c), int(k), float(s), float(e), int(n), str(sp), d, str(g), float(a))
                 for i, c, k, s, e, n, sp, g, a, d in zip(*(data[name] for name in _FIELDS), data["descriptor"])]
    return tracklets, json.loads((folder / "recording.json").read_text())


# --------------------------------------------------------------------------- the demo's stages

def _track_labels(tracklets: list[StoredTracklet], identities: dict[str, str]) -> dict[tuple[str, int], set[str]]:
    labels: dict[tuple[str, int], set[str]] = defaultdict(set)
    for t in tracklets:
        labels[(t.camera_id, t.track_id)].add(identities[t.tracklet_id])
    return labels


def link_scores(tracklets: list[StoredTracklet], identities: dict[str, str], truth: set[tuple[int, int]]
                ) -> tuple[int, int, float, float]:
    """(predicted pairs, correct pairs, precision, recall) of the cross-view track pairs in one identity."""
    members: dict[str, tuple[set[int], set[int]]] = defaultdict(lambda: (set(), set()))
    for (camera, track), names in _track_labels(tracklets, identities).items():
        for name in names:
            members[name][0 if camera == LEFT else 1].add(track)
    predicted = {(a, b) for left, right in members.values() for a in left for b in right}
    correct = len(predicted & truth)
    return (len(predicted), correct, correct / len(predicted) if predicted else 1.0,
            correct / len(truth) if truth else 1.0)


def strip(tracks: MotTracks, shift: int, low: int, high: int) -> MotTracks:
    """The boxes inside the columns [low, high) of the source frame (``shift``: the view's first column)."""
    boxes = tracks.boxes.copy()
    boxes[:, 0] += shift
    keep = (boxes[:, 0] >= low) & (boxes[:, 0] + boxes[:, 2] <= high)
    return MotTracks(tracks.frames[keep], tracks.ids[keep], boxes[keep], tracks.scores[keep])


def ceiling(tracklets: list[StoredTracklet], truth: set[tuple[int, int]]) -> dict[str, str]:
    """The true pairs' connected components as identities (every published track)."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in truth:
        parent[find((LEFT, a))] = find((RIGHT, b))
    return {t.tracklet_id: "/".join(map(str, find((t.camera_id, t.track_id)))) for t in tracklets}


def sample_topology(transit: dict[str, float]) -> Topology:
    bounds = (transit["min_s"], transit["max_s"])
    return Topology({(LEFT, RIGHT): bounds, (RIGHT, LEFT): bounds}, strict=False)


def replay_recorded(tracklets: list[StoredTracklet], params: AssociationParams, topology: Topology, *,
                    evidence: int | None = None) -> dict[str, str]:
    """The online association on the stored tracklets in arrival order, then one re-clustering pass; ``evidence``:
    the pairs the threshold rule needs (None: the matcher's minimums)."""
    least = {} if evidence is None else {"min_negatives": evidence, "min_positives": evidence}
    numbers = itertools.count(1)

    def new_identity() -> str:
        return f"g{next(numbers)}"

    batches: list[list[StoredTracklet]] = []
    for t in sorted(tracklets, key=lambda t: t.ingested_at):
        if not batches or t.ingested_at - batches[-1][0].ingested_at > BATCH_GAP_S:
            batches.append([])
        batches[-1].append(dataclasses.replace(t, identity=None))
    known: list[StoredTracklet] = []
    for batch in batches:
        decisions = associate(batch, known, calibrate([*known, *batch], params, topology=topology, **least),
                              topology, new_identity)
        known += [dataclasses.replace(t, identity=d.identity) for t, d in zip(batch, decisions)]
    identities = {t.tracklet_id: t.identity for t in known}
    final = calibrate(known, params, topology=topology, **least)
    return apply_changes(identities, recluster(known, final, topology, new_identity))  # type: ignore[arg-type]


def demo_stages(folder: Path) -> list[str]:
    from keyreid_stream.demo.run import SAMPLE_TRANSIT

    tracklets, info = load_recording(folder)
    left, right = read_mot(folder / "mot" / f"{LEFT}.txt"), read_mot(folder / "mot" / f"{RIGHT}.txt")
    x0 = info["offsets"]
    offset = x0[RIGHT] - x0[LEFT]
    truth = true_view_pairs(left, right, offset)
    shared = (x0[RIGHT], x0[LEFT] + info["view_width"])  # the columns both views show
    scores = evaluate_camera(strip(left, x0[LEFT], *shared), strip(right, x0[RIGHT], *shared))
    published = {(t.camera_id, t.track_id) for t in tracklets}
    lines = [(f"Recording: {info['tracklets']} tracklets, {info['identities']} identities; models: "
             f"{'; '.join(info['models'])}. Ground truth: {len(truth)} true (left track, right track) pairs."), ""]
    if info.get("printed"):
        p = info["printed"]
        lines += [(f"The demo printed: {p['correct_pairs']} of {p['predicted_pairs']} linked pairs right "
                  f"(precision {p['precision']:.2f}), {p['correct_pairs']} of {p['true_pairs']} true pairs found "
                  f"(recall {p['recall']:.2f}); association {info['association']}."), ""]
    lines += ["| stage | measured on | result |", "| --- | --- | --- |"]
    c, h, i = scores.clear, scores.hota, scores.identity
    tracks = {name: len(np.unique(t.ids)) for name, t in ((LEFT, left), (RIGHT, right))}
    pub = {name: sum(1 for cam, _ in published if cam == name) for name in (LEFT, RIGHT)}
    lines.append(f"| detection + tracking | left vs right tracks in the shared columns {shared[0]}-{shared[1] - 1} "
                 f"({c.gt} / {c.predictions} boxes) | IDF1 {i.idf1:.3f}, HOTA {h.hota:.3f} (DetA {h.deta:.3f}, "
                 f"AssA {h.assa:.3f}), IDSW {c.id_switches}, FM {c.fragmentations}; tracks {tracks[LEFT]} left / "
                 f"{tracks[RIGHT]} right |")
    best = link_scores(tracklets, ceiling(tracklets, truth), truth)
    lines.append(f"| publishing (tracks -> tracklets) | the best any association can do on the published tracks "
                 f"({pub[LEFT]} left / {pub[RIGHT]} right, {len(tracklets)} tracklets) | P {best[2]:.3f}, R "
                 f"{best[3]:.3f}, F1 "
                 f"{f1_score(*best[2:]):.3f} ({len(truth) - best[1]} true pairs on unpublished tracks) |")
    recorded = link_scores(tracklets, {t.tracklet_id: str(t.identity) for t in tracklets}, truth)
    lines.append(f"| association, as recorded | the matcher's identities | P {recorded[2]:.3f}, R {recorded[3]:.3f}, "
                 f"F1 {f1_score(*recorded[2:]):.3f} ({recorded[1]} of {recorded[0]} pairs) |")
    params = AssociationParams(**info["association"])
    for name, transit in (("before", BEFORE_TRANSIT), ("after", SAMPLE_TRANSIT)):
        topology = sample_topology(transit)
        online = link_scores(tracklets, replay_recorded(tracklets, params, topology), truth)
        optimum = offline_optimum(tracklets, lambda ids: link_scores(tracklets, dict(ids), truth)[2:],
                                  topology=topology, window_s=params.window_s)
        on_f1 = f1_score(*online[2:])
        lines.append(f"| association, {name}: transit {transit['min_s']:g}..{transit['max_s']:g} s | online replay "
                     f"/ offline optimum (threshold {optimum.threshold:.3f}) | online P {online[2]:.3f}, R "
                     f"{online[3]:.3f}, F1 {on_f1:.3f}; offline P {optimum.precision:.3f}, R {optimum.recall:.3f}, "
                     f"F1 {optimum.f1:.3f}; ratio {on_f1 / optimum.f1 if optimum.f1 else float('nan'):.3f} |")
    found = estimate_threshold(tracklets, topology=topology, window_s=params.window_s, min_negatives=1,
                               min_positives=1)
    ruled = dataclasses.replace(params, threshold_rule="midpoint")
    for name, evidence in (("as the matcher runs it", None), ("forced on (any evidence)", 1)):
        online = link_scores(tracklets, replay_recorded(tracklets, ruled, topology, evidence=evidence), truth)
        on_f1 = f1_score(*online[2:])
        lines.append(f"| association, threshold rule midpoint, {name} | online replay; the rule on all the "
                     f"tracklets: threshold {found.threshold:.3f} from {found.negatives} certain-negative pairs "
                     f"(q0.9 {found.negative_quantile:.3f}) and {found.positives} mutual-best pairs (median "
                     f"{found.positive_median:.3f}) | online P {online[2]:.3f}, R {online[3]:.3f}, F1 {on_f1:.3f}; "
                     f"ratio {on_f1 / optimum.f1 if optimum.f1 else float('nan'):.3f} |")
    return lines


# --------------------------------------------------------------------------- synthetic scenes

def synthetic_rows(seeds: list[int]) -> list[str]:
    lines = [("| scene | seed | tracklets | offline optimum P / R / F1 (threshold) | online, fixed 0.6: P / R / F1 "
             "(ratio) | online, threshold rule midpoint: P / R / F1 (ratio), threshold at the end |"),
             "| --- | --- | ---: | --- | --- | --- |"]
    for name, options in SYNTHETIC.items():
        for seed in seeds:
            scene = generate_scene(seed=seed, **options)
            ids = [t.message.message_id for t in scene.tracklets]
            truth = [t.person for t in scene.tracklets]

            def score(identities, ids=ids, truth=truth):
                return pair_precision_recall(truth, [identities[i] for i in ids])

            stored = [stored_tracklet(t.message) for t in scene.tracklets]
            optimum = offline_optimum(stored, score, topology=scene.topology, thresholds=SYNTHETIC_THRESHOLDS)
            cells = []
            for rule in ("fixed", "midpoint"):
                online = score(replay_scene(scene, AssociationParams(threshold_rule=rule), batch_size=8))
                cells.append(f"{online[0]:.3f} / {online[1]:.3f} / {f1_score(*online):.3f} "
                             f"({f1_score(*online) / optimum.f1:.3f})")
            found = estimate_threshold(stored, topology=scene.topology)
            role = "rule chosen" if seed in TRAINING_SEEDS else "held out"
            lines.append(f"| {name} | {seed} ({role}) | {len(ids)} | {optimum.precision:.3f} / "
                         f"{optimum.recall:.3f} / {optimum.f1:.3f} ({optimum.threshold:.2f}) | {cells[0]} | "
                         f"{cells[1]}, {'-' if found is None else f'{found.threshold:.3f}'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", type=Path, help="analyse this recording instead of running the demo")
    parser.add_argument("--record", type=Path, help="run the demo and keep its recording here")
    parser.add_argument("--seeds", default="0,1,2,3,4,5",
                        help="synthetic scene seeds (default 0-5: the rule was chosen on 0-2)")
    parser.add_argument("--write", type=Path, help="write the tables to this markdown file (docs/benchmarks.md)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="links-") as scratch:
        folder = args.recording
        if folder is None:
            folder = args.record or Path(scratch) / "recording"
            record_demo(folder)
        demo = demo_stages(folder)
    synthetic = synthetic_rows([int(s) for s in args.seeds.split(",")])
    command = "python bench/links.py" + (f" --seeds {args.seeds}" if args.seeds != "0,1,2,3,4,5" else "")
    if args.recording is not None:
        command += "`, the demo's part on a recording kept by `python bench/links.py --record DIR"
    body = "\n".join([
        f"Machine: {machine()} (shared with other jobs while it ran).",
        f"Command: `{command}` ({time.monotonic() - started:.0f} s).", "",
        "The demo's two views (`scripts/dev demo`), stage by stage against the views' geometry:", "", *demo, "",
        ("Synthetic multi-camera scenes (`keyreid_stream.matcher.association.synthetic`, 4 cameras, 60 people, "
         "40 distractors; online = `AssociationParams()` defaults (before: `threshold_rule: fixed`) and with "
         "`threshold_rule: midpoint` (after), replayed 8 tracklets at a time with one re-clustering pass; pair "
         "precision/recall over tracklets; ratio = online F1 / offline optimum F1):"), "", *synthetic, ""])
    print(body)
    if args.write:
        write_section(args.write, "Where links are lost: stages, online against offline", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
