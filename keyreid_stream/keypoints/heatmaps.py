"""Keypoints to part heatmaps, rendered in torch on any device (KeyRe-ID, Kim et al., eqs. 4-5 and Table 1).

Keypoints are 17 COCO joints ``(x, y, confidence)`` in pixel coordinates of the image they belong to; pixel
``(row, col)`` has its centre at ``x = col, y = row``. Every function is batch-first and vectorised: leading
dimensions are free (``(..., 17, 3)`` in, ``(..., 6, H, W)`` out), nothing loops over people or joints.

* :func:`render_part_heatmaps` -- per joint a 2D Gaussian (radius ``int(W / 11)`` pixels, std = kernel size /
  4, joints with confidence <= 0.1 skipped), per body part the Gaussians of its joints averaged where they
  overlap (a pixel covered by one joint keeps that joint's value). Values are in [0, 1].
* :func:`render_patch_weights` -- both at once, a chunk of frames at a time (what the model uses).
* :func:`pool_to_patches` -- the mean of each ``patch x patch`` cell, flattened in raster order: the part-to-patch
  importance of the ViT grid.
* :func:`flip_keypoints` -- the keypoints of a horizontally flipped image: x mirrored and left/right joints swapped,
  so that every part stays anatomically right.

Heatmaps are never stored: keypoints are (17 x 3 per frame), and the heatmaps are re-rendered next to the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "CONFIDENCE_THRESHOLD", "FLIP_PERMUTATION", "NUM_PARTS", "PART_JOINTS", "PART_NAMES", "flip_keypoints",
    "gaussian_radius", "pool_to_patches", "render_part_heatmaps", "render_patch_weights",
]

NUM_JOINTS = 17
CONFIDENCE_THRESHOLD = 0.1

# Table 1 of the paper, with COCO joint indices (0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows,
# 9/10 wrists, 11/12 hips, 13/14 knees, 15/16 ankles; odd = left, even = right).
PART_NAMES: tuple[str, ...] = ("head", "torso", "left_arm", "right_arm", "left_leg", "right_leg")
PART_JOINTS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4),
    (5, 6, 11, 12),
    (7, 9),
    (8, 10),
    (13, 15),
    (14, 16),
)
NUM_PARTS = len(PART_NAMES)

# Joint i of a flipped image is joint FLIP_PERMUTATION[i] of the original.
FLIP_PERMUTATION: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def gaussian_radius(width: int) -> int:
    """Kernel radius in pixels for a heatmap ``width`` pixels wide (11 px on a 128-wide crop)."""
    return max(1, int(width / 11))


def _part_joint_index(device: torch.device) -> torch.Tensor:
    """``(6, 5)`` joint indices per part, padded with 17 (an always-invisible extra joint)."""
    width = max(len(joints) for joints in PART_JOINTS)
    rows = [list(joints) + [NUM_JOINTS] * (width - len(joints)) for joints in PART_JOINTS]
    return torch.tensor(rows, dtype=torch.long, device=device)


def _axis_profiles(
    centres: torch.Tensor, valid: torch.Tensor, size: int, radius: int, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """1D Gaussian profile and window indicator along one axis, grouped by part: ``(N, 6, 5, size)`` each."""
    pixels = torch.arange(size, device=centres.device, dtype=centres.dtype)
    offset = pixels - centres.unsqueeze(-1)
    window = ((pixels - torch.round(centres).unsqueeze(-1)).abs() <= radius) & valid.unsqueeze(-1)
    window = window.to(centres.dtype)
    profile = torch.exp(-(offset * offset) / (2.0 * sigma * sigma)) * window
    index = _part_joint_index(centres.device)
    padded = [F.pad(values, (0, 0, 0, 1))[:, index] for values in (profile, window)]  # joint 17 = zeros
    return padded[0], padded[1]


def _render_flat(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, 17, 3)`` finite-or-not keypoints -> ``(N, 6, H, W)`` part heatmaps (compute dtype)."""
    finite = torch.isfinite(points).all(dim=-1)
    points = torch.nan_to_num(points, nan=0.0, posinf=0.0, neginf=0.0)
    valid = finite & (points[..., 2] > CONFIDENCE_THRESHOLD)
    radius = gaussian_radius(width)
    sigma = (2 * radius + 1) / 4.0
    gauss_x, window_x = _axis_profiles(points[..., 0], valid, width, radius, sigma)
    gauss_y, window_y = _axis_profiles(points[..., 1], valid, height, radius, sigma)
    # Separable Gaussians: joint j's map is gauss_y[j] (outer) gauss_x[j]. Summing over the (at most 5) joints of
    # each part is one small matrix product per part; the window count says how many Gaussians cover a pixel.
    total = torch.matmul(gauss_y.transpose(-1, -2), gauss_x)
    count = torch.matmul(window_y.transpose(-1, -2), window_x)
    return total.div_(count.clamp_(min=1.0))


