"""Ranking metrics of person re-identification: CMC, mAP and mINP under the standard video protocol.

Protocol (Zheng et al. 2016, "MARS: A Video Benchmark for Large-Scale Person Re-identification", which keeps
the Market-1501 protocol of Zheng et al. 2015, "Scalable Person Re-identification: A Benchmark"): every query
and gallery item is one tracklet with one person id and one camera id. For each query the gallery is ranked
by increasing distance; gallery items with the query's person id *and* camera id are removed (they are
neither correct nor wrong); the remaining items with the query's person id are its true matches. A query
with no true match left is skipped (counted in :attr:`RankResult.num_skipped_queries`).

* CMC: ``cmc[k - 1]`` is the fraction of the kept queries whose first true match is within rank ``k``.
* AP: the mean, over the query's true matches, of the precision at each match's position; mAP is the mean
  over the kept queries.
* INP (Ye et al. 2021, "Deep Learning for Person Re-identification: A Survey and Outlook"): the number of
  true matches divided by the (1-based) rank of the last one; mINP is the mean over the kept queries.

Positions are counted among the kept gallery items. Ties in distance are broken by the lower gallery index
first (the order of a stable sort), so the result never depends on the sorting algorithm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RankResult", "aggregate_results", "evaluate_rank", "official_camera_ids", "stable_argsort"]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 128  # queries ranked at once: bounds the (chunk, G) int64 keys (about 10 MB for G = 9330)
REPORTED_RANKS = (1, 5, 10, 20)


@dataclass(frozen=True, eq=False)
class RankResult:
    """Result of :func:`evaluate_rank`; the arrays are read-only. Compared by identity (it holds arrays)."""

    cmc: np.ndarray  # (max_rank,) float64
    mAP: float
    mINP: float
    average_precision: np.ndarray  # (num_valid_queries,) AP of each kept query, in query order
    valid: np.ndarray  # (Q,) bool: the query had at least one true match left
    num_valid_queries: int
    num_skipped_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy, ``cmc[k - 1]``."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"k must be in [1, {len(self.cmc)}] (the length of cmc), got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, float]:
        """mAP, mINP, rank1/5/10/20 (those within the CMC length) and the query counts, as floats."""
        out = {"mAP": float(self.mAP), "mINP": float(self.mINP)}
        out.update({f"rank{k}": self.rank(k) for k in REPORTED_RANKS if k <= len(self.cmc)})
        out["valid_queries"] = float(self.num_valid_queries)
        out["skipped_queries"] = float(self.num_skipped_queries)
        return out


def stable_argsort(values: np.ndarray) -> np.ndarray:
    """Row-wise ``np.argsort(values, axis=1, kind="stable")`` of a 2-D array without NaN, computed faster.

    NumPy's stable sort is several times slower than its default one, and float32 distances tie often (24
    bits of mantissa). So rows are sorted with unique int64 keys, for which every sorting algorithm gives the
    same order: for float32 (and narrower) values, the order-preserving bit pattern of the value followed by
    the column index; otherwise an unstable argsort, after which only the rows with ties are sorted again by
    the index of each value's group of equal values followed by the column index.
    """
    width = values.shape[1]
    if values.dtype.itemsize <= 4 and np.issubdtype(values.dtype, np.floating):
        bits = (values.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
        order_bits = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(1 << 31)).astype(np.int64)
        keys = (order_bits << 32) | np.arange(width, dtype=np.int64)  # may wrap negative: still ordered
        keys ^= np.int64(-(1 << 63))  # flip the sign bit so that the signed order is the unsigned one
        keys.sort(axis=1)
        result: np.ndarray = keys & np.int64(0xFFFFFFFF)
        return result
    order = np.argsort(values, axis=1)
    ordered = np.take_along_axis(values, order, axis=1)
    changes = ordered[:, 1:] != ordered[:, :-1]
    tied = np.flatnonzero(~changes.all(axis=1))
    if len(tied):
        keys = np.zeros((len(tied), width), dtype=np.int64)
        np.cumsum(changes[tied], axis=1, out=keys[:, 1:])  # index of the group of equal values
        keys *= width
        keys += order[tied]
        keys.sort(axis=1)
        order[tied] = keys % width
    return order


def _as_ids(values: np.ndarray, name: str, length: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {array.shape} dtype {array.dtype}")
    if length is not None and len(array) != length:
        raise ValueError(f"{name} has {len(array)} entries, expected {length} to match distmat")
    return array


def _check_distmat(distmat: np.ndarray) -> np.ndarray:
    dist = np.asarray(distmat)
    if dist.ndim != 2:
        raise ValueError(f"distmat must have shape (Q, G), got {dist.shape}")
    if dist.shape[0] == 0 or dist.shape[1] == 0:
        raise ValueError(f"distmat is empty: shape {dist.shape}")
    if not (np.issubdtype(dist.dtype, np.floating) or np.issubdtype(dist.dtype, np.integer)):
        raise ValueError(f"distmat must be a real-valued array, got dtype {dist.dtype}")
    if np.issubdtype(dist.dtype, np.floating) and np.isnan(dist).any():
        raise ValueError("distmat contains NaN")
    return dist


def _rank_chunk(dist: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, g_pids: np.ndarray,
                g_camids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For rows of distmat: (first match position, last match position, number of matches, AP sum).

    Positions are 0-based among the kept gallery items; both are -1 for a query with no true match. After
    the sort only the (few) gallery items with the query's person id are handled, as flat arrays.
    """
    chunk = dist.shape[0]
    order = stable_argsort(dist)
    rows, cols = np.nonzero(g_pids[order] == q_pids[:, None])  # same person id, row-major (sorted) order
    junk = g_camids[order[rows, cols]] == q_camids[rows]
    junk_before = np.cumsum(junk) - junk  # junk items before each entry, counted over all rows
    row_start = np.searchsorted(rows, rows)
    kept_pos = cols - (junk_before - junk_before[row_start])
    match_rows, match_pos = rows[~junk], kept_pos[~junk]
    num_rel = np.bincount(match_rows, minlength=chunk)
    ordinal = np.arange(len(match_rows)) - np.searchsorted(match_rows, match_rows) + 1
    ap_sum = np.bincount(match_rows, weights=ordinal / (match_pos + 1.0), minlength=chunk)
    first = np.full(chunk, -1, dtype=np.int64)
    last = np.full(chunk, -1, dtype=np.int64)
    has = num_rel > 0
    starts = np.cumsum(num_rel) - num_rel
    first[has] = match_pos[starts[has]]
    last[has] = match_pos[starts[has] + num_rel[has] - 1]
    return first, last, num_rel, ap_sum


def evaluate_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                  g_camids: np.ndarray, max_rank: int = 50) -> RankResult:
    """CMC, mAP and mINP of a (Q, G) query-gallery distance matrix under the standard protocol (see above).

    ``distmat`` is any real array without NaN (smaller = more similar; infinities are allowed); the ids are
    1-D integer arrays of lengths Q and G. Ties in distance rank the lower gallery index first. The CMC has
    ``min(max_rank, G)`` entries. Queries are processed in chunks of ``CHUNK_ROWS`` rows to bound memory.
    Raises ValueError on malformed input and when no query has a true match.
    """
    dist = _check_distmat(distmat)
    num_q, num_g = dist.shape
    q_pids, q_camids = _as_ids(q_pids, "q_pids", num_q), _as_ids(q_camids, "q_camids", num_q)
    g_pids, g_camids = _as_ids(g_pids, "g_pids", num_g), _as_ids(g_camids, "g_camids", num_g)
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    if num_g < max_rank:
        _say_once((num_g, int(max_rank)), "gallery has %d items, fewer than max_rank=%d: the CMC has %d entries "
                  "(said once per process)", num_g, max_rank, num_g)
    length = min(int(max_rank), num_g)
    parts = [_rank_chunk(dist[start:start + CHUNK_ROWS], q_pids[start:start + CHUNK_ROWS],
                         q_camids[start:start + CHUNK_ROWS], g_pids, g_camids)
             for start in range(0, num_q, CHUNK_ROWS)]
    first, last, num_rel, ap_sum = (np.concatenate(column) for column in zip(*parts, strict=True))
    return _summarise(first, last, num_rel, ap_sum, length)


