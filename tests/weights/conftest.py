"""A local file server, an empty cache, and the authors' reference model (tests/model) on the import path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from file_server import FileServer, start_file_server, stop_file_server


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    served, server, thread = start_file_server()
    try:
        yield served
    finally:
        stop_file_server(server, thread)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's cache in a temporary folder, and no site catalogue."""
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KEYREID_STREAM_WEIGHTS_CATALOGUE", raising=False)
    return tmp_path / "cache"
