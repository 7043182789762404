"""The local branch's token plumbing: TCSS and KPS (KeyRe-ID, Kim et al., "Local branch"; VID-Trans-ReID).

* TCSS (temporal clip shift and shuffle): the patch tokens of the T frames are concatenated per patch,
  ``(B, T, n, D) -> (B, n, T*D)``, circularly shifted along the patch axis and shuffled in two interleaved
  groups. :func:`tcss_permutation` gives that reordering as an index tensor, so it is a plain permutation with an
  inverse (``torch.argsort(perm)``) and can be applied to anything indexed by patch -- in particular to the
  part weights, so that every weight stays on its own patch's token.
* KPS (keypoint-guided part segmentation): per part k, the patch rows are multiplied by the part's clip-level
  patch importance (part heatmaps pooled to the patch grid, averaged over T), the temporally flattened [CLS]
  row is prepended, and the shared part transformer reads the [CLS] output.
* Stripes (VID-Trans-ReID and the "without KPS" ablation): the shuffled rows cut into K equal groups.

``official=True`` reproduces the authors' code instead: a raw ``view`` of the ``(B*T, 1+n, D)`` tokens as
``(B, 1+n, T*D)`` (each row holds T consecutive tokens of one frame), its first row used as the [CLS] row, part
weights in raster order on the shuffled rows, and heatmaps mapped to [-1, 1] before pooling.
"""

from __future__ import annotations

import torch

__all__ = [
    "kps_sequences", "part_weights", "stripe_sequences", "tcss_permutation", "temporal_rows",
]


def tcss_permutation(num_patches: int, shift: int, *, official: bool = False) -> torch.Tensor:
    """Row order after TCSS: ``rows[:, perm]`` is the shifted and shuffled sequence.

    Shift: the rows from 1-based position ``shift`` onwards come first and the first ``shift - 1`` rows move to
    the end (VID-Trans-ReID's shift of 5). Shuffle: the shifted sequence is cut into two halves that are
    interleaved (first of half 1, first of half 2, second of half 1, ...). With an odd count the paper mode keeps
    a true permutation (the first half is one longer); the official mode duplicates the second-to-last row, as the
    authors' code does, and returns ``num_patches + 1`` indices.
    """
    if num_patches < 2:
        raise ValueError(f"TCSS needs at least 2 patches, got {num_patches}")
    if not 1 <= shift <= num_patches:
        raise ValueError(f"TCSS shift must be in [1, {num_patches}], got {shift}")
    order = torch.cat([torch.arange(shift - 1, num_patches), torch.arange(0, shift - 1)])
    if official and num_patches % 2:
        order = torch.cat([order, order[-2:-1]])
    half = (order.numel() + 1) // 2
    first, second = order[:half], order[half:]
    shuffled = torch.empty_like(order)
    shuffled[0::2] = first
    shuffled[1::2] = second
    return shuffled


def temporal_rows(tokens: torch.Tensor, batch: int, frames: int, *, official: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone tokens ``(B*T, 1+n, D)`` -> ([CLS] row ``(B, 1, T*D)``, patch rows ``(B, n, T*D)``).

    Paper mode: row i holds patch i of frames 1..T, the [CLS] row holds the T frame [CLS] tokens.
    Official mode: the authors' raw view; row r holds tokens r*T .. r*T+T-1 of the frame-major sequence.
    """
    length, dim = tokens.shape[1], tokens.shape[2]
    if official:
        rows = tokens.reshape(batch, length, frames * dim)
        return rows[:, :1], rows[:, 1:]
    per_frame = tokens.reshape(batch, frames, length, dim)
    cls_row = per_frame[:, :, 0].reshape(batch, 1, frames * dim)
    patch_rows = per_frame[:, :, 1:].permute(0, 2, 1, 3).reshape(batch, length - 1, frames * dim)
    return cls_row, patch_rows


def part_weights(pooled: torch.Tensor, *, official: bool) -> torch.Tensor:
    """Clip-level part-to-patch importance ``(B, n, K)`` (raster order) from patch-pooled heatmaps ``(B, T, K, n)``.

    The mean of each patch (see :func:`~keyreid_stream.keypoints.heatmaps.render_patch_weights`), averaged over
    the T frames. Official mode first maps heatmaps to [-1, 1] (``2h - 1``, the authors' loader normalisation),
    so a patch without any keypoint weighs -1, not 0.
    """
    if official:
        pooled = 2.0 * pooled - 1.0
    return pooled.mean(dim=1).transpose(1, 2)


def kps_sequences(cls_row: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per part ``[cls_row, rows * weights[..., k]]``: ``(B*K, 1 + n, T*D)``, part-major within each clip.

    ``rows`` and ``weights`` must already be in the same row order (paper: both permuted by TCSS).
    """
    batch, num_rows, width = rows.shape
    num_parts = weights.shape[-1]
    if weights.shape[:2] != (batch, num_rows):
        raise ValueError(f"part weights {tuple(weights.shape)} do not match the patch rows {tuple(rows.shape)}")
    weighted = rows.unsqueeze(1) * weights.transpose(1, 2).unsqueeze(-1)  # (B, K, n, TD)
    cls = cls_row.unsqueeze(1).expand(batch, num_parts, 1, width)
    return torch.cat([cls, weighted], dim=2).reshape(batch * num_parts, num_rows + 1, width)


def stripe_sequences(cls_row: torch.Tensor, rows: torch.Tensor, num_stripes: int) -> torch.Tensor:
    """VID-Trans-ReID's parts: the rows cut into ``num_stripes`` equal groups, each behind the [CLS] row."""
    batch, num_rows, width = rows.shape
    length = num_rows // num_stripes
    if length == 0:
        raise ValueError(f"{num_rows} rows cannot be cut into {num_stripes} stripes")
    stripes = rows[:, : num_stripes * length].reshape(batch, num_stripes, length, width)
    cls = cls_row.unsqueeze(1).expand(batch, num_stripes, 1, width)
    return torch.cat([cls, stripes], dim=2).reshape(batch * num_stripes, length + 1, width)