def _compute_dtype(keypoints: torch.Tensor) -> torch.dtype:
    if not keypoints.is_floating_point() or keypoints.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return keypoints.dtype


def _check_keypoints(keypoints: torch.Tensor) -> None:
    if keypoints.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must have shape (..., 17, 3), got {tuple(keypoints.shape)}")


def render_part_heatmaps(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Part heatmaps ``(..., 6, height, width)`` in [0, 1] from keypoints ``(..., 17, 3)``.

    A joint's Gaussian is stamped in a square window of radius ``gaussian_radius(width)`` around its rounded
    position, with values of the exact (sub-pixel) Gaussian, so the peak lands on the pixel nearest the joint.
    Joints with confidence <= 0.1 or non-finite values are skipped; a part with no visible joint is all zero.
    Integer keypoints give float32 heatmaps, otherwise the keypoints' dtype (half precision computes in float32).
    """
    _check_keypoints(keypoints)
    out_dtype = keypoints.dtype if keypoints.is_floating_point() else torch.float32
    flat = keypoints.reshape(-1, NUM_JOINTS, 3).to(_compute_dtype(keypoints))
    heatmaps = _render_flat(flat, height, width)
    return heatmaps.reshape(*keypoints.shape[:-2], NUM_PARTS, height, width).to(out_dtype)


def render_patch_weights(
    keypoints: torch.Tensor, height: int, width: int, patch_size: int, chunk: int | None = 16,
) -> torch.Tensor:
    """``pool_to_patches(render_part_heatmaps(...))`` without holding every full-size heatmap at once.

    ``(..., 17, 3) -> (..., 6, (H/p) * (W/p))``. Frames are rendered ``chunk`` at a time (None: all at once, as
    needed when tracing for export), which keeps the working set small enough for the CPU caches.
    """
    _check_keypoints(keypoints)
    out_dtype = keypoints.dtype if keypoints.is_floating_point() else torch.float32
    flat = keypoints.reshape(-1, NUM_JOINTS, 3).to(_compute_dtype(keypoints))
    if chunk is None or flat.shape[0] <= chunk:  # no shape-dependent loop: exportable
        result = pool_to_patches(_render_flat(flat, height, width), patch_size)
    else:
        result = torch.cat([
            pool_to_patches(_render_flat(flat[start:start + chunk], height, width), patch_size)
            for start in range(0, flat.shape[0], chunk)
        ])
    return result.reshape(*keypoints.shape[:-2], NUM_PARTS, result.shape[-1]).to(out_dtype)


def pool_to_patches(heatmaps: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean of each ``patch_size`` cell: ``(..., C, H, W) -> (..., C, (H/p) * (W/p))`` in raster order."""
    *lead, channels, height, width = heatmaps.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"heatmap size {height}x{width} is not a multiple of the patch size {patch_size}")
    flat = heatmaps.reshape(-1, channels, height, width)
    pooled = F.avg_pool2d(flat, kernel_size=patch_size, stride=patch_size)
    return pooled.reshape(*lead, channels, (height // patch_size) * (width // patch_size))


def flip_keypoints(keypoints: torch.Tensor, width: int) -> torch.Tensor:
    """Keypoints of the horizontally flipped image (``width`` pixels): x -> width - 1 - x, left <-> right."""
    flipped = keypoints[..., list(FLIP_PERMUTATION), :].clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped
