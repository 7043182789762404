"""Multi-camera tracking metrics: CLEAR MOT and identity measures per camera, and cross-camera (MTMC) identity
measures, on MOTChallenge data (:mod:`keyreid_stream.mot`).

**CLEAR MOT** (Bernardin and Stiefelhagen 2008), frame by frame in frame order, as py-motmetrics does: a ground
truth (GT) box and a predicted box may match when their IoU is at least ``iou_threshold``. First every GT object
keeps the prediction it was last matched to, if that one is still there and still overlaps enough; the rest are
matched by the Hungarian algorithm (the most matches, then the least total ``1 - IoU``). A GT object matched to a
different prediction than the last time is an **ID switch**. Unmatched GT boxes are misses (FN), unmatched
predictions false positives (FP). ``MOTA = 1 - (FN + FP + IDSW) / GT``; ``MOTP`` here is the mean IoU of the
matches (py-motmetrics reports ``1 - MOTP``, the mean distance). A **fragmentation** is a GT track going from
tracked to missed between its first and last tracked frames. A GT track is mostly tracked (MT) when matched in at
least 80 % of its frames, mostly lost (ML) under 20 %, partially tracked (PT) otherwise.

**Identity measures** (Ristani et al. 2016): each GT trajectory is matched to at most one predicted trajectory
and vice versa, so as to maximise IDTP, the number of detections where the two overlap (IoU at least the
threshold; every overlapping pair of a frame counts); equivalently to minimise ``IDFP + IDFN``. Unmatched
detections are IDFN (GT) and IDFP (predicted). ``IDP = IDTP / (IDTP + IDFP)``, ``IDR = IDTP / (IDTP + IDFN)``,
``IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN)``.

**MTMC identity measures**: the same over all cameras together (as the DukeMTMC devkit does by concatenating
the cameras): GT and predicted ids are global identities, common to all cameras, and detections overlap on the same
(camera, frame). A person who keeps one id on each camera but different ids across cameras scores IDF1 1 per
camera and less across cameras.

**HOTA** (Luiten et al. 2021; :mod:`keyreid_stream.eval.hota`, as TrackEval computes it): per camera, all cameras
combined as TrackEval combines sequences, and across cameras with global ids (every camera's frames together).
It does not use ``iou_threshold``: it averages over the localisation thresholds 0.05 ... 0.95.

A ratio whose denominator is 0 is NaN (undefined), e.g. MOTA without GT boxes; ``as_dict`` writes it as None.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from keyreid_stream.eval.hota import HotaFrame, HotaScores, combine_hota, hota_scores
from keyreid_stream.mot import MotDataError, MotTracks, read_camera_dir

__all__ = ["CameraScores", "ClearMotScores", "IdentityScores", "MtmcScores", "box_iou_xywh", "evaluate_camera",
           "evaluate_folders", "evaluate_mtmc", "format_mtmc_table", "identity_scores"]

logger = logging.getLogger(__name__)

MOSTLY_TRACKED, MOSTLY_LOST = 0.8, 0.2


@dataclass(frozen=True)
class ClearMotScores:
    """CLEAR MOT of one camera (or summed over cameras). ``matched``: GT boxes matched (ID switches included;
    py-motmetrics' ``num_detections``); ``iou_sum``: their summed IoU (``motp = iou_sum / matched``)."""

    mota: float
    motp: float
    recall: float
    precision: float
    gt: int
    predictions: int
    matched: int
    false_positives: int
    misses: int
    id_switches: int
    fragmentations: int
    gt_tracks: int
    mostly_tracked: int
    partially_tracked: int
    mostly_lost: int
    iou_sum: float


@dataclass(frozen=True)
class IdentityScores:
    """IDF1, IDP, IDR and their counts (detections)."""

    idf1: float
    idp: float
    idr: float
    idtp: int
    idfp: int
    idfn: int


@dataclass(frozen=True)
class CameraScores:
    camera: str
    clear: ClearMotScores
    identity: IdentityScores
    hota: HotaScores


@dataclass(frozen=True)
class MtmcScores:
    """Per camera, the CLEAR counts of all cameras added up (``overall``) and their HOTA combined
    (``overall_hota``), and the cross-camera identity measures and HOTA (``mtmc``, ``mtmc_hota``)."""

    cameras: tuple[CameraScores, ...]
    overall: ClearMotScores
    mtmc: IdentityScores
    iou_threshold: float
    overall_hota: HotaScores
    mtmc_hota: HotaScores

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (NaN becomes None)."""
        result: dict[str, Any] = _no_nan(dataclasses.asdict(self))
        return result


def _no_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else math.nan


# ------------------------------------------------------------------------------------------ geometry


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of x, y, w, h boxes (float64; 0 where both boxes have no area)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    low = np.maximum(a[..., :2], b[..., :2])
    high = np.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    inter = np.prod(np.maximum(high - low, 0.0), axis=-1)
    union = np.prod(a[..., 2:], axis=-1) + np.prod(b[..., 2:], axis=-1) - inter
    result: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return result


def _frame_rows(frames: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each frame."""
    order = np.argsort(frames, kind="stable")
    values, starts = np.unique(frames[order], return_index=True)
    return dict(zip(values.tolist(), np.split(order, starts[1:])))


# ------------------------------------------------------------------------------------------ CLEAR MOT


def _hungarian(dist: np.ndarray, valid: np.ndarray) -> list[tuple[int, int]]:
    """The most valid pairs, then the least total distance (invalid edges priced out, as py-motmetrics does)."""
    if not valid.any():
        return []
    scale = float(np.abs(dist[valid]).max()) + 1.0
    cost = np.where(valid, dist, 2 * min(dist.shape) * scale + 1)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if valid[i, j]]


