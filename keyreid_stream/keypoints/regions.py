"""Head / body / legs regions of a person from 17 COCO keypoints (RAPA, Zhang et al., ICME 2021, Section 3.2).

RAPA splits the body of its reference frame into three parts "according to the distribution of key-points" and
ROI-pools each from the frame's feature map. Here a region is a box in pixels of the frame:

* rows -- three bands cut at the **neck line** (mean height of the visible shoulders) and the **waist line**
  (mean height of the visible hips): head ``[0, neck)``, body ``[neck, waist)``, legs ``[waist, H)``. A line whose
  joints are all invisible falls back to the average pedestrian of :data:`~keyreid_stream.keypoints.pose.PRIOR_LAYOUT`
  (19 % and 50 % of the height), and the lines are kept in order with every band at least ``min_size[0]`` tall;
* columns -- the horizontal extent of the region's visible joints widened by ``margin`` of the width on each side
  (at least ``min_size[1]`` wide); the full width when fewer than two of its joints are visible.

:func:`stripe_boxes` is the keypoint-free alternative (three equal horizontal stripes, RAPA's "hard segmentation"
ablation), and :func:`cell_masks` turns boxes into the cells of a feature map: a cell belongs to a box when its
centre does (rows half-open, so the three bands partition the rows; columns closed, so that a horizontal flip of
the keypoints mirrors every mask exactly). Everything is batch-first torch, vectorised and free of data-dependent
Python branches, so it runs on any device and inside an exported graph.
"""

from __future__ import annotations

import torch

from keyreid_stream.keypoints.heatmaps import CONFIDENCE_THRESHOLD, NUM_JOINTS
from keyreid_stream.keypoints.pose import PRIOR_LAYOUT

__all__ = ["NUM_REGIONS", "REGION_JOINTS", "REGION_NAMES", "cell_masks", "region_boxes", "stripe_boxes"]

REGION_NAMES: tuple[str, ...] = ("head", "body", "legs")
# COCO joints of each region (0-4 face, 5-10 arms, 11/12 hips, 13-16 legs); the hips bound both body and legs.
REGION_JOINTS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4),
    (5, 6, 7, 8, 9, 10, 11, 12),
    (11, 12, 13, 14, 15, 16),
)
NUM_REGIONS = len(REGION_NAMES)
SHOULDERS, HIPS = (5, 6), (11, 12)
PRIOR_NECK = float(PRIOR_LAYOUT[list(SHOULDERS), 1].mean())
PRIOR_WAIST = float(PRIOR_LAYOUT[list(HIPS), 1].mean())


