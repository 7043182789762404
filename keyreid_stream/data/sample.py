"""Locate or fetch the sample video (OpenCV's ``vtest.avi`` pedestrian clip) on a fresh machine.

The clip is looked for, without any network access, in the user cache directory and in the location where
Debian's ``opencv-doc`` package installs it. When it is absent, :func:`fetch_sample` tries a list of
*sources* in order: by default the Debian package (``apt-get download``, which needs no root where apt
lists exist), then each upstream URL. A source is any callable that receives an empty scratch directory
and returns the path of a candidate file; every candidate is checked against the expected SHA-256 before it
is moved atomically into the cache, so a half-written or wrong file never ends up there. URLs are downloaded by
the project's one fetcher (:mod:`keyreid_stream.fetch`: redirects, timeouts, resumed dropped connections).
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from keyreid_stream.fetch import CACHE_ENV, default_cache_dir, download_url, sha256_of

__all__ = ["CACHE_ENV", "VTEST", "DebianSource", "SampleDataError", "SampleSpec", "Source", "UrlSource", "apt_download",
           "default_cache_dir", "default_sources", "download_url", "extract_from_deb", "fetch_sample", "find_sample",
           "sha256_of"]

logger = logging.getLogger(__name__)

Source = Callable[[Path], Path]
"""A fetch strategy: given an empty scratch directory, return the path of a candidate file (or raise)."""

_CHUNK = 1 << 20
_MAX_SYMLINK_HOPS = 4


class SampleDataError(RuntimeError):
    """The sample could not be found or fetched; ``attempts`` lists what was tried and why it failed."""

    def __init__(self, message: str, attempts: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.attempts: tuple[str, ...] = tuple(attempts)


@dataclass(frozen=True)
class SampleSpec:
    """Where a sample file can be found and how to recognise it."""

    filename: str
    sha256: str
    debian_package: str | None = None
    debian_member: str | None = None  # path inside the package, without a leading slash
    urls: tuple[str, ...] = field(default_factory=tuple)
    licence: str = ""


VTEST = SampleSpec(
    filename="vtest.avi",
    sha256="45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
    debian_package="opencv-doc",
    debian_member="usr/share/doc/opencv-doc/examples/data/vtest.avi",
    urls=("https://raw.githubusercontent.com/opencv/opencv/4.x/samples/data/vtest.avi",),
    licence="Apache-2.0 AND BSD-3-Clause",
)
"""OpenCV's pedestrian clip: 768x576, 10 fps, 795 frames."""


def _cache_path(spec: SampleSpec, cache_dir: Path | None) -> Path:
    return (cache_dir if cache_dir is not None else default_cache_dir()) / spec.filename


def _system_path(spec: SampleSpec) -> Path | None:
    return Path("/") / spec.debian_member if spec.debian_member else None


def _check_cached(path: Path, spec: SampleSpec) -> bool:
    """True when the cached file is valid; a corrupt one is logged and removed."""
    if not path.is_file():
        return False
    actual = sha256_of(path)
    if actual == spec.sha256:
        return True
    logger.warning("cached %s has sha256 %s, expected %s: removing it", path, actual, spec.sha256)
    try:
        path.unlink()
    except OSError as exc:
        logger.warning("could not remove corrupt cached file %s: %s", path, exc)
    return False


def _check_system(path: Path | None, spec: SampleSpec) -> bool:
    """True when an installed (e.g. opencv-doc) copy is valid; a wrong one is logged and left alone."""
    if path is None or not path.is_file():
        return False
    try:
        actual = sha256_of(path)
    except OSError as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return False
    if actual != spec.sha256:
        logger.warning("ignoring %s: sha256 %s, expected %s", path, actual, spec.sha256)
        return False
    return True


def find_sample(spec: SampleSpec = VTEST, cache_dir: Path | None = None) -> Path | None:
    """Return a verified local copy of the sample, or None. Never touches the network."""
    cached = _cache_path(spec, cache_dir)
    if _check_cached(cached, spec):
        logger.debug("sample %s found in cache at %s", spec.filename, cached)
        return cached
    system = _system_path(spec)
    if _check_system(system, spec):
        logger.debug("sample %s found at %s", spec.filename, system)
        return system
    return None


# -------------------------------------------------------------------------------------------- building blocks


def _normalise(name: str) -> str:
    """An archive path without leading ``/`` or ``./``."""
    return str(PurePosixPath("/", name))[1:]


def _member_names(member: str) -> set[str]:
    clean = _normalise(member)
    return {clean, "./" + clean}


def _scan_deb(deb_path: Path, member: str, dest: Path) -> tuple[str, str | None]:
    """One pass over the package's files looking for ``member`` or ``member.gz``.

    Returns ("file", None) when copied to ``dest``, ("gzip", None) when a gzipped copy was decompressed,
    ("link", target) when the member is a symlink to ``target`` (normalised archive path), ("missing", None).
    """
    wanted = {name: "file" for name in _member_names(member)}
    wanted.update({name + ".gz": "gzip" for name in _member_names(member)})
    try:
        proc = subprocess.Popen(
            ["dpkg-deb", "--fsys-tarfile", str(deb_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise OSError("dpkg-deb is not installed (needed to unpack Debian packages)") from exc
    assert proc.stdout is not None
    result: tuple[str, str | None] = ("missing", None)
    tar_error: tarfile.TarError | None = None
    try:
        result = _search_tar(proc.stdout, wanted, dest)
    except tarfile.TarError as exc:
        tar_error = exc
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        code = proc.wait()
        if proc.stderr:
            proc.stderr.close()
    if result[0] == "missing" and code != 0:  # after an early stop dpkg-deb just gets SIGPIPE
        raise OSError(f"dpkg-deb --fsys-tarfile {deb_path} failed (exit {code}): {stderr}") from tar_error
    if tar_error is not None:
        raise OSError(f"cannot read the files of {deb_path}: {tar_error}") from tar_error
    return result


def _search_tar(stream: IO[bytes], wanted: dict[str, str], dest: Path) -> tuple[str, str | None]:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            kind = wanted.get(info.name)
            if kind is None:
                continue
            if info.issym() or info.islnk():
                base = PurePosixPath(_normalise(info.name)).parent
                target = info.linkname if info.islnk() else str(base / info.linkname)
                return "link", _normalise(os.path.normpath("/" + target))
            if info.isfile():
                _copy_member(tar, info, dest, gzipped=kind == "gzip")
                return kind, None
    return "missing", None


def _copy_member(tar: tarfile.TarFile, info: tarfile.TarInfo, dest: Path, *, gzipped: bool) -> None:
    source = tar.extractfile(info)
    if source is None:
        raise OSError(f"cannot read {info.name} from the package")
    with source, open(dest, "wb") as out:
        if gzipped:
            with gzip.GzipFile(fileobj=source) as unzipped:
                shutil.copyfileobj(unzipped, out, _CHUNK)
        else:
            shutil.copyfileobj(source, out, _CHUNK)


def extract_from_deb(deb_path: Path, member: str, dest: Path) -> Path:
    """Copy the file ``member`` (e.g. ``usr/share/doc/x/y``) out of the .deb ``deb_path`` into ``dest``.

    Uses ``dpkg-deb --fsys-tarfile`` so any data.tar compression dpkg understands works. A member that
    Debian stored gzipped (``member.gz``) is decompressed, and symlinks inside the package are followed.
    Raises ``FileNotFoundError`` if the member is not in the package, ``OSError`` if dpkg-deb fails.
    """
    current = _normalise(member)
    for _ in range(_MAX_SYMLINK_HOPS + 1):
        kind, target = _scan_deb(Path(deb_path), current, Path(dest))
        if kind in ("file", "gzip"):
            return Path(dest)
        if kind == "missing":
            raise FileNotFoundError(f"{member} is not in {deb_path}")
        assert target is not None
        if target.endswith(".gz") and not current.endswith(".gz"):
            target = target[: -len(".gz")]  # the next pass also looks for target + ".gz" and decompresses it
        logger.debug("%s is a symlink to %s inside %s", current, target, deb_path)
        current = target
    raise OSError(f"too many symlinks resolving {member} inside {deb_path}")


def apt_download(package: str, workdir: Path, timeout: float) -> Path:
    """Run ``apt-get download package`` in ``workdir`` (no root needed) and return the .deb path."""
    try:
        completed = subprocess.run(
            ["apt-get", "download", package],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise OSError("apt-get is not available (not a Debian/Ubuntu system)") from exc
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout).strip().splitlines()
        raise OSError(f"apt-get download {package} failed: {detail[-1] if detail else completed.returncode}")
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise OSError(f"apt-get download {package} produced no .deb")
    return debs[0]


# ------------------------------------------------------------------------------------------------ strategies


@dataclass(frozen=True)
class DebianSource:
    """Fetch strategy: download a Debian package with apt and extract one member from it."""

    package: str
    member: str
    timeout: float = 600.0

    @property
    def description(self) -> str:
        return f"debian package {self.package} ({self.member})"

    def __call__(self, workdir: Path) -> Path:
        deb = apt_download(self.package, workdir, self.timeout)
        try:
            return extract_from_deb(deb, self.member, workdir / PurePosixPath(self.member).name)
        except FileNotFoundError as exc:
            raise OSError(str(exc)) from exc
        finally:
            deb.unlink(missing_ok=True)


@dataclass(frozen=True)
class UrlSource:
    """Fetch strategy: download one URL."""

    url: str
    timeout: float = 60.0

    @property
    def description(self) -> str:
        return self.url

    def __call__(self, workdir: Path) -> Path:
        return download_url(self.url, workdir / "download.part", self.timeout)


def default_sources(spec: SampleSpec, timeout: float = 60.0) -> list[Source]:
    """The Debian package (if the spec names one) followed by each of the spec's URLs.

    ``timeout`` is the per-URL socket timeout; apt gets :attr:`DebianSource.timeout` for the whole download.
    """
    sources: list[Source] = []
    if spec.debian_package and spec.debian_member:
        sources.append(DebianSource(spec.debian_package, spec.debian_member))
    sources.extend(UrlSource(url, timeout) for url in spec.urls)
    return sources


def describe_folder(source: Source) -> str:
    description = getattr(source, "description", None)
    if isinstance(description, str):
        return description
    return getattr(source, "__name__", None) or repr(source)


# -------------------------------------------------------------------------------------------------- fetching


def _install(candidate: Path, workdir: Path, target: Path) -> None:
    """Move a verified candidate into place atomically (copying it into ``workdir`` first if needed)."""
    staged = candidate
    if candidate.resolve().parent != workdir.resolve():
        staged = workdir / ".staged"
        shutil.copyfile(candidate, staged)
    os.replace(staged, target)


def _try_source(source: Source, spec: SampleSpec, target: Path) -> None:
    """Run one strategy in a scratch dir next to ``target``; raise OSError/ValueError etc. on failure."""
    with tempfile.TemporaryDirectory(prefix=f".{spec.filename}.", dir=target.parent) as scratch:
        workdir = Path(scratch)
        candidate = Path(source(workdir))
        actual = sha256_of(candidate)
        if actual != spec.sha256:
            raise ValueError(f"sha256 mismatch: got {actual}, expected {spec.sha256}")
        _install(candidate, workdir, target)


def _failure(spec: SampleSpec, target: Path, attempts: list[str]) -> SampleDataError:
    lines = "\n".join(f"  - {attempt}" for attempt in attempts) or "  - (no source was tried)"
    message = (
        f"could not obtain the sample {spec.filename} (sha256 {spec.sha256}):\n{lines}\n"
        f"put the file at {target} or pass --source"
    )
    return SampleDataError(message, attempts)


def _local_notes(spec: SampleSpec, target: Path) -> list[str]:
    notes = [f"cache {target}: not present or invalid"]
    system = _system_path(spec)
    if system is not None:
        notes.append(f"installed {system}: not present or invalid")
    return notes


def fetch_sample(
    spec: SampleSpec = VTEST,
    cache_dir: Path | None = None,
    *,
    allow_download: bool = True,
    sources: Sequence[Source] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return a verified local copy of the sample, fetching it into the cache when it is missing.

    ``sources`` replaces the default strategies (see :func:`default_sources`); each is tried in order
    until one yields a file with the expected SHA-256. Raises :class:`SampleDataError` listing every
    attempt when none does (or when ``allow_download`` is false and no local copy exists).
    """
    found = find_sample(spec, cache_dir)
    if found is not None:
        return found
    target = _cache_path(spec, cache_dir)
    attempts = _local_notes(spec, target)
    if not allow_download:
        attempts.append("download: not allowed")
        raise _failure(spec, target, attempts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        attempts.append(f"cache directory {target.parent}: {exc}")
        raise _failure(spec, target, attempts) from exc
    for source in sources if sources is not None else default_sources(spec, timeout):
        name = describe_folder(source)
        try:
            _try_source(source, spec, target)
        except (OSError, ValueError, subprocess.SubprocessError, tarfile.TarError, SampleDataError) as exc:
            logger.warning("sample source %s failed: %s", name, exc)
            attempts.append(f"{name}: {exc}")
            continue
        logger.info("sample %s fetched from %s into %s", spec.filename, name, target)
        return target
    raise _failure(spec, target, attempts)
