"""The value checks of the association parameters and the camera topology (finite numbers, booleans)."""

from __future__ import annotations

import math
from typing import NoReturn

__all__ = ["finite_number", "invalid"]


def invalid(message: str) -> NoReturn:
    """Raise the ValueError of a bad parameter or topology value (of the wrong type, too)."""
    raise ValueError(message)


def finite_number(owner: str, name: str, value: object) -> float:
    """``value`` as a float; a ValueError naming ``owner.name`` unless it is a finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{owner}.{name}: expected a finite number, got {value!r}")
    return float(value)
