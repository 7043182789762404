"""The weights catalogue's cache: fetch (plain files, archive members, the authors' checkpoint converted), import,
resolve, the offline message; against a real local HTTP server, with a catalogue made by the test (the real
entries' files cannot be served here)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from keyreid_stream.fetch import RemoteFile
from keyreid_stream.weights import (
    CATALOGUE,
    CatalogueError,
    Source,
    WeightsEntry,
    WeightsError,
    WeightsNotFound,
    expand_names,
    fetch_weights,
    import_weights,
    load_catalogue,
    resolve_weights,
)

from file_server import FileServer

MODEL = os.urandom(50_000)
MODEL_SHA = hashlib.sha256(MODEL).hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other/readme.txt", "not this one")
        archive.writestr(member, data)
    return buffer.getvalue()


def _tgz(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _entry(name: str, sources: tuple[Source, ...], **kwargs: object) -> WeightsEntry:
    defaults: dict[str, object] = {"filename": f"{name}.bin", "description": "test", "licence": "test",
                                   "sha256": MODEL_SHA, "size": len(MODEL)}
    return WeightsEntry(name=name, sources=sources, **{**defaults, **kwargs})  # type: ignore[arg-type]


def _remote(files: FileServer, path: str, data: bytes, mode: str = "file") -> RemoteFile:
    return RemoteFile((files.add(path, data, mode=mode),), _sha(data), len(data))


def _catalogue(files: FileServer, zip_mode: str = "file") -> dict[str, WeightsEntry]:
    wheel, tgz = _zip("pkg/model.tflite", MODEL), _tgz("package/model.tflite", MODEL)
    zipped = RemoteFile((files.add("/pkg.whl", wheel, mode=zip_mode) if zip_mode else files.base + "/gone.whl",),
                        _sha(wheel), len(wheel))
    return {
        "plain": _entry("plain", (Source(_remote(files, "/plain.bin", MODEL)),)),
        "member": _entry("member", (Source(zipped, "pkg/model.tflite"),
                                    Source(_remote(files, "/pkg.tgz", tgz), "package/model.tflite"))),
    }


def test_fetch_then_cached_and_resolved(files: FileServer, cache: Path) -> None:
    catalogue = _catalogue(files)
    path = fetch_weights("plain", catalogue=catalogue)
    assert path == cache / "weights" / "plain.bin" and path.read_bytes() == MODEL
    requests = len(files.requests)
    assert fetch_weights("plain", catalogue=catalogue) == path and len(files.requests) == requests  # cached
    assert resolve_weights("plain", catalogue=catalogue) == path
    assert resolve_weights(str(path), catalogue=catalogue) == path  # a file is taken as is


@pytest.mark.parametrize(("zip_mode", "used"), [("file", "/pkg.whl"), ("", "/pkg.tgz"), ("drop", "/pkg.whl")])
def test_an_archive_member_from_the_first_source_that_works(files: FileServer, cache: Path, zip_mode: str,
                                                            used: str) -> None:
    path = fetch_weights("member", catalogue=_catalogue(files, zip_mode))
    assert path.read_bytes() == MODEL and sorted(p.name for p in path.parent.iterdir()) == ["downloads",
                                                                                             "member.bin"]
    assert files.requests[-1][0] == used


def test_a_member_that_is_not_the_pinned_file_is_not_installed(files: FileServer, cache: Path) -> None:
    other = os.urandom(len(MODEL))
    entry = _entry("member", (Source(_remote(files, "/pkg.whl", _zip("pkg/model.tflite", other)),
                                     "pkg/model.tflite"),))
    with pytest.raises(WeightsError, match="the file has sha256") as caught:
        fetch_weights("member", catalogue={"member": entry})
    assert "keyreid-stream weights import member PATH" in str(caught.value)
    assert not (cache / "weights" / "member.bin").exists()


def test_offline_the_error_says_where_to_get_it_and_how_to_import_it(cache: Path) -> None:
    urls = ("http://127.0.0.1:9/model.bin", "http://127.0.0.1:9/mirror/model.bin")  # refused
    entry = _entry("plain", (Source(RemoteFile(urls, MODEL_SHA, len(MODEL))),))
    with pytest.raises(WeightsError) as caught:
        fetch_weights("plain", catalogue={"plain": entry}, timeout=2)
    text = str(caught.value)
    assert all(url in text for url in urls) and MODEL_SHA in text
    assert "keyreid-stream weights import plain PATH" in text
    assert not any(p.is_file() for p in (cache / "weights").rglob("*"))


@pytest.mark.parametrize(("what", "good"), [("file", True), ("archive", True), ("garbage", False)])
def test_import_checks_then_installs(files: FileServer, cache: Path, tmp_path: Path, what: str, good: bool) -> None:
    data = {"file": MODEL, "archive": _tgz("package/model.tflite", MODEL), "garbage": b"not a model"}[what]
    given = tmp_path / "given"
    given.write_bytes(data)
    if good:
        path = import_weights("member", given, catalogue=_catalogue(files))
        assert path.read_bytes() == MODEL and given.read_bytes() == data  # copied, not moved
    else:
        with pytest.raises(WeightsError, match="is not a file of member.*Nothing was installed"):
            import_weights("member", given, catalogue=_catalogue(files))
        assert not (cache / "weights" / "member.bin").exists()
    assert files.requests == []  # import never downloads


def test_resolve_names_the_commands(files: FileServer) -> None:
    catalogue = _catalogue(files)
    with pytest.raises(WeightsNotFound, match="weights fetch plain.*weights import plain PATH"):
        resolve_weights("plain", catalogue=catalogue)
    with pytest.raises(FileNotFoundError, match="checkpoint not found.*weights fetch NAME"):
        resolve_weights("no-such-thing", catalogue=catalogue)


def test_names_groups_and_all() -> None:
    assert expand_names(["demo"]) == ["yolo11n-pose", "keyreid-mars"]
    assert expand_names(["all", "demo"]) == list(CATALOGUE)
    with pytest.raises(WeightsError, match="not in the weights catalogue"):
        expand_names(["keyreid-dukemtmc"])


def test_the_builtin_catalogue_pins_what_it_fetches_itself() -> None:
    for entry in CATALOGUE.values():
        assert entry.urls and entry.licence and entry.description, entry.name
        if entry.downloader == "keyreid":
            assert all(len(source.remote.sha256) == 64 and source.remote.size for source in entry.sources)
            assert entry.convert or (len(entry.sha256) == 64 and entry.size), entry.name
    full = CATALOGUE["blazepose-full"]
    assert full.size == 6_440_512 and full.sources[0].member.endswith("pose_landmark_full.tflite")
    assert CATALOGUE["keyreid-mars"].sources[0].remote.size == 876_788_212


def test_a_site_catalogue_adds_entries_and_refuses_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "site.yaml"
    good.write_text(f"entries:\n- name: mine\n  filename: mine.bin\n  description: ours\n  licence: ours\n"
                    f"  sha256: {MODEL_SHA}\n  size: {len(MODEL)}\n"
                    f"  sources: [{{urls: [http://mirror.example/mine.bin], sha256: {MODEL_SHA}}}]\n")
    catalogue = load_catalogue(good)
    assert catalogue["mine"].urls == ("http://mirror.example/mine.bin",) and "keyreid-mars" in catalogue
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries:\n- name: mine\n  filename: mine.bin\n  description: x\n  licence: x\n  sha: 1\n")
    with pytest.raises(CatalogueError, match="unknown key.*sha"):
        load_catalogue(bad)
