"""The clip transform: the same geometry on frames and keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.keypoints.heatmaps import FLIP_PERMUTATION

LEFT_SHOULDER, RIGHT_SHOULDER = 5, 6


def _marked_clip(frames: int = 3, size: tuple[int, int] = (64, 32)) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames with one bright pixel block at each keypoint (distinct values per joint)."""
    rng = np.random.default_rng(0)
    images, points = [], np.zeros((frames, 17, 3), np.float32)
    for t in range(frames):
        image = np.zeros((*size, 3), np.uint8)
        for joint in range(17):
            x, y = int(rng.integers(4, size[1] - 4)), int(rng.integers(4, size[0] - 4))
            points[t, joint] = (x, y, 0.9)
        points[t, 3] = 0.0  # a missing joint
        images.append(image)
    images[0][10, 12] = 255
    points[0, LEFT_SHOULDER] = (12, 10, 0.9)
    return images, points


def _white_pixel(frame: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(np.argmax(frame.sum(axis=0)), frame.shape[1:])
    return int(x), int(y)


@pytest.mark.parametrize("flip", [0.0, 1.0])
@pytest.mark.parametrize("pad", [0, 5])
def test_keypoints_follow_the_pixels(flip: float, pad: int) -> None:
    images, points = _marked_clip()
    transform = ClipTransform((64, 32), train=True, flip=flip, pad=pad, erase=0.0)
    clip = transform(images, points, np.random.default_rng(4))
    joint = RIGHT_SHOULDER if flip else LEFT_SHOULDER  # a flip relabels the joint
    x, y = _white_pixel(clip.frames[0])
    if clip.keypoints[0, joint, 2] > 0:
        assert (round(clip.keypoints[0, joint, 0]), round(clip.keypoints[0, joint, 1])) == (x, y)
    assert clip.frames.shape == (3, 3, 64, 32) and clip.frames.dtype == np.float32
    assert not clip.erased.any()
    missing = FLIP_PERMUTATION.index(3) if flip else 3  # a flip relabels the missing left ear as the right one
    assert np.all(clip.keypoints[:, missing] == 0)


def test_flip_swaps_left_and_right_labels() -> None:
    images, points = _marked_clip(frames=1)
    clip = ClipTransform((64, 32), train=True, flip=1.0, pad=0, erase=0.0)(images, points, np.random.default_rng())
    expected = points[0, list(FLIP_PERMUTATION)].copy()
    expected[:, 0] = 31 - expected[:, 0]
    expected[expected[:, 2] <= 0] = 0
    np.testing.assert_allclose(clip.keypoints[0], expected)


def test_resize_scales_keypoints_and_normalises() -> None:
    image = np.full((128, 64, 3), 255, np.uint8)
    points = np.zeros((1, 17, 3), np.float32)
    points[0, 0] = (32, 64, 1.0)
    clip = ClipTransform((64, 32), train=False)([image], points)
    np.testing.assert_allclose(clip.keypoints[0, 0], (16, 32, 1.0))
    np.testing.assert_allclose(clip.frames, 1.0)  # (1 - 0.5) / 0.5


def test_erasing_records_the_erased_frames() -> None:
    images = [np.full((64, 32, 3), 200, np.uint8) for _ in range(40)]
    points = np.zeros((40, 17, 3), np.float32)
    clip = ClipTransform((64, 32), train=True, pad=0, flip=0.0, erase=0.5)(images, points, np.random.default_rng(1))
    zeroed = (clip.frames == 0).all(axis=1).any(axis=(1, 2))
    np.testing.assert_array_equal(zeroed, clip.erased)
    assert 5 < clip.erased.sum() < 35


def test_crop_drops_keypoints_pushed_outside() -> None:
    image = np.zeros((64, 32, 3), np.uint8)
    points = np.zeros((1, 17, 3), np.float32)
    points[0, :, :2] = (0.5, 0.5)
    points[0, :, 2] = 1.0
    transform = ClipTransform((64, 32), train=True, flip=0.0, pad=10, erase=0.0)
    dropped = 0
    for seed in range(20):
        clip = transform([image], points, np.random.default_rng(seed))
        inside = clip.keypoints[0, :, 2] > 0
        dropped += int(not inside.any())
        assert np.all(clip.keypoints[0, ~inside] == 0)
    assert dropped > 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(flip=1.5), "flip probability"),
    (dict(pad=-1), "pad"),
    (dict(erase_area=(0.5, 0.2)), "erase_area"),
    (dict(std=(0.5, 0.0, 0.5)), "std"),
])
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipTransform((64, 32), train=True, **kwargs)


def test_bad_inputs() -> None:
    transform = ClipTransform((64, 32), train=True)
    with pytest.raises(ValueError, match="keypoints must be"):
        transform([np.zeros((8, 8, 3), np.uint8)], np.zeros((2, 17, 3)), np.random.default_rng())
    with pytest.raises(ValueError, match="random generator"):
        transform([np.zeros((8, 8, 3), np.uint8)], np.zeros((1, 17, 3)))
    with pytest.raises(ValueError, match="uint8 BGR"):
        transform([np.zeros((8, 8), np.uint8)], np.zeros((1, 17, 3)), np.random.default_rng())
