"""Checks shared by the configuration schemas and the other value objects (a leaf module: it imports nothing of
the package). Each raises one readable ``ValueError``."""

from __future__ import annotations

__all__ = ["require"]


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds."""
    if not condition:
        raise ValueError(message)
