"""Clip transforms: the same geometry on the frames and on their keypoints.

Training (the recipe of KeyRe-ID / VID-Trans-ReID): resize to the model input, horizontal flip, zero padding plus
a random crop, normalisation, and random erasing (Zhong et al. 2020, "Random Erasing Data Augmentation"). Flip and
crop are drawn once per clip, so the T frames stay aligned with each other (the temporal token concatenation
relies on it); erasing is drawn per frame and the erased frames are returned, because the attention
regularisation of the loss penalises attention paid to them. A flip mirrors the keypoints and swaps their
left/right labels (:func:`keyreid_stream.keypoints.heatmaps.flip_keypoints` does the same on tensors), so that
a flipped left arm is still the left-arm part. Keypoints pushed out of the frame by the crop lose their confidence.

Images come in as OpenCV BGR ``uint8`` arrays and leave as ``(T, 3, H, W)`` float32 RGB, normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from keyreid_stream.keypoints.heatmaps import FLIP_PERMUTATION

__all__ = ["ClipTransform", "TransformedClip"]

_FLIP = np.array(FLIP_PERMUTATION)


@dataclass(frozen=True)
class TransformedClip:
    frames: np.ndarray  # (T, 3, H, W) float32, normalised RGB
    keypoints: np.ndarray  # (T, 17, 3) float32, pixels of the transformed frames
    erased: np.ndarray  # (T,) bool, frames hit by random erasing


class ClipTransform:
    """Resize (and for training augment) a clip of BGR frames and their ``(T, 17, 3)`` keypoints."""

    def __init__(self, image_size: tuple[int, int], *, train: bool, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), flip: float = 0.5, pad: int = 10, erase: float = 0.5,
                 erase_area: tuple[float, float] = (0.02, 0.4), erase_aspect: float = 0.3) -> None:
        height, width = image_size
        if height < 1 or width < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        for name, value in (("flip", flip), ("erase", erase)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} probability must be in [0, 1], got {value}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if not 0.0 < erase_area[0] <= erase_area[1] < 1.0 or not 0.0 < erase_aspect <= 1.0:
            raise ValueError(f"erase_area must satisfy 0 < low <= high < 1 and erase_aspect in (0, 1], got "
                             f"{erase_area} and {erase_aspect}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError("mean and std need three values each, std > 0")
        self.size = (int(height), int(width))
        self.train = train
        self.flip, self.pad, self.erase = flip, pad, erase
        self.erase_area, self.erase_aspect = erase_area, erase_aspect
        # (x / 255 - mean) / std as one multiply-add per pixel
        self.scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(3, 1, 1)
        self.shift = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(3, 1, 1)

    def __call__(self, images: Sequence[np.ndarray], keypoints: np.ndarray,
                 rng: np.random.Generator | None = None) -> TransformedClip:
        if keypoints.shape != (len(images), 17, 3):
            raise ValueError(f"keypoints must be ({len(images)}, 17, 3) for {len(images)} frames, "
                             f"got {keypoints.shape}")
        if self.train and rng is None:
            raise ValueError("a training transform needs a random generator")
        pixels = np.empty((len(images), *self.size, 3), np.uint8)
        points = np.empty((len(images), 17, 3), np.float32)
        flip = self.train and rng.random() < self.flip  # type: ignore[union-attr]
        # as above: a training transform always has rng (checked at the top), which mypy cannot see
        offset = (tuple(rng.integers(0, 2 * self.pad + 1, size=2))  # type: ignore[union-attr]
                  if self.train and self.pad else (self.pad,) * 2)
        for t, image in enumerate(images):
            pixels[t], points[t] = self._geometry(image, keypoints[t], flip, offset)
        frames = pixels.transpose(0, 3, 1, 2).astype(np.float32)  # one copy, then normalised in place
        frames *= self.scale
        frames += self.shift
        erased = np.zeros(len(images), bool)
        if self.train and self.erase > 0:
            for t in range(len(images)):
                erased[t] = self._erase(frames[t], rng)  # type: ignore[arg-type]
        return TransformedClip(frames, points, erased)

    def _geometry(self, image: np.ndarray, keypoints: np.ndarray, flip: bool,
                  offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 BGR images, got {image.shape} {image.dtype}")
        height, width = self.size
        scale = np.array([width / image.shape[1], height / image.shape[0]], np.float32)
        rgb = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
        points = keypoints.astype(np.float32).copy()
        points[:, :2] *= scale
        if flip:
            rgb = rgb[:, ::-1]
            points = points[_FLIP]
            points[:, 0] = (width - 1) - points[:, 0]
        if self.train and self.pad:
            padded = np.zeros((height + 2 * self.pad, width + 2 * self.pad, 3), np.uint8)
            padded[self.pad:self.pad + height, self.pad:self.pad + width] = rgb
            dx, dy = int(offset[0]), int(offset[1])
            rgb = padded[dy:dy + height, dx:dx + width]
            points[:, 0] += self.pad - dx
            points[:, 1] += self.pad - dy
        outside = (points[:, 0] < 0) | (points[:, 0] > width - 1) | (points[:, 1] < 0) | (points[:, 1] > height - 1)
        points[outside] = 0.0
        missing = points[:, 2] <= 0
        points[missing] = 0.0
        return rgb, points

    def _erase(self, frame: np.ndarray, rng: np.random.Generator) -> bool:
        """Random erasing on one normalised ``(3, H, W)`` frame, in place; filled with 0 (the mean colour)."""
        if rng.random() >= self.erase:
            return False
        _, height, width = frame.shape
        for _ in range(100):
            area = rng.uniform(*self.erase_area) * height * width
            aspect = np.exp(rng.uniform(np.log(self.erase_aspect), -np.log(self.erase_aspect)))
            h, w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
            if 0 < h < height and 0 < w < width:
                y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                frame[:, y:y + h, x:x + w] = 0.0
                return True
        return False
