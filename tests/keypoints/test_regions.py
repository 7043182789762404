"""Head / body / legs boxes from keypoints (RAPA's ROI split), stripes, and boxes to feature-map cells."""

from __future__ import annotations

import pytest
import torch

from keyreid_stream.keypoints.heatmaps import flip_keypoints
from keyreid_stream.keypoints.pose import PRIOR_LAYOUT
from keyreid_stream.keypoints.regions import (
    PRIOR_NECK,
    PRIOR_WAIST,
    REGION_JOINTS,
    REGION_NAMES,
    cell_masks,
    region_boxes,
    stripe_boxes,
)

H, W = 256, 128


def _prior(height: int = H, width: int = W) -> torch.Tensor:
    """The average pedestrian over the whole crop, every joint visible: ``(17, 3)``."""
    xy = torch.from_numpy(PRIOR_LAYOUT) * torch.tensor([width - 1.0, height - 1.0])
    return torch.cat([xy, torch.ones(17, 1)], dim=1)


def _hide(points: torch.Tensor, joints: tuple[int, ...]) -> torch.Tensor:
    hidden = points.clone()
    hidden[..., list(joints), 2] = 0.0
    return hidden


def _random_keypoints(count: int, seed: int, height: int = H, width: int = W) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(count, 17, 3, generator=gen) * torch.tensor([width - 1.0, height - 1.0, 1.0])
    points[..., 2] = (torch.rand(count, 17, generator=gen) > 0.3).float() * 0.9
    return points


def test_regions_follow_shoulders_and_hips() -> None:
    points = _prior()
    boxes = region_boxes(points, H, W, margin=0.1)
    neck, waist = points[[5, 6], 1].mean(), points[[11, 12], 1].mean()
    assert REGION_NAMES == ("head", "body", "legs")
    assert torch.allclose(boxes[:, 1], torch.stack([torch.tensor(0.0), neck, waist]))  # tops
    assert torch.allclose(boxes[:, 3], torch.stack([neck, waist, torch.tensor(float(H))]))  # bottoms
    for region, joints in enumerate(REGION_JOINTS):
        xs = points[list(joints), 0]
        expected = (max(0.0, float(xs.min()) - 0.1 * W), min(W - 1.0, float(xs.max()) + 0.1 * W))
        assert (float(boxes[region, 0]), float(boxes[region, 2])) == pytest.approx(expected)


def test_lines_move_with_the_person() -> None:
    """A person crouching low in the crop: the neck and waist lines follow the joints, not the prior."""
    points = _prior()
    points[:, 1] = points[:, 1] * 0.5 + H * 0.45
    boxes = region_boxes(points, H, W)
    assert float(boxes[1, 1]) == pytest.approx(float(points[[5, 6], 1].mean()))
    assert float(boxes[2, 1]) == pytest.approx(float(points[[11, 12], 1].mean()))
    assert float(boxes[1, 1]) > PRIOR_NECK * H + 40


@pytest.mark.parametrize(("hidden", "neck", "waist"), [
    ((5, 6), PRIOR_NECK * H, None),  # no shoulders: the prior neck line
    ((11, 12), None, PRIOR_WAIST * H),  # no hips: the prior waist line
    ((5, 6, 11, 12), PRIOR_NECK * H, PRIOR_WAIST * H),
    ((6,), "left shoulder", None),  # one shoulder is enough
])
def test_missing_joints_fall_back_to_the_prior_lines(hidden: tuple[int, ...], neck, waist) -> None:
    points = _prior()
    points[:, 1] += 20.0  # away from the prior, so that a fallback shows
    boxes = region_boxes(_hide(points, hidden), H, W)
    expected_neck = float(points[5, 1]) if neck == "left shoulder" else neck
    if expected_neck is None:
        expected_neck = float(points[[5, 6], 1].mean())
    expected_waist = waist if waist is not None else float(points[[11, 12], 1].mean())
    assert float(boxes[0, 3]) == pytest.approx(expected_neck) == pytest.approx(float(boxes[1, 1]))
    assert float(boxes[1, 3]) == pytest.approx(expected_waist) == pytest.approx(float(boxes[2, 1]))


