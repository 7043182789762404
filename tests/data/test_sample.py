"""Sample fetching, driven entirely by local things: a .deb built here and a 127.0.0.1 HTTP server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyreid_stream.data import sample
from keyreid_stream.data.sample import (
    VTEST,
    DebianSource,
    SampleDataError,
    SampleSpec,
    UrlSource,
    default_cache_dir,
    default_sources,
    download_url,
    extract_from_deb,
    fetch_sample,
    find_sample,
)

PAYLOAD = b"not really a video\x00" * 500
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
OTHER_SHA = hashlib.sha256(b"something else").hexdigest()
TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def _no_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: no test may ever run the real ``apt-get download``."""

    def forbidden(package: str, workdir: Path, timeout: float) -> Path:
        raise AssertionError(f"test tried to apt-get download {package}")

    monkeypatch.setattr(sample, "apt_download", forbidden)


def _spec(urls: tuple[str, ...] = (), sha: str = PAYLOAD_SHA) -> SampleSpec:
    return SampleSpec(filename="clip.bin", sha256=sha, urls=urls, licence="test")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """(directory, base URL) of a threaded HTTP server on 127.0.0.1 serving that directory."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # urllib would send even 127.0.0.1 through a proxy
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-http", daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def served(http_root: tuple[Path, str]) -> str:
    """URL of PAYLOAD on the local server."""
    root, base = http_root
    (root / "clip.bin").write_bytes(PAYLOAD)
    return f"{base}/clip.bin"


def _visible_and_hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ------------------------------------------------------------------------------------------ cache location


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KEYREID_STREAM_CACHE": "{tmp}/explicit", "XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/explicit"),
        ({"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/keyreid-stream"),
        ({}, "{tmp}/home/.cache/keyreid-stream"),
        ({"KEYREID_STREAM_CACHE": "", "XDG_CACHE_HOME": ""}, "{tmp}/home/.cache/keyreid-stream"),
    ],
)
def test_default_cache_dir_honours_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KEYREID_STREAM_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert default_cache_dir() == Path(expected.format(tmp=tmp_path))


def test_vtest_spec_and_default_sources() -> None:
    assert VTEST.filename == "vtest.avi" and len(VTEST.sha256) == 64
    sources = default_sources(VTEST, timeout=3.0)
    assert isinstance(sources[0], DebianSource) and sources[0].package == "opencv-doc"
    assert [s.url for s in sources[1:] if isinstance(s, UrlSource)] == list(VTEST.urls)
    assert default_sources(_spec()) == []


# -------------------------------------------------------------------------------------------------- .deb


@pytest.fixture(scope="module")
def tiny_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real .deb holding a plain member, a gzipped member and a symlink to the plain one."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    root = tmp_path_factory.mktemp("deb") / "pkg"
    data = root / "usr/share/doc/tiny/examples/data"
    data.mkdir(parents=True)
    (data / "plain.bin").write_bytes(PAYLOAD)
    (data / "zipped.bin.gz").write_bytes(gzip.compress(PAYLOAD))
    os.symlink("plain.bin", data / "link.bin")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        "Package: tiny\nVersion: 1.0\nArchitecture: all\nMaintainer: Test <test@example.invalid>\n"
        "Description: test package\n"
    )
    deb = root.parent / "tiny_1.0_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
        check=True, capture_output=True, timeout=60,
    )
    return deb


@pytest.mark.parametrize("name", ["plain.bin", "zipped.bin", "link.bin", "/plain.bin"])
def test_extract_from_deb(tiny_deb: Path, tmp_path: Path, name: str) -> None:
    member = "usr/share/doc/tiny/examples/data/" + name.lstrip("/")
    if name.startswith("/"):
        member = "/" + member
    dest = extract_from_deb(tiny_deb, member, tmp_path / "out.bin")
    assert dest == tmp_path / "out.bin"
    assert dest.read_bytes() == PAYLOAD


def test_extract_missing_member(tiny_deb: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        extract_from_deb(tiny_deb, "usr/share/doc/tiny/nope.bin", tmp_path / "out.bin")


def test_extract_from_a_broken_deb(tmp_path: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed")
    broken = tmp_path / "broken.deb"
    broken.write_bytes(b"!<arch>\ngarbage")
    with pytest.raises(OSError, match="dpkg-deb"):
        extract_from_deb(broken, "usr/x", tmp_path / "out.bin")


def test_debian_source_fetches_through_apt(
    tiny_deb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_apt(package: str, workdir: Path, timeout: float) -> Path:
        assert package == "tiny"
        return Path(shutil.copy(tiny_deb, workdir / tiny_deb.name))

    monkeypatch.setattr(sample, "apt_download", fake_apt)
    source = DebianSource("tiny", "usr/share/doc/tiny/examples/data/zipped.bin")
    path = fetch_sample(_spec(), tmp_path / "cache", sources=[source])
    assert path == tmp_path / "cache/clip.bin"
    assert path.read_bytes() == PAYLOAD
    assert _visible_and_hidden(tmp_path / "cache") == ["clip.bin"]


# -------------------------------------------------------------------------------------------------- HTTP


def test_download_url(served: str, tmp_path: Path) -> None:
    dest = download_url(served, tmp_path / "got.bin", timeout=TIMEOUT)
    assert dest.read_bytes() == PAYLOAD


def test_download_url_http_error(http_root: tuple[Path, str], tmp_path: Path) -> None:
    with pytest.raises(OSError, match="404"):
        download_url(http_root[1] + "/missing.bin", tmp_path / "got.bin", timeout=TIMEOUT)


def test_fetch_from_url_then_found_in_cache(served: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    spec = _spec(urls=(served,))
    assert find_sample(spec, cache) is None
    path = fetch_sample(spec, cache, timeout=TIMEOUT)
    assert path == cache / "clip.bin" and path.read_bytes() == PAYLOAD
    assert _visible_and_hidden(cache) == ["clip.bin"]
    assert find_sample(spec, cache) == path
    # Found locally now: no source is consulted any more.
    assert fetch_sample(spec, cache, sources=[_explode]) == path


def _explode(workdir: Path) -> Path:
    raise AssertionError("source must not be called")


def test_sha_mismatch_is_rejected_and_leaves_nothing(served: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(SampleDataError, match="sha256 mismatch") as info:
        fetch_sample(_spec(urls=(served,), sha=OTHER_SHA), cache, timeout=TIMEOUT)
    assert served in info.value.attempts[-1]
    assert _visible_and_hidden(cache) == []


def test_corrupt_cached_file_is_refetched(served: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "clip.bin").write_bytes(b"truncated")
    spec = _spec(urls=(served,))
    path = fetch_sample(spec, cache, timeout=TIMEOUT)
    assert path.read_bytes() == PAYLOAD


def test_corrupt_cached_file_is_removed_by_find(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "clip.bin").write_bytes(b"truncated")
    with caplog.at_level("WARNING", logger=sample.__name__):
        assert find_sample(_spec(), tmp_path) is None
    assert not (tmp_path / "clip.bin").exists()
    assert "removing" in caplog.text


def test_later_source_wins_after_failures(served: str, tmp_path: Path) -> None:
    def broken(workdir: Path) -> Path:
        raise OSError("mirror is down")

    path = fetch_sample(_spec(), tmp_path / "cache", sources=[broken, UrlSource(served, TIMEOUT)])
    assert path.read_bytes() == PAYLOAD


def test_source_returning_a_file_elsewhere_is_copied(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(PAYLOAD)
    path = fetch_sample(_spec(), tmp_path / "cache", sources=[lambda workdir: outside])
    assert path.read_bytes() == PAYLOAD and outside.exists()


def test_all_sources_failing_lists_each(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, base = http_root
    (root / "wrong.bin").write_bytes(b"wrong content")

    def offline(workdir: Path) -> Path:
        raise OSError("no route to host")

    sources = [offline, UrlSource(f"{base}/missing.bin", TIMEOUT), UrlSource(f"{base}/wrong.bin", TIMEOUT)]
    cache = tmp_path / "cache"
    with pytest.raises(SampleDataError) as info:
        fetch_sample(_spec(), cache, sources=sources)
    attempts = info.value.attempts
    assert any(a.startswith("offline: no route to host") for a in attempts)
    assert any("missing.bin" in a and "404" in a for a in attempts)
    assert any("wrong.bin" in a and "sha256 mismatch" in a for a in attempts)
    message = str(info.value)
    assert f"put the file at {cache / 'clip.bin'} or pass --source" in message
    assert all(a in message for a in attempts)
    assert _visible_and_hidden(cache) == []


def test_no_download_allowed(tmp_path: Path) -> None:
    with pytest.raises(SampleDataError, match="download: not allowed"):
        fetch_sample(_spec(), tmp_path / "cache", allow_download=False, sources=[_explode])
    assert not (tmp_path / "cache").exists()


def test_extract_without_dpkg_deb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH directory: no dpkg-deb
    with pytest.raises(OSError, match="dpkg-deb is not installed"):
        extract_from_deb(tmp_path / "any.deb", "usr/x", tmp_path / "out.bin")


@pytest.mark.parametrize(("content", "found"), [(PAYLOAD, True), (b"corrupt", False)])
def test_installed_copy_is_used_but_never_removed(tmp_path: Path, content: bytes, found: bool) -> None:
    installed = tmp_path / "usr/share/doc/pkg/clip.bin"  # stands in for /usr/share/doc/opencv-doc/...
    installed.parent.mkdir(parents=True)
    installed.write_bytes(content)
    spec = SampleSpec("clip.bin", PAYLOAD_SHA, "pkg", str(installed).lstrip("/"))
    assert find_sample(spec, tmp_path / "cache") == (installed if found else None)
    assert installed.read_bytes() == content
