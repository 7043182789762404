"""Shared fixture of the keypoint tests: a real street photo with people (ultralytics ships ``bus.jpg``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

PHOTO_WIDTH = 240  # small enough for the pose networks to run quickly on 2 CPU cores


@pytest.fixture(scope="session")
def bus_photo_full() -> np.ndarray:
    """``bus.jpg`` as ultralytics ships it (810 x 1080), BGR uint8."""
    spec = importlib.util.find_spec("ultralytics")
    assert spec is not None and spec.origin, "ultralytics (which ships bus.jpg) is not installed"
    path = Path(spec.origin).parent / "assets" / "bus.jpg"
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


@pytest.fixture(scope="session")
def bus_photo(bus_photo_full: np.ndarray) -> np.ndarray:
    """``bus.jpg`` downscaled to 240 pixels wide, BGR uint8."""
    image = bus_photo_full
    height = round(image.shape[0] * PHOTO_WIDTH / image.shape[1])
    return cv2.resize(image, (PHOTO_WIDTH, height), interpolation=cv2.INTER_AREA)