def _visible(keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keypoints with non-finite entries zeroed, visibility ``(..., 17)``)."""
    finite = torch.isfinite(keypoints).all(dim=-1)
    clean = torch.nan_to_num(keypoints, nan=0.0, posinf=0.0, neginf=0.0)
    return clean, finite & (clean[..., 2] > CONFIDENCE_THRESHOLD)


def _mean_height(y: torch.Tensor, visible: torch.Tensor, joints: tuple[int, ...], fallback: float) -> torch.Tensor:
    seen = visible[..., list(joints)].to(y.dtype)
    count = seen.sum(dim=-1)
    mean = (y[..., list(joints)] * seen).sum(dim=-1) / count.clamp(min=1.0)
    return torch.where(count > 0, mean, torch.full_like(mean, fallback))


def _row_bands(y: torch.Tensor, visible: torch.Tensor, height: int, min_rows: float) -> torch.Tensor:
    """``(..., 3, 2)`` (top, bottom) of head, body and legs."""
    neck = _mean_height(y, visible, SHOULDERS, PRIOR_NECK * height)
    waist = _mean_height(y, visible, HIPS, PRIOR_WAIST * height)
    neck = neck.clamp(min=min_rows, max=height - 2 * min_rows)
    waist = torch.maximum(waist, neck + min_rows).clamp(max=height - min_rows)
    top, bottom = torch.zeros_like(neck), torch.full_like(neck, float(height))
    return torch.stack([torch.stack([top, neck], -1), torch.stack([neck, waist], -1),
                        torch.stack([waist, bottom], -1)], dim=-2)


def _column_spans(x: torch.Tensor, visible: torch.Tensor, width: int, margin: float, min_cols: float) -> torch.Tensor:
    """``(..., 3, 2)`` (left, right) of each region, both inclusive, in pixel-centre coordinates."""
    spans = []
    for joints in REGION_JOINTS:
        seen = visible[..., list(joints)]
        xs = x[..., list(joints)]
        left = torch.where(seen, xs, torch.full_like(xs, float("inf"))).amin(dim=-1) - margin * width
        right = torch.where(seen, xs, torch.full_like(xs, float("-inf"))).amax(dim=-1) + margin * width
        enough = seen.sum(dim=-1) >= 2
        left = torch.where(enough, left, torch.zeros_like(left))
        right = torch.where(enough, right, torch.full_like(right, float(width - 1)))
        centre = (left + right) / 2
        left = torch.minimum(left, centre - min_cols / 2).clamp(min=0.0)
        right = torch.maximum(right, centre + min_cols / 2).clamp(max=float(width - 1))
        spans.append(torch.stack([left, right], dim=-1))
    return torch.stack(spans, dim=-2)


def region_boxes(keypoints: torch.Tensor, height: int, width: int, *, margin: float = 0.1,
                 min_size: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Head, body and legs boxes ``(..., 3, 4)`` as ``(x0, y0, x1, y1)`` pixels from keypoints ``(..., 17, 3)``.

    Rows are ``[y0, y1)``, columns ``[x0, x1]`` (pixel ``(row, col)`` has its centre at ``x = col, y = row``).
    ``min_size`` (rows, columns) is the smallest box, e.g. one feature-map cell, so every box covers a cell.
    """
    if keypoints.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must have shape (..., 17, 3), got {tuple(keypoints.shape)}")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")
    min_rows, min_cols = min_size
    if not (0 < 3 * min_rows <= height and 0 < min_cols <= width):
        raise ValueError(f"min_size {min_size} does not fit three bands into a {height}x{width} image")
    dtype = keypoints.dtype if keypoints.is_floating_point() and keypoints.element_size() >= 4 else torch.float32
    clean, visible = _visible(keypoints.to(dtype))
    rows = _row_bands(clean[..., 1], visible, height, float(min_rows))
    cols = _column_spans(clean[..., 0], visible, width, margin, float(min_cols))
    return torch.stack([cols[..., 0], rows[..., 0], cols[..., 1], rows[..., 1]], dim=-1)


def stripe_boxes(leading: tuple[int, ...], height: int, width: int, *, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Three equal horizontal stripes over the full width, ``(*leading, 3, 4)``: the keypoint-free split."""
    edges = torch.linspace(0.0, float(height), 4, device=device, dtype=dtype)
    boxes = torch.stack([torch.zeros(3, device=device, dtype=dtype), edges[:-1],
                         torch.full((3,), float(width - 1), device=device, dtype=dtype), edges[1:]], dim=-1)
    return boxes.expand(*leading, 3, 4)


def cell_masks(boxes: torch.Tensor, grid: tuple[int, int], stride: tuple[float, float]) -> torch.Tensor:
    """Which cells of a ``grid`` (rows, cols) feature map each box holds: ``(..., R, rows, cols)`` bool.

    Cell ``(i, j)`` covers pixels ``[i * stride_y, (i + 1) * stride_y)`` x ``[j * stride_x, (j + 1) * stride_x)``;
    its centre is at ``(i * stride_y + (stride_y - 1) / 2, j * stride_x + (stride_x - 1) / 2)``.
    """
    rows, cols = grid
    centre_y = torch.arange(rows, device=boxes.device, dtype=boxes.dtype) * stride[0] + (stride[0] - 1) / 2
    centre_x = torch.arange(cols, device=boxes.device, dtype=boxes.dtype) * stride[1] + (stride[1] - 1) / 2
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))
    inside_y = (centre_y >= y0) & (centre_y < y1)
    inside_x = (centre_x >= x0) & (centre_x <= x1)
    return inside_y.unsqueeze(-1) & inside_x.unsqueeze(-2)