class _ClearCounter:
    """The CLEAR MOT state of one camera, fed frame by frame."""

    def __init__(self, gt_rows: int) -> None:
        self.last: dict[int, int] = {}  # GT id -> the prediction it was last matched to
        self.tracked = np.zeros(gt_rows, dtype=bool)  # per GT row
        self.matched = self.switches = 0
        self.iou_sum = 0.0

    def frame(self, g_rows: np.ndarray, g_ids: np.ndarray, p_ids: np.ndarray, iou: np.ndarray,
              valid: np.ndarray) -> None:
        pairs = self._kept(g_ids, p_ids, valid)
        free_g = np.setdiff1d(np.arange(len(g_ids)), [i for i, _ in pairs])
        free_p = np.setdiff1d(np.arange(len(p_ids)), [j for _, j in pairs])
        sub = np.ix_(free_g, free_p)
        for i, j in _hungarian(1.0 - iou[sub], valid[sub]):
            o, h = int(g_ids[free_g[i]]), int(p_ids[free_p[j]])
            self.switches += int(o in self.last and self.last[o] != h)
            self.last[o] = h
            pairs.append((int(free_g[i]), int(free_p[j])))
        for i, j in pairs:
            self.tracked[g_rows[i]] = True
            self.iou_sum += float(iou[i, j])
        self.matched += len(pairs)

    def _kept(self, g_ids: np.ndarray, p_ids: np.ndarray, valid: np.ndarray) -> list[tuple[int, int]]:
        """GT objects that keep last time's prediction (still present and overlapping): the first unused box of
        that prediction in the frame, when it overlaps enough."""
        columns: dict[int, list[int]] = {}
        for j, h in enumerate(p_ids.tolist()):
            columns.setdefault(h, []).append(j)
        used = [False] * len(p_ids)
        pairs: list[tuple[int, int]] = []
        for i, o in enumerate(g_ids.tolist()):
            if o not in self.last:
                continue
            free = [j for j in columns.get(self.last[o], ()) if not used[j]]
            if free and valid[i, free[0]]:
                used[free[0]] = True
                pairs.append((i, free[0]))
        return pairs


def _track_coverage(ids: np.ndarray, frames: np.ndarray, tracked: np.ndarray) -> tuple[int, int, int, int]:
    """Fragmentations, MT, PT and ML of the GT tracks from their per-row tracked flags."""
    order = np.lexsort((frames, ids))
    ids, tracked = ids[order], tracked[order]
    _, starts = np.unique(ids, return_index=True)
    fragmentations, ratios = 0, []
    for flags in np.split(tracked, starts[1:]) if len(ids) else []:
        ratios.append(flags.mean())
        hits = np.flatnonzero(flags)
        if len(hits):
            span = flags[hits[0]: hits[-1] + 1]
            fragmentations += int(np.count_nonzero(span[:-1] & ~span[1:]))
    ratio = np.asarray(ratios)
    mostly_tracked = int(np.count_nonzero(ratio >= MOSTLY_TRACKED))
    mostly_lost = int(np.count_nonzero(ratio < MOSTLY_LOST))
    return fragmentations, mostly_tracked, len(ratio) - mostly_tracked - mostly_lost, mostly_lost


def _clear_and_overlaps(gt: MotTracks, pred: MotTracks, iou_threshold: float,
                        ) -> tuple[ClearMotScores, np.ndarray, np.ndarray, list[HotaFrame]]:
    """CLEAR MOT of one camera, the (GT id, predicted id) of every overlapping pair of boxes, and the frames
    (ids and IoU) for HOTA."""
    counter = _ClearCounter(len(gt))
    gt_frames, pred_frames = _frame_rows(gt.frames), _frame_rows(pred.frames)
    empty = np.zeros(0, dtype=np.int64)
    pair_gt, pair_pred = [empty], [empty]
    hota_frames = []
    for frame in sorted(gt_frames.keys() | pred_frames.keys()):
        g_rows, p_rows = gt_frames.get(frame, empty), pred_frames.get(frame, empty)
        iou = box_iou_xywh(gt.boxes[g_rows], pred.boxes[p_rows])
        valid = 1.0 - iou <= 1.0 - iou_threshold  # py-motmetrics' test on the distance 1 - IoU
        g_ids, p_ids = gt.ids[g_rows], pred.ids[p_rows]
        counter.frame(g_rows, g_ids, p_ids, iou, valid)
        hota_frames.append(HotaFrame(g_ids, p_ids, iou))
        i, j = np.nonzero(valid)
        pair_gt.append(g_ids[i])
        pair_pred.append(p_ids[j])
    fragmentations, mt, pt, ml = _track_coverage(gt.ids, gt.frames, counter.tracked)
    misses, false_positives = len(gt) - counter.matched, len(pred) - counter.matched
    clear = ClearMotScores(
        mota=1.0 - _ratio(misses + false_positives + counter.switches, len(gt)),
        motp=_ratio(counter.iou_sum, counter.matched), recall=_ratio(counter.matched, len(gt)),
        precision=_ratio(counter.matched, len(pred)), gt=len(gt), predictions=len(pred), matched=counter.matched,
        false_positives=false_positives, misses=misses, id_switches=counter.switches, fragmentations=fragmentations,
        gt_tracks=len(np.unique(gt.ids)), mostly_tracked=mt, partially_tracked=pt, mostly_lost=ml,
        iou_sum=counter.iou_sum)
    return clear, np.concatenate(pair_gt), np.concatenate(pair_pred), hota_frames


def _sum_clear(parts: list[ClearMotScores]) -> ClearMotScores:
    """The counts of several cameras added up, and the ratios recomputed from them."""
    fields = [f.name for f in dataclasses.fields(ClearMotScores)][4:]
    total = {name: sum(getattr(part, name) for part in parts) for name in fields}
    errors = total["misses"] + total["false_positives"] + total["id_switches"]
    return ClearMotScores(mota=1.0 - _ratio(errors, total["gt"]), motp=_ratio(total["iou_sum"], total["matched"]),
                          recall=_ratio(total["matched"], total["gt"]),
                          precision=_ratio(total["matched"], total["predictions"]), **total)


# ------------------------------------------------------------------------------------------ identity measures


def identity_scores(gt_ids: np.ndarray, pred_ids: np.ndarray, pair_gt: np.ndarray,
                    pair_pred: np.ndarray) -> IdentityScores:
    """IDF1/IDP/IDR from the id of every GT and predicted detection and the ids of the overlapping pairs."""
    gt_unique, pred_unique = np.unique(gt_ids), np.unique(pred_ids)
    overlap = np.zeros((len(gt_unique), len(pred_unique)), dtype=np.int64)
    np.add.at(overlap, (np.searchsorted(gt_unique, pair_gt), np.searchsorted(pred_unique, pair_pred)), 1)
    idtp = 0
    if overlap.size:
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        idtp = int(overlap[rows, cols].sum())
    idfn, idfp = len(gt_ids) - idtp, len(pred_ids) - idtp
    return IdentityScores(idf1=_ratio(2 * idtp, 2 * idtp + idfp + idfn), idp=_ratio(idtp, idtp + idfp),
                          idr=_ratio(idtp, idtp + idfn), idtp=idtp, idfp=idfp, idfn=idfn)


# ------------------------------------------------------------------------------------------ evaluation


def _check_threshold(iou_threshold: float) -> None:
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


def evaluate_camera(gt: MotTracks, pred: MotTracks, *, iou_threshold: float = 0.5,
                    camera: str = "") -> CameraScores:
    """CLEAR MOT, identity measures and HOTA of one camera."""
    _check_threshold(iou_threshold)
    clear, pair_gt, pair_pred, frames = _clear_and_overlaps(gt, pred, iou_threshold)
    return CameraScores(camera, clear, identity_scores(gt.ids, pred.ids, pair_gt, pair_pred), hota_scores(frames))


