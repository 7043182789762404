"""The one fetcher (keyreid_stream.fetch) against a real local HTTP server: success, resume, wrong size or sha256,
404 then a mirror, a redirect, a stalled server."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyreid_stream.fetch import FetchError, RemoteFile, download_url, fetch_file, partial_path

from file_server import FileServer, start_file_server, stop_file_server

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def files(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # urllib would send even 127.0.0.1 through a proxy
    served, server, thread = start_file_server()
    try:
        yield served
    finally:
        stop_file_server(server, thread)


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(("routes", "first_url"), [
    ({"/w.bin": "file"}, "/w.bin"),
    ({"/w.bin": "drop"}, "/w.bin"),  # the connection drops half way: resumed with Range at once
    ({"/w.bin": "no-range"}, "/w.bin"),
    ({"/moved": "redirect", "/w.bin": "file"}, "/moved"),
])
def test_a_fetch_succeeds(files: FileServer, tmp_path: Path, routes: dict[str, str], first_url: str) -> None:
    for path, mode in routes.items():
        files.add(path, PAYLOAD, mode=mode, location="/w.bin" if mode == "redirect" else "")
    target = tmp_path / "cache" / "w.bin"
    got = fetch_file(RemoteFile((files.base + first_url,), SHA, len(PAYLOAD)), target, timeout=5)
    assert got == target and target.read_bytes() == PAYLOAD
    assert _left(target.parent) == ["w.bin"]  # no partial or temporary file left behind
    if routes["/w.bin"] == "drop":
        assert files.requests == [("/w.bin", None), ("/w.bin", f"bytes={len(PAYLOAD) // 2}-")]


def test_a_partial_download_is_resumed_on_the_next_run(files: FileServer, tmp_path: Path) -> None:
    remote = RemoteFile((files.add("/w.bin", PAYLOAD),), SHA, len(PAYLOAD))
    target = tmp_path / "w.bin"
    partial_path(target, remote).write_bytes(PAYLOAD[:100_000])  # what an interrupted run left
    fetch_file(remote, target, timeout=5)
    assert target.read_bytes() == PAYLOAD and files.requests == [("/w.bin", "bytes=100000-")]


def test_404_then_the_second_url(files: FileServer, tmp_path: Path) -> None:
    remote = RemoteFile((files.base + "/gone.bin", files.add("/w.bin", PAYLOAD)), SHA, len(PAYLOAD))
    assert fetch_file(remote, tmp_path / "w.bin", timeout=5).read_bytes() == PAYLOAD
    assert [path for path, _ in files.requests] == ["/gone.bin", "/w.bin"]


@pytest.mark.parametrize(("sha", "size", "message"), [
    ("0" * 64, len(PAYLOAD), "wrong sha256"),
    (SHA, len(PAYLOAD) + 1, "wrong size"),
])
def test_a_wrong_file_is_never_installed(files: FileServer, tmp_path: Path, sha: str, size: int,
                                         message: str) -> None:
    remote = RemoteFile((files.add("/w.bin", PAYLOAD),), sha, size)
    with pytest.raises(FetchError, match=message) as caught:
        fetch_file(remote, tmp_path / "w.bin", timeout=5)
    assert len(caught.value.attempts) == 1 and files.base + "/w.bin" in str(caught.value)
    assert _left(tmp_path) == []  # nothing installed, no partial to resume from a wrong file


def test_a_stalled_server_times_out(files: FileServer, tmp_path: Path) -> None:
    remote = RemoteFile((files.add("/w.bin", PAYLOAD, mode="stall"),), SHA, len(PAYLOAD))
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out|no data"):
        fetch_file(remote, tmp_path / "w.bin", timeout=0.5)
    assert time.monotonic() - started < 10
    assert not (tmp_path / "w.bin").exists()


def test_no_server_lists_every_url(tmp_path: Path) -> None:
    urls = ("http://127.0.0.1:9/a.bin", "http://127.0.0.1:9/b.bin")  # the discard port: refused
    with pytest.raises(FetchError) as caught:
        fetch_file(RemoteFile(urls, SHA, len(PAYLOAD)), tmp_path / "w.bin", timeout=2)
    assert all(url in str(caught.value) for url in urls) and SHA in str(caught.value)


def test_download_url_reports_progress(files: FileServer, tmp_path: Path) -> None:
    seen: list[tuple[str, int | None, int]] = []
    counted: list[int] = []

    def progress(label: str, total: int | None, initial: int):
        seen.append((label, total, initial))
        return counted.append

    download_url(files.add("/w.bin", PAYLOAD), tmp_path / "w.bin", 5, progress=progress, label="w")
    assert seen == [("w", len(PAYLOAD), 0)] and sum(counted) == len(PAYLOAD)
