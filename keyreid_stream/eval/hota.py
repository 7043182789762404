"""HOTA, Higher Order Tracking Accuracy (Luiten et al., IJCV 2021), computed as TrackEval computes it.

At a localisation threshold ``alpha`` a ground truth (GT) box and a predicted box of one frame may match when
their similarity (IoU) is at least ``alpha``. Which pairs match is decided per frame by the Hungarian algorithm
maximising the sum of ``A(g, p) * IoU``, where ``A`` is the *global alignment score* of the two ids over the whole
sequence: the sum of their per-frame soft overlaps ``IoU / (row sum + column sum - IoU)`` divided by
``|g| + |p| - that sum`` (``|g|``: detections of the GT id). The matching is done once and thresholded at each
``alpha``. Then, per alpha:

* ``TP``, ``FN``, ``FP``: matched pairs, unmatched GT boxes, unmatched predictions;
  ``DetRe = TP / (TP + FN)``, ``DetPr = TP / (TP + FP)``, ``DetA = TP / (TP + FN + FP)``;
* for a matched pair of ids with ``TPA`` matches: ``AssA`` is the mean over the TPs of
  ``TPA / (|g| + |p| - TPA)``, ``AssRe`` of ``TPA / |g|`` and ``AssPr`` of ``TPA / |p|``;
* ``HOTA = sqrt(DetA * AssA)``; ``LocA``: the mean IoU of the TPs (1 when there is none).

Each reported number is the mean over ``alpha`` = 0.05, 0.10, ..., 0.95 (:data:`ALPHAS`); ``HOTA(0)`` and
``LocA(0)`` are the values at the lowest alpha. Sequences (cameras) are combined as TrackEval's
``combine_sequences`` does (:func:`combine_hota`): the counts added, the association scores averaged weighted by
TP. Across cameras with global ids (:func:`hota_scores` of every camera's frames together) a person is one GT id
on all cameras and a predicted identity one id on all cameras, so a person linked wrongly across cameras lowers
AssA while each camera alone may score 1.

Edge cases follow TrackEval: without predictions every GT box is a FN, without GT every prediction a FP; then
DetA, AssA and HOTA are 0 and LocA is 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["ALPHAS", "HotaFrame", "HotaScores", "combine_hota", "hota_scores"]

ALPHAS = np.arange(0.05, 0.99, 0.05)  # 0.05 ... 0.95, exactly TrackEval's array_labels
_EPS = np.finfo(float).eps
_NO_IDS = np.zeros(0, np.int64)


@dataclass(frozen=True)
class HotaFrame:
    """One frame (time step) of one camera: the GT ids, the predicted ids and their (n_gt, n_pred) IoU."""

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    similarity: np.ndarray


@dataclass(frozen=True)
class HotaScores:
    """HOTA and its parts, each the mean over :data:`ALPHAS`; ``tp``/``fn``/``fp`` and ``*_alpha``: the values
    per alpha (what :func:`combine_hota` needs)."""

    hota: float
    deta: float
    assa: float
    detre: float
    detpr: float
    assre: float
    asspr: float
    loca: float
    hota_0: float
    loca_0: float
    tp: tuple[int, ...]
    fn: tuple[int, ...]
    fp: tuple[int, ...]
    assa_alpha: tuple[float, ...]
    assre_alpha: tuple[float, ...]
    asspr_alpha: tuple[float, ...]
    loca_alpha: tuple[float, ...]

    @classmethod
    def from_alpha(cls, tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, assa: np.ndarray, assre: np.ndarray,
                   asspr: np.ndarray, loca: np.ndarray) -> HotaScores:
        """The summary of per-alpha counts and association scores (TrackEval's ``_compute_final_fields``)."""
        detre = tp / np.maximum(1, tp + fn)
        detpr = tp / np.maximum(1, tp + fp)
        deta = tp / np.maximum(1, tp + fn + fp)
        hota = np.sqrt(deta * assa)
        return cls(hota=float(hota.mean()), deta=float(deta.mean()), assa=float(assa.mean()),
                   detre=float(detre.mean()), detpr=float(detpr.mean()), assre=float(assre.mean()),
                   asspr=float(asspr.mean()), loca=float(loca.mean()), hota_0=float(hota[0]), loca_0=float(loca[0]),
                   tp=_ints(tp), fn=_ints(fn), fp=_ints(fp), assa_alpha=_floats(assa), assre_alpha=_floats(assre),
                   asspr_alpha=_floats(asspr), loca_alpha=_floats(loca))

    @property
    def deta_alpha(self) -> np.ndarray:
        tp, fn, fp = (np.asarray(v, float) for v in (self.tp, self.fn, self.fp))
        result: np.ndarray = tp / np.maximum(1, tp + fn + fp)
        return result

    @property
    def hota_alpha(self) -> np.ndarray:
        result: np.ndarray = np.sqrt(self.deta_alpha * np.asarray(self.assa_alpha))
        return result


def _ints(values: np.ndarray) -> tuple[int, ...]:
    return tuple(int(round(float(v))) for v in values)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _codes(frames: Sequence[HotaFrame], field: str) -> tuple[list[np.ndarray], int]:
    """Each frame's ids of ``field`` as contiguous codes 0..n-1 over all frames, and n."""
    arrays = [np.asarray(getattr(frame, field), np.int64).reshape(-1) for frame in frames]
    if not arrays:
        return [], 0
    unique, inverse = np.unique(np.concatenate([_NO_IDS, *arrays]), return_inverse=True)
    return np.split(inverse, np.cumsum([len(a) for a in arrays])[:-1]), len(unique)


def hota_scores(frames: Iterable[HotaFrame]) -> HotaScores:
    """HOTA of a sequence of frames (see the module docstring); ids are compared across all the frames, so the
    frames of several cameras with global ids give the cross-camera HOTA."""
    frames = list(frames)
    gt, n_gt = _codes(frames, "gt_ids")
    pred, n_pred = _codes(frames, "pred_ids")
    sims = [np.asarray(frame.similarity, float).reshape(len(g), len(p)) for frame, g, p in zip(frames, gt, pred)]
    a = len(ALPHAS)
    tp, fn, fp, loca_sum = np.zeros(a), np.zeros(a), np.zeros(a), np.zeros(a)
    zeros = np.zeros(a)
    if n_pred == 0 or n_gt == 0:
        fn[:] = sum(len(g) for g in gt)
        fp[:] = sum(len(p) for p in pred)
        return HotaScores.from_alpha(tp, fn, fp, zeros, zeros, zeros, np.ones(a))
    gt_count = np.bincount(np.concatenate(gt), minlength=n_gt).astype(float)
    pred_count = np.bincount(np.concatenate(pred), minlength=n_pred).astype(float)
    potential = np.zeros((n_gt, n_pred))
    for g, p, sim in zip(gt, pred, sims):
        if g.size and p.size:
            denom = sim.sum(axis=0)[None, :] + sim.sum(axis=1)[:, None] - sim
            soft = np.divide(sim, denom, out=np.zeros_like(sim), where=denom > _EPS)
            np.add.at(potential, (g[:, None], p[None, :]), soft)
    alignment = potential / (gt_count[:, None] + pred_count[None, :] - potential)
    matched: list[np.ndarray] = []  # rows of (alpha index, gt code, pred code), one per TP
    for g, p, sim in zip(gt, pred, sims):
        if not (g.size and p.size):
            fn += len(g)
            fp += len(p)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], p[None, :]] * sim))
        values = sim[rows, cols]
        hit = values[None, :] >= ALPHAS[:, None] - _EPS  # (alpha, pair)
        found = hit.sum(axis=1)
        tp += found
        fn += len(g) - found
        fp += len(p) - found
        loca_sum += (hit * values[None, :]).sum(axis=1)
        which, pair = np.nonzero(hit)
        matched.append(np.stack([which, g[rows][pair], p[cols][pair]], axis=1))
    assa, assre, asspr = np.zeros(a), np.zeros(a), np.zeros(a)
    if matched:
        triples, tpa = np.unique(np.concatenate(matched), axis=0, return_counts=True)
        if len(triples):
            which, gi, pi = triples.T
            tpa = tpa.astype(float)
            for out, denominator in ((assa, gt_count[gi] + pred_count[pi] - tpa), (assre, gt_count[gi]),
                                     (asspr, pred_count[pi])):
                np.add.at(out, which, tpa * tpa / np.maximum(1, denominator))
    assa, assre, asspr = (values / np.maximum(1, tp) for values in (assa, assre, asspr))
    loca = np.maximum(1e-10, loca_sum) / np.maximum(1e-10, tp)
    return HotaScores.from_alpha(tp, fn, fp, assa, assre, asspr, loca)


def combine_hota(parts: Sequence[HotaScores]) -> HotaScores:
    """Several sequences (cameras, each with its own ids) as one score: TrackEval's ``combine_sequences``."""
    a = len(ALPHAS)
    if not parts:
        return HotaScores.from_alpha(np.zeros(a), np.zeros(a), np.zeros(a), np.zeros(a), np.zeros(a), np.zeros(a),
                                     np.ones(a))
    tp_each = np.asarray([part.tp for part in parts], float)
    tp, fn, fp = tp_each.sum(0), np.asarray([p.fn for p in parts], float).sum(0), np.asarray(
        [p.fp for p in parts], float).sum(0)

    def weighted(field: str) -> np.ndarray:
        result: np.ndarray = (np.asarray([getattr(part, field) for part in parts]) * tp_each).sum(0) / np.maximum(1.0, tp)
        return result

    loca = np.maximum(1e-10, (np.asarray([p.loca_alpha for p in parts]) * tp_each).sum(0)) / np.maximum(1e-10, tp)
    return HotaScores.from_alpha(tp, fn, fp, weighted("assa_alpha"), weighted("assre_alpha"),
                                 weighted("asspr_alpha"), loca)
