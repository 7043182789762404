"""Part heatmaps: Gaussian placement, missing joints, overlap averaging, patch pooling, flips."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from keyreid_stream.keypoints.heatmaps import (  # noqa: E402
    FLIP_PERMUTATION,
    PART_JOINTS,
    PART_NAMES,
    flip_keypoints,
    gaussian_radius,
    pool_to_patches,
    render_part_heatmaps,
    render_patch_weights,
)

H, W = 64, 32


def _keypoints(points: dict[int, tuple[float, float, float]]) -> torch.Tensor:
    kp = torch.zeros(17, 3)
    for joint, value in points.items():
        kp[joint] = torch.tensor(value)
    return kp


@pytest.mark.parametrize(("x", "y"), [(10.0, 20.0), (10.4, 20.3), (3.6, 50.5), (0.0, 0.0), (31.0, 63.0)])
def test_gaussian_peak_lands_on_the_joint(x: float, y: float) -> None:
    heat = render_part_heatmaps(_keypoints({7: (x, y, 0.9)}), H, W)  # left elbow -> left arm only
    left_arm = heat[PART_NAMES.index("left_arm")]
    row, col = divmod(int(left_arm.argmax()), W)
    assert (row, col) == (round(y), round(x))
    assert float(left_arm.max()) == pytest.approx(math.exp(-((x - round(x)) ** 2 + (y - round(y)) ** 2) / (
        2 * ((2 * gaussian_radius(W) + 1) / 4) ** 2)), rel=1e-5)
    others = [k for k in range(6) if k != PART_NAMES.index("left_arm")]
    assert float(heat[others].abs().max()) == 0.0


def test_gaussian_is_truncated_to_its_window() -> None:
    radius = gaussian_radius(W)
    heat = render_part_heatmaps(_keypoints({9: (16.0, 32.0, 1.0)}), H, W)[PART_NAMES.index("left_arm")]
    nonzero = heat.nonzero()
    assert int(nonzero[:, 0].min()) == 32 - radius and int(nonzero[:, 0].max()) == 32 + radius
    assert int(nonzero[:, 1].min()) == 16 - radius and int(nonzero[:, 1].max()) == 16 + radius


@pytest.mark.parametrize("confidence", [0.0, 0.05, 0.1, float("nan")])
def test_missing_or_low_confidence_joint_gives_an_empty_part(confidence: float) -> None:
    heat = render_part_heatmaps(_keypoints({8: (10.0, 10.0, confidence), 10: (12.0, 30.0, confidence)}), H, W)
    assert float(heat.abs().max()) == 0.0


def test_overlapping_gaussians_are_averaged_and_single_ones_kept() -> None:
    kp = _keypoints({13: (10.0, 30.0, 1.0), 15: (12.0, 32.0, 1.0), 14: (25.0, 10.0, 1.0)})
    heat = render_part_heatmaps(kp, H, W)
    alone = [render_part_heatmaps(_keypoints({j: tuple(kp[j].tolist())}), H, W) for j in (13, 15)]
    left_leg = PART_NAMES.index("left_leg")
    a, b = alone[0][left_leg], alone[1][left_leg]
    both = (a > 0) & (b > 0)
    only_a = (a > 0) & (b == 0)
    assert torch.allclose(heat[left_leg][both], (a[both] + b[both]) / 2)
    assert torch.allclose(heat[left_leg][only_a], a[only_a])
    assert float(heat.max()) <= 1.0 and float(heat.min()) >= 0.0


def _loop_render(kp: torch.Tensor, height: int, width: int) -> torch.Tensor:
    radius = gaussian_radius(width)
    sigma = (2 * radius + 1) / 4
    out = torch.zeros(6, height, width, dtype=torch.float64)
    for part, joints in enumerate(PART_JOINTS):
        total = torch.zeros(height, width, dtype=torch.float64)
        count = torch.zeros(height, width, dtype=torch.float64)
        for j in joints:
            x, y, c = (float(v) for v in kp[j])
            if not c > 0.1:
                continue
            for row in range(height):
                for col in range(width):
                    if abs(col - round(x)) <= radius and abs(row - round(y)) <= radius:
                        total[row, col] += math.exp(-((col - x) ** 2 + (row - y) ** 2) / (2 * sigma**2))
                        count[row, col] += 1
        out[part] = total / count.clamp(min=1)
    return out


def test_rendering_and_pooling_equal_a_plain_loop() -> None:
    generator = torch.Generator().manual_seed(3)
    kp = torch.rand(17, 3, generator=generator, dtype=torch.float64) * torch.tensor([W - 1, H - 1, 1.0])
    heat = render_part_heatmaps(kp, H, W)
    expected = _loop_render(kp, H, W)
    assert torch.allclose(heat, expected, atol=1e-9)
    pooled = pool_to_patches(heat, 8)
    loop_pooled = torch.stack([
        torch.stack([expected[k, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].mean() for r in range(H // 8) for c in range(W // 8)])
        for k in range(6)
    ])
    assert torch.allclose(pooled, loop_pooled, atol=1e-9)


def test_many_random_poses_equal_the_plain_loop() -> None:
    generator = torch.Generator().manual_seed(11)
    kp = torch.rand(6, 17, 3, generator=generator, dtype=torch.float64) * torch.tensor([W + 8, H + 8, 1.0]) - 4
    heat = render_part_heatmaps(kp, H, W)
    for sample in range(6):
        assert torch.allclose(heat[sample], _loop_render(kp[sample], H, W), atol=1e-9)


@pytest.mark.parametrize("chunk", [1, 3, 16, None])
@pytest.mark.parametrize("lead", [(5, 4), (7,), (0,)])
def test_patch_weights_equal_pooled_heatmaps_for_any_chunking(chunk: int | None, lead: tuple[int, ...]) -> None:
    kp = torch.rand(*lead, 17, 3) * torch.tensor([W - 1, H - 1, 1.0])
    weights = render_patch_weights(kp, H, W, 8, chunk=chunk)
    assert weights.shape == (*lead, 6, (H // 8) * (W // 8))
    assert torch.allclose(weights, pool_to_patches(render_part_heatmaps(kp, H, W), 8), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_low_precision_and_integer_keypoints_render_in_float32(dtype: torch.dtype) -> None:
    kp = (torch.rand(2, 17, 3) * torch.tensor([W - 1, H - 1, 1.0]))
    kp[..., 2] = 1.0
    converted = kp.round().to(dtype)
    expected_dtype = torch.float32 if dtype == torch.int64 else dtype
    weights = render_patch_weights(converted, H, W, 8)
    assert weights.dtype == expected_dtype
    reference = render_patch_weights(converted.float(), H, W, 8)
    assert torch.allclose(weights.float(), reference, atol=1e-2)


def test_batched_rendering_matches_per_sample() -> None:
    kp = torch.rand(2, 3, 17, 3) * torch.tensor([W - 1, H - 1, 1.0])
    heat = render_part_heatmaps(kp, H, W)
    assert heat.shape == (2, 3, 6, H, W)
    assert torch.allclose(heat[1, 2], render_part_heatmaps(kp[1, 2], H, W))


def test_flip_swaps_left_and_right() -> None:
    kp = torch.rand(17, 3) * torch.tensor([W - 1, H - 1, 1.0]) + torch.tensor([0, 0, 0.2])
    flipped = flip_keypoints(kp, W)
    assert torch.allclose(flip_keypoints(flipped, W), kp, atol=1e-5)
    assert flipped[1, 0] == W - 1 - kp[2, 0] and flipped[1, 1] == kp[2, 1]  # new left eye = old right eye
    heat = render_part_heatmaps(kp, H, W)
    heat_flipped = render_part_heatmaps(flipped, H, W)
    for left, right in [("left_arm", "right_arm"), ("left_leg", "right_leg")]:
        left_index, right_index = PART_NAMES.index(left), PART_NAMES.index(right)
        assert torch.allclose(heat_flipped[left_index], heat[right_index].flip(-1), atol=1e-6)
    assert sorted(FLIP_PERMUTATION) == list(range(17))


@pytest.mark.parametrize("shape", [(17, 2), (16, 3), (3,)])
def test_wrong_keypoint_shape_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="17, 3"):
        render_part_heatmaps(torch.zeros(shape), H, W)


def test_pooling_rejects_sizes_that_are_not_patch_multiples() -> None:
    with pytest.raises(ValueError, match="multiple"):
        pool_to_patches(torch.zeros(6, 60, 32), 16)


@pytest.mark.gpu
def test_rendering_on_cuda_matches_cpu() -> None:
    kp = torch.rand(3, 4, 17, 3) * torch.tensor([W - 1, H - 1, 1.0])
    on_gpu = render_patch_weights(kp.cuda(), H, W, 8)
    assert on_gpu.device.type == "cuda"
    assert torch.allclose(on_gpu.cpu(), render_patch_weights(kp, H, W, 8), atol=1e-5)
    half = render_patch_weights(kp.cuda().half(), H, W, 8)
    assert half.dtype == torch.float16 and torch.allclose(half.float().cpu(), on_gpu.cpu(), atol=1e-2)
