"""k-reciprocal re-ranking of a query-gallery distance matrix.

Zhong et al., CVPR 2017, "Re-ranking Person Re-identification with k-reciprocal Encoding". All N = Q + G
queries and gallery items take part together ("probes" below):

* Distances: the three blocks are assembled into one (N, N) matrix, squared, and each row is divided by its
  maximum (a row keeps its order; with symmetric blocks this is the column normalisation of the authors'
  implementation). ``d(p, g)`` below is this matrix. As there, the inputs are squared here: plain Euclidean
  distances in give the paper's squared distances.
* ``N(p, k)``: the first ``k + 1`` probes of p's ranking, i.e. p itself (at distance 0) and its k nearest
  others; ties are broken by the lower index first.
* k-reciprocal neighbours (eq. 4): ``R(p, k) = {g in N(p, k) : p in N(g, k)}``.
* Expansion (eqs. 5-6): ``R*(p, k1)`` is ``R(p, k1)`` united with ``R(q, h)`` for every ``q in R(p, k1)``
  with ``|R(p, k1) & R(q, h)| >= 2/3 |R(q, h)|``, where ``h = round(k1 / 2)`` (half to even). The ``>=`` is
  the paper's; the authors' released code tests ``>``, which differs when the overlap is exactly 2/3.
* Encoding (eq. 7): ``V[p, g] = exp(-d(p, g))`` for ``g in R*(p, k1)``, else 0; each row sums to 1.
* Local query expansion (eq. 11): row p of V is replaced by the mean of the rows of the first ``k2`` probes
  of p's ranking (p included); ``k2 = 1`` leaves V unchanged.
* Jaccard distance (eq. 10): ``d_J(p, g) = 1 - sum(min(V[p], V[g])) / sum(max(V[p], V[g]))``, computed from
  the sparse V by pairing the non-zeros that share a column.
* Final distance (eq. 12): ``(1 - lambda) d_J + lambda d``.

Memory: the (N, N) float32 distance matrix is formed, N^2 x 4 bytes (0.5 GB for MARS, N = 11,310; the whole
call peaks near 2 GB there). V is sparse, and the Jaccard sums are accumulated in blocks of queries.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import sparse

from keyreid_stream.eval.rank import stable_argsort

__all__ = ["re_ranking"]

logger = logging.getLogger(__name__)

SORT_ROWS = 256  # probes whose nearest neighbours are found at once
PAIR_BUDGET = 4_000_000  # non-zero pairs handled at once in the Jaccard sums
MAX_BLOCK_ROWS = 256  # queries whose Jaccard sums are accumulated at once


def _check_block(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be real-valued, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (array < 0).any():
        raise ValueError(f"{name} has negative distances; re-ranking needs distances >= 0")
    return array


def _check_parameters(k1: int, k2: int, lambda_value: float) -> None:
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")


def _joint_distances(q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray) -> np.ndarray:
    """The (N, N) float32 matrix of squared distances, each row divided by its maximum (built with torch,
    whose transposed copy is much faster than numpy's)."""
    q_g = _check_block(q_g_dist, "q_g_dist")
    q_q = _check_block(q_q_dist, "q_q_dist")
    g_g = _check_block(g_g_dist, "g_g_dist")
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(f"q_q_dist must be ({num_q}, {num_q}) and g_g_dist ({num_g}, {num_g}) to match "
                         f"q_g_dist {q_g.shape}, got {q_q.shape} and {g_g.shape}")
    q_g_t, q_q_t, g_g_t = (torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
                           for block in (q_g, q_q, g_g))
    dist = torch.empty((num_q + num_g, num_q + num_g), dtype=torch.float32)
    dist[:num_q, :num_q], dist[:num_q, num_q:] = q_q_t, q_g_t
    dist[num_q:, :num_q], dist[num_q:, num_q:] = q_g_t.t(), g_g_t
    dist.square_()
    dist /= dist.amax(dim=1, keepdim=True).clamp_(min=torch.finfo(torch.float32).tiny)
    return dist.numpy()


def _first_k(block: np.ndarray, kth: np.ndarray, k: int) -> np.ndarray:
    """The k smallest entries of each row, in order, lower index first among ties: every entry up to the
    row's k-th smallest value ``kth``, sorted stably (padded with inf, which validated input never has)."""
    rows, cols = np.nonzero(block <= kth[:, None])
    counts = np.bincount(rows, minlength=len(block))
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    values = np.full((len(block), counts.max()), np.inf, dtype=block.dtype)
    index = np.zeros(values.shape, dtype=np.int64)
    values[rows, slot], index[rows, slot] = block[rows, cols], cols
    return np.take_along_axis(index, stable_argsort(values)[:, :k], axis=1)


def _nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k smallest entries, in order, lower index first among ties."""
    parts = []
    for start in range(0, dist.shape[0], SORT_ROWS):
        block = dist[start:start + SORT_ROWS]
        kth = torch.topk(torch.from_numpy(block), k, dim=1, largest=False, sorted=False).values.amax(dim=1)
        parts.append(_first_k(block, kth.numpy(), k))
    return np.concatenate(parts)


def _reciprocal(top: np.ndarray, size: int) -> np.ndarray:
    """R(p, size - 1) for every p: the first ``size`` neighbours of p that have p among their first ``size``;
    the others are replaced by -1."""
    forward = top[:, :size]
    backward = top[forward, :size]  # (N, size, size)
    mutual = (backward == np.arange(len(top))[:, None, None]).any(axis=2)
    return np.where(mutual, forward, -1)


def _expanded_sets(top: np.ndarray, full: int, half: int) -> np.ndarray:
    """R*(p, k1) of every probe as an (N, W) index array padded with -1 (may hold duplicates)."""
    n = len(top)
    recip = _reciprocal(top, full)  # (N, full)
    candidates = np.where((recip >= 0)[..., None], _reciprocal(top, half)[recip], -1)  # (N, full, half)
    present = candidates >= 0
    # Membership of each candidate in its own row of recip: search row-offset keys in one sorted array.
    offsets = np.arange(n)[:, None] * (n + 1) + 1
    members = np.sort(recip + offsets, axis=1).ravel()
    wanted = (candidates + offsets[..., None]).ravel()
    found = members[np.minimum(np.searchsorted(members, wanted), len(members) - 1)] == wanted
    overlap = (found.reshape(candidates.shape) & present).sum(axis=2)
    size = present.sum(axis=2)
    accept = (recip >= 0) & (size > 0) & (3 * overlap >= 2 * size)
    added = np.where(accept[..., None], candidates, -1).reshape(n, -1)
    return np.concatenate([recip, added], axis=1)


def _encode(dist: np.ndarray, sets: np.ndarray) -> sparse.csr_matrix:
    """V of eq. 7: Gaussian weights of each probe's expanded set (duplicates removed), rows summing to 1."""
    n = len(sets)
    rows = np.repeat(np.arange(n, dtype=np.int64), sets.shape[1])
    cols = sets.ravel()
    keys = np.unique(rows[cols >= 0] * n + cols[cols >= 0])
    rows, cols = keys // n, keys % n
    weights = np.exp(-dist[rows, cols].astype(np.float64))
    weights /= np.bincount(rows, weights=weights, minlength=n)[rows]
    return sparse.csr_matrix((weights, (rows, cols)), shape=(n, n))


def _expand(v: sparse.csr_matrix, neighbours: np.ndarray) -> sparse.csr_matrix:
    """Local query expansion: each row becomes the mean of the rows of its ``k2`` first neighbours."""
    n, k = neighbours.shape
    rows = np.repeat(np.arange(n), k)
    average = sparse.csr_matrix((np.full(n * k, 1.0 / k), (rows, neighbours.ravel())), shape=(n, n))
    return sparse.csr_matrix(average @ v)


def _row_blocks(row_pairs: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive query blocks of at most MAX_BLOCK_ROWS rows and (beyond one row) PAIR_BUDGET pairs."""
    blocks, start, pairs = [], 0, 0
    for row, count in enumerate(row_pairs.astype(np.int64).tolist()):
        if row > start and (pairs + count > PAIR_BUDGET or row - start >= MAX_BLOCK_ROWS):
            blocks.append((start, row))
            start, pairs = row, 0
        pairs += count
    blocks.append((start, len(row_pairs)))
    return blocks


def _min_sums(queries: sparse.csr_matrix, gallery: sparse.csc_matrix, start: int, stop: int) -> np.ndarray:
    """``sum(min(V[q], V[g]))`` for the queries in ``[start, stop)`` against every gallery item."""
    lo, hi = queries.indptr[start], queries.indptr[stop]
    cols, values = queries.indices[lo:hi], queries.data[lo:hi]
    rows = np.repeat(np.arange(stop - start), np.diff(queries.indptr[start:stop + 1]))
    counts = np.diff(gallery.indptr)[cols]  # gallery non-zeros sharing each query non-zero's column
    entry = np.repeat(np.arange(len(cols)), counts)
    first = np.repeat(gallery.indptr[cols] - (np.cumsum(counts) - counts), counts)
    partner = np.arange(len(entry)) + first
    num_g = gallery.shape[0]
    flat = rows[entry] * num_g + gallery.indices[partner]
    mins = np.minimum(values[entry], gallery.data[partner])
    return np.bincount(flat, weights=mins, minlength=(stop - start) * num_g).reshape(stop - start, num_g)


def _jaccard(v: sparse.csr_matrix, num_q: int) -> np.ndarray:
    """(Q, G) Jaccard distances of eq. 10 between the first ``num_q`` rows of V and the others."""
    queries, gallery = sparse.csr_matrix(v[:num_q]), sparse.csc_matrix(v[num_q:])
    totals = np.asarray(v.sum(axis=1)).ravel()
    q_totals, g_totals = totals[:num_q, None], totals[None, num_q:]
    entry_rows = np.repeat(np.arange(num_q), np.diff(queries.indptr))
    row_pairs = np.bincount(entry_rows, weights=np.diff(gallery.indptr)[queries.indices], minlength=num_q)
    out = np.empty((num_q, gallery.shape[0]), dtype=np.float64)
    for start, stop in _row_blocks(row_pairs):
        mins = _min_sums(queries, gallery, start, stop)
        union = np.maximum(q_totals[start:stop] + g_totals - mins, np.finfo(np.float64).tiny)
        out[start:stop] = 1.0 - mins / union
    return out


def re_ranking(q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """Re-ranked (Q, G) float32 distances from the query-gallery (Q, G), query-query (Q, Q) and
    gallery-gallery (G, G) distances (non-negative, finite; see the module docstring for the steps).

    ``lambda_value = 1`` returns the normalised original distances (same ranking per query), 0 the Jaccard
    distances only. Raises ValueError on malformed input or ``k1``/``k2`` < 1.
    """
    _check_parameters(k1, k2, lambda_value)
    dist = _joint_distances(q_g_dist, q_q_dist, g_g_dist)
    n, num_q = dist.shape[0], np.asarray(q_q_dist).shape[0]
    original = dist[:num_q, num_q:]
    if lambda_value == 1.0:
        result: np.ndarray = original.copy()
        return result
    top = _nearest(dist, min(max(k1 + 1, k2), n))
    sets = _expanded_sets(top, min(k1 + 1, n), min(round(k1 / 2) + 1, n))
    v = _encode(dist, sets)
    if k2 > 1:
        v = _expand(v, top[:, :min(k2, n)])
    logger.debug("re-ranking %d x %d: %d non-zeros in V", num_q, n - num_q, v.nnz)
    final = (1.0 - lambda_value) * _jaccard(v, num_q) + lambda_value * original
    return final.astype(np.float32)