@pytest.mark.parametrize("case", ["hips above shoulders", "all at the top", "all at the bottom", "nan", "none"])
def test_bands_stay_ordered_and_at_least_one_cell_tall(case: str) -> None:
    points = _prior()
    if case == "hips above shoulders":
        points[[11, 12], 1], points[[5, 6], 1] = 40.0, 120.0
    elif case == "all at the top":
        points[:, 1] = 0.0
    elif case == "all at the bottom":
        points[:, 1] = H - 1.0
    elif case == "nan":
        points[:, :] = float("nan")
    else:
        points[:, 2] = 0.0
    boxes = region_boxes(points, H, W, min_size=(16.0, 16.0))
    assert torch.isfinite(boxes).all()
    tops, bottoms = boxes[:, 1], boxes[:, 3]
    assert float(tops[0]) == 0.0 and float(bottoms[2]) == H
    assert torch.equal(bottoms[:2], tops[1:])  # the bands tile the height
    assert bool((bottoms - tops >= 16.0 - 1e-4).all())
    if case in ("nan", "none"):  # nothing visible: the prior lines and full width
        assert float(tops[1]) == pytest.approx(PRIOR_NECK * H) and float(tops[2]) == pytest.approx(PRIOR_WAIST * H)
        assert torch.equal(boxes[:, 0], torch.zeros(3)) and torch.equal(boxes[:, 2], torch.full((3,), W - 1.0))


def test_a_region_with_fewer_than_two_joints_spans_the_width() -> None:
    points = _hide(_prior(), (1, 2, 3, 4))  # only the nose of the head
    boxes = region_boxes(points, H, W)
    assert (float(boxes[0, 0]), float(boxes[0, 2])) == (0.0, W - 1.0)
    assert float(boxes[1, 2] - boxes[1, 0]) < W - 1  # the body still has its own columns


def test_narrow_regions_are_widened_to_the_minimum() -> None:
    points = _prior()
    points[list(REGION_JOINTS[0]), 0] = 64.0  # all face joints on one column
    boxes = region_boxes(points, H, W, margin=0.0, min_size=(16.0, 16.0))
    assert float(boxes[0, 2] - boxes[0, 0]) == pytest.approx(16.0)


def test_flipped_keypoints_give_mirrored_boxes_and_masks() -> None:
    points = _random_keypoints(64, seed=1)
    boxes = region_boxes(points, H, W, min_size=(16.0, 16.0))
    flipped = region_boxes(flip_keypoints(points, W), H, W, min_size=(16.0, 16.0))
    assert torch.allclose(flipped[..., 0], (W - 1) - boxes[..., 2], atol=1e-4)
    assert torch.allclose(flipped[..., 2], (W - 1) - boxes[..., 0], atol=1e-4)
    assert torch.equal(flipped[..., 1::2], boxes[..., 1::2])
    masks = cell_masks(boxes, (16, 8), (16.0, 16.0))
    assert torch.equal(cell_masks(flipped, (16, 8), (16.0, 16.0)), masks.flip(-1))


@pytest.mark.parametrize(("grid", "stride", "height", "width"), [((16, 8), 16.0, 256, 128), ((8, 4), 8.0, 64, 32),
                                                                   ((8, 4), 32.0, 256, 128)])
def test_every_box_holds_a_cell_and_the_bands_partition_the_rows(grid, stride, height, width) -> None:
    points = _random_keypoints(200, seed=2, height=height, width=width)
    points[:50, :, 2] = 0.0  # some people with nothing visible
    boxes = region_boxes(points, height, width, min_size=(stride, stride))
    masks = cell_masks(boxes, grid, (stride, stride))
    assert masks.shape == (200, 3, *grid)
    assert bool(masks.flatten(2).any(dim=2).all()), "an empty region"
    rows = masks.any(dim=3)  # (N, 3, rows): which rows each band holds
    assert torch.equal(rows.sum(dim=1), torch.ones(200, grid[0], dtype=torch.long))


def test_cells_of_the_prior_layout_on_the_resnet_grid() -> None:
    masks = cell_masks(region_boxes(_prior(), H, W, min_size=(16.0, 16.0)), (16, 8), (16.0, 16.0))
    rows = [torch.nonzero(masks[k].any(dim=1)).flatten().tolist() for k in range(3)]
    # neck at 0.19 * 255 = 48.5 px, waist at 0.50 * 255 = 127.5 px; cell centres at 7.5, 23.5, ...
    assert rows == [[0, 1, 2], [3, 4, 5, 6, 7], list(range(8, 16))]


def test_stripes_are_three_equal_bands() -> None:
    boxes = stripe_boxes((2,), 96, 32)
    assert boxes.shape == (2, 3, 4)
    assert boxes[0].tolist() == [[0.0, 0.0, 31.0, 32.0], [0.0, 32.0, 31.0, 64.0], [0.0, 64.0, 31.0, 96.0]]
    masks = cell_masks(boxes, (12, 4), (8.0, 8.0))
    assert masks.sum(dim=(-2, -1)).tolist() == [[16, 16, 16], [16, 16, 16]]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"keypoints": torch.zeros(17, 2)}, "17, 3"),
    ({"margin": 1.0}, "margin"),
    ({"min_size": (100.0, 8.0)}, "min_size"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    arguments = {"keypoints": _prior(), "height": H, "width": W, **kwargs}
    with pytest.raises(ValueError, match=match):
        region_boxes(**arguments)
