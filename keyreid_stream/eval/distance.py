"""Query-gallery distance matrices for re-identification, computed with torch in float32 chunks.

``squared_euclidean`` is the metric of the re-ID papers' evaluation (Zheng et al. 2016, MARS, and the
KeyRe-ID / VID-Trans-ReID test code rank by ``||q||^2 + ||g||^2 - 2 q.g``); ``euclidean`` is its square root
and ``cosine`` is ``1 - cos(q, g)``. The squared norms are expanded, so identical vectors give a distance
near, not exactly, 0 (cancellation); negative round-off is clamped to 0. On the CPU the Euclidean metrics are
accumulated in float64: in float32 the cancellation left identical vectors of norm ~300 about 1 % of the distance
scale apart with some BLAS kernels. Cosine treats a zero
vector as orthogonal to everything (distance 1), never NaN.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["METRICS", "pairwise_distances"]

logger = logging.getLogger(__name__)

METRICS = ("squared_euclidean", "euclidean", "cosine")
CPU_FLOAT64_ROWS = 1024


def _as_features(values: torch.Tensor | np.ndarray, name: str, device: torch.device | None) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        tensor = values.detach()
    else:
        array = np.asarray(values)
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"{name} must be a real-valued array, got dtype {array.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(tensor.shape)}")
    if tensor.is_complex():
        raise ValueError(f"{name} must be real-valued, got {tensor.dtype}")
    tensor = tensor.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _fill(out: torch.Tensor, query: torch.Tensor, gallery: torch.Tensor, gallery_sq: torch.Tensor | None,
          metric: str) -> None:
    """Write the distances of the ``query`` rows to the ``gallery`` into ``out``, in place."""
    if metric == "cosine":
        torch.mm(query, gallery.t(), out=out)
        out.neg_().add_(1.0).clamp_(0.0, 2.0)
        return
    assert gallery_sq is not None  # given for every metric but cosine
    out.copy_(gallery_sq.expand_as(out))
    out.addmm_(query, gallery.t(), alpha=-2.0)
    out.add_(query.pow(2).sum(dim=1, keepdim=True)).clamp_(min=0.0)
    if metric == "euclidean":
        out.sqrt_()


def pairwise_distances(query: torch.Tensor | np.ndarray, gallery: torch.Tensor | np.ndarray,
                       metric: str = "squared_euclidean", chunk_size: int = 4096) -> np.ndarray:
    """(Q, G) float32 numpy distances between the rows of ``query`` (Q, D) and ``gallery`` (G, D).

    Tensors are used on their own device (the gallery is moved to the query's) and cast to float32; numpy
    arrays run on the CPU. On the CPU the result is computed in place; on another device ``chunk_size`` query
    rows at a time (about ``chunk_size x G`` floats there) are computed and copied back. Raises ValueError on
    empty, mismatched or non-finite input.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    with torch.inference_mode():
        q = _as_features(query, "query", None)
        g = _as_features(gallery, "gallery", q.device)
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"query and gallery dimensions differ: {q.shape[1]} vs {g.shape[1]}")
        gallery_sq = None
        if metric == "cosine":
            q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)  # zero rows stay zero: distance 1
        else:
            gallery_sq = g.pow(2).sum(dim=1)
        float64_on_cpu = q.device.type == "cpu" and metric != "cosine"
        if float64_on_cpu:  # in chunks of at most CPU_FLOAT64_ROWS rows
            assert gallery_sq is not None  # computed above for every metric but cosine
            q, g, gallery_sq = q.double(), g.double(), gallery_sq.double()
            chunk_size = min(chunk_size, CPU_FLOAT64_ROWS)
        out = np.empty((q.shape[0], g.shape[0]), dtype=np.float32)
        host = torch.from_numpy(out)
        for start in range(0, q.shape[0], chunk_size):
            rows = host[start:start + chunk_size]  # contiguous: computed in place on the CPU
            direct = q.device.type == "cpu" and not float64_on_cpu
            target = rows if direct else torch.empty(rows.shape, dtype=q.dtype, device=q.device)
            _fill(target, q[start:start + chunk_size], g, gallery_sq, metric)
            if target is not rows:
                rows.copy_(target)
    logger.debug("%s distances %s computed on %s", metric, out.shape, q.device)
    return out