def _summarise(first: np.ndarray, last: np.ndarray, num_rel: np.ndarray, ap_sum: np.ndarray,
               length: int) -> RankResult:
    valid = num_rel > 0
    num_valid = int(valid.sum())
    skipped = len(valid) - num_valid
    if num_valid == 0:
        raise ValueError(f"no query has a true match in the gallery (all {len(valid)} queries skipped)")
    if skipped:
        logger.warning("%d of %d queries have no true match in the gallery and were skipped", skipped,
                       len(valid))
    hits = np.bincount(first[valid], minlength=length)[:length]
    cmc = np.cumsum(hits) / num_valid
    average_precision = ap_sum[valid] / num_rel[valid]
    inp = num_rel[valid] / (last[valid] + 1.0)
    for array in (cmc, average_precision, valid):
        array.setflags(write=False)
    return RankResult(cmc=cmc, mAP=float(average_precision.mean()), mINP=float(inp.mean()),
                      average_precision=average_precision, valid=valid, num_valid_queries=num_valid,
                      num_skipped_queries=skipped)


def official_camera_ids(camids: np.ndarray, frame_counts: np.ndarray) -> np.ndarray:
    """The camera ids that the authors' evaluation code (KeyRe-ID / VID-Trans-ReID) actually compares.

    Their test loop extends its camera-id list with one entry per *frame* of every tracklet, then indexes
    that list with *tracklet* indices, so tracklet ``i`` is compared under the camera id of the ``i``-th
    frame overall: ``np.repeat(camids, frame_counts)[:len(camids)]``. This reproduces the behaviour of the
    authors' code, for side-by-side reporting only; it is not the standard protocol (use the per-tracklet
    ``camids`` with :func:`evaluate_rank` for that).
    """
    cams = _as_ids(camids, "camids")
    counts = _as_ids(frame_counts, "frame_counts", len(cams))
    if (counts < 0).any():
        raise ValueError("frame_counts must be >= 0")
    if counts.sum() < len(cams):
        raise ValueError(f"frame_counts sum to {counts.sum()}, fewer than the {len(cams)} tracklets")
    return np.repeat(cams, counts)[:len(cams)]


_SAID: set[object] = set()
_SAID_LOCK = threading.Lock()


def _say_once(key: object, message: str, *args: object) -> None:
    """Log ``message`` at INFO the first time ``key`` comes up in this process, at DEBUG afterwards (a note that
    every validation of a training run would otherwise repeat)."""
    with _SAID_LOCK:
        first = key not in _SAID
        _SAID.add(key)
    logger.log(logging.INFO if first else logging.DEBUG, message, *args)


def aggregate_results(results: Sequence[RankResult]) -> dict[str, tuple[float, float]]:
    """Mean and population standard deviation (ddof=0) of each :meth:`RankResult.as_dict` metric over
    splits (e.g. the 10 random splits of iLIDS-VID and PRID-2011). All results must report the same
    metrics (the same CMC length class)."""
    if len(results) == 0:
        raise ValueError("results is empty")
    rows = [result.as_dict() for result in results]
    names = list(rows[0])
    for row in rows[1:]:
        if list(row) != names:
            raise ValueError(f"results report different metrics: {names} vs {list(row)}")
    table = np.array([[row[name] for name in names] for row in rows], dtype=np.float64)
    means, stds = table.mean(axis=0), table.std(axis=0)
    return {name: (float(mean), float(std)) for name, mean, std in zip(names, means, stds, strict=True)}
