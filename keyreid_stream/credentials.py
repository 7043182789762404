"""Reading the query API's bearer token, shared by the matcher (which checks it) and its clients (which send it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["read_token"]


def read_token(token_env: str, token_file: str | Path | None) -> str | None:
    """The API's bearer token: the first line of ``token_file`` when one is given, else the environment variable
    named ``token_env`` (None: no token). An unreadable or empty file is a ValueError."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
        if not lines or not lines[0].strip():
            raise ValueError(f"the token file {path} is empty")
        return lines[0].strip()
    return (os.environ.get(token_env) or None) if token_env else None
