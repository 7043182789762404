"""The shared value checks: one readable ValueError."""

from __future__ import annotations

import pytest

from keyreid_stream.validation import require


def test_require_passes_a_true_condition() -> None:
    assert require(True, "never shown") is None


def test_require_raises_the_message() -> None:
    with pytest.raises(ValueError, match="^timeout_s must be > 0$"):
        require(False, "timeout_s must be > 0")