def evaluate_mtmc(gt: Mapping[str, MotTracks], pred: Mapping[str, MotTracks], *,
                  iou_threshold: float = 0.5) -> MtmcScores:
    """Every camera of ``gt`` (a camera without predictions has only misses), and all of them together.

    Ids are global: the same id on two cameras is the same person (GT) or the same predicted identity.
    A camera in ``pred`` that is not in ``gt`` is a :class:`MotDataError`.
    """
    _check_threshold(iou_threshold)
    unknown = sorted(set(pred) - set(gt))
    if unknown:
        raise MotDataError(f"camera(s) {', '.join(unknown)} of the predictions are not in the ground truth "
                           f"(cameras: {', '.join(sorted(gt)) or 'none'})")
    cameras, gt_ids, pred_ids, pair_gt, pair_pred, frames = [], [], [], [], [], []
    for camera in sorted(gt):
        if camera not in pred:
            logger.warning("camera %s has no predictions: all its ground truth boxes are misses", camera)
        truth, guess = gt[camera], pred.get(camera, MotTracks.empty())
        clear, overlap_gt, overlap_pred, camera_frames = _clear_and_overlaps(truth, guess, iou_threshold)
        identity = identity_scores(truth.ids, guess.ids, overlap_gt, overlap_pred)
        cameras.append(CameraScores(camera, clear, identity, hota_scores(camera_frames)))
        frames += camera_frames
        gt_ids.append(truth.ids)
        pred_ids.append(guess.ids)
        pair_gt.append(overlap_gt)
        pair_pred.append(overlap_pred)
    empty = [np.zeros(0, dtype=np.int64)]
    joint = identity_scores(*(np.concatenate(empty + part) for part in (gt_ids, pred_ids, pair_gt, pair_pred)))
    return MtmcScores(tuple(cameras), _sum_clear([c.clear for c in cameras]), joint, iou_threshold,
                      combine_hota([c.hota for c in cameras]), hota_scores(frames))


def evaluate_folders(gt_dir: str | Path, pred_dir: str | Path, *, iou_threshold: float = 0.5) -> MtmcScores:
    """:func:`evaluate_mtmc` of two folders of cameras (:func:`~keyreid_stream.mot.read_camera_dir`):
    ground truth (``gt=True`` filters) and predictions."""
    _check_threshold(iou_threshold)
    return evaluate_mtmc(read_camera_dir(gt_dir, gt=True), read_camera_dir(pred_dir), iou_threshold=iou_threshold)


# ------------------------------------------------------------------------------------------ report

_COLUMNS = ("IDF1", "IDP", "IDR", "MOTA", "MOTP", "Rcll", "Prcn", "GT", "MT", "PT", "ML", "FP", "FN", "IDSW", "FM",
            "HOTA", "DetA", "AssA", "LocA")


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def _row(name: str, clear: ClearMotScores, identity: IdentityScores | None, hota: HotaScores, width: int) -> str:
    ids = ("", "", "") if identity is None else (identity.idf1, identity.idp, identity.idr)
    values = [*(v if isinstance(v, str) else _percent(v) for v in ids), _percent(clear.mota), _percent(clear.motp),
              _percent(clear.recall), _percent(clear.precision), *(str(v) for v in (
                  clear.gt_tracks, clear.mostly_tracked, clear.partially_tracked, clear.mostly_lost,
                  clear.false_positives, clear.misses, clear.id_switches, clear.fragmentations)),
              *(_percent(v) for v in (hota.hota, hota.deta, hota.assa, hota.loca))]
    return f"{name:<{width}}" + "".join(f"{value:>7}" for value in values)


def format_mtmc_table(scores: MtmcScores) -> str:
    """Per camera: identity measures and CLEAR MOT (percentages, counts); then all cameras; then the MTMC line."""
    width = max([len("camera"), len("all cameras"), *(len(c.camera) for c in scores.cameras)]) + 2
    lines = [f"{'camera':<{width}}" + "".join(f"{name:>7}" for name in _COLUMNS)]
    lines += [_row(c.camera, c.clear, c.identity, c.hota, width) for c in scores.cameras]
    lines.append(_row("all cameras", scores.overall, None, scores.overall_hota, width))
    joint = scores.mtmc
    lines.append(f"MTMC (identities across {len(scores.cameras)} camera(s), IoU >= {scores.iou_threshold:g}): "
                 f"IDF1 {_percent(joint.idf1)}  IDP {_percent(joint.idp)}  IDR {_percent(joint.idr)}  "
                 f"(IDTP {joint.idtp}, IDFP {joint.idfp}, IDFN {joint.idfn})")
    h = scores.mtmc_hota
    lines.append(f"MTMC HOTA (global ids, alpha 0.05-0.95): HOTA {_percent(h.hota)}  DetA {_percent(h.deta)}  "
                 f"AssA {_percent(h.assa)}  DetRe {_percent(h.detre)}  DetPr {_percent(h.detpr)}  "
                 f"AssRe {_percent(h.assre)}  AssPr {_percent(h.asspr)}  LocA {_percent(h.loca)}")
    return "\n".join(lines)
