"""Fetching pinned files into the project's cache: the one downloader of the sample video and the model weights.

* :func:`default_cache_dir` -- where fetched files live (``$KEYREID_STREAM_CACHE`` overrides it).
* :func:`download_url` -- one URL to one file over HTTP(S): redirects followed, a socket timeout on every read (a
  stalled server fails instead of hanging), a partial file resumed with an HTTP ``Range`` request (also when the
  connection drops half way: a few immediate retries), a progress callback.
* :func:`fetch_file` -- a :class:`RemoteFile` (URLs tried in order, exact size, sha256) into a target path. pooch's
  ``retrieve`` does the part it does well: a temporary file next to the target, the sha256 check, then the move
  into place, so a wrong or half file never sits where a finished one is expected. This module adds what pooch
  lacks: the downloader above (pooch has no resume and no URL list), the size check before the hash, and one
  error that lists every URL tried and why it failed.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CACHE_ENV", "FetchError", "Progress", "RemoteFile", "default_cache_dir", "download_url", "fetch_file",
           "sha256_of"]

logger = logging.getLogger(__name__)

CACHE_ENV = "KEYREID_STREAM_CACHE"
CHUNK = 1 << 20
USER_AGENT = "keyreid-stream fetcher"
RESUME_RETRIES = 3  # immediate Range retries after a connection that drops half way (each must make progress)
LOG_EVERY_S = 10.0

Progress = Callable[[str, "int | None", int], Callable[[int], object]]
"""``progress(label, total_bytes_or_None, bytes_already_there)`` -> ``update(n_new_bytes)``; e.g. a tqdm bar."""


class FetchError(RuntimeError):
    """No URL gave the expected file; ``attempts`` says, per URL, why."""

    def __init__(self, message: str, attempts: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)


@dataclass(frozen=True)
class RemoteFile:
    """A file on the internet, pinned: mirrors tried in order, its exact size (0: unknown) and sha256."""

    urls: tuple[str, ...]
    sha256: str
    size: int = 0

    @property
    def filename(self) -> str:
        return self.urls[0].rstrip("/").rsplit("/", 1)[-1].split("?")[0]


def default_cache_dir() -> Path:
    """``$KEYREID_STREAM_CACHE``, else ``$XDG_CACHE_HOME/keyreid-stream``, else ``~/.cache/keyreid-stream``.

    Empty variables count as unset.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "keyreid-stream"
    return Path.home() / ".cache" / "keyreid-stream"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------- one URL


def download_url(url: str, dest: Path, timeout: float, *, expected_size: int = 0, resume: bool = False,
                 progress: Progress | None = None, label: str = "") -> Path:
    """Stream ``url`` into ``dest`` and return ``dest``.

    ``resume``: bytes already in ``dest`` are kept and the rest asked for with ``Range`` (a server that ignores it
    sends the whole file, which then replaces them); otherwise ``dest`` is overwritten. A connection that drops
    half way is resumed at once, up to :data:`RESUME_RETRIES` times while each try makes progress. ``timeout``
    bounds the connection and every read. Raises ``OSError`` (``urllib.error.URLError``, ``TimeoutError``,
    ``http.client.IncompleteRead`` ...) on network or HTTP errors; what was received stays in ``dest`` when
    ``resume`` is set.
    """
    dest = Path(dest)
    if not resume:
        dest.unlink(missing_ok=True)
    retries = RESUME_RETRIES
    while True:
        before = dest.stat().st_size if dest.exists() else 0
        try:
            _download_once(url, dest, timeout, expected_size, progress, label or dest.name)
            return dest
        except (OSError, http.client.HTTPException) as exc:
            error = exc if isinstance(exc, OSError) else OSError(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, urllib.error.HTTPError):
                raise
            gained = (dest.stat().st_size if dest.exists() else 0) - before
            if gained <= 0 or retries <= 0:
                raise error from exc
            retries -= 1
            logger.warning("%s: connection lost after %d new bytes (%s); resuming", url, gained, error)


def _download_once(url: str, dest: Path, timeout: float, expected_size: int, progress: Progress | None,
                   label: str) -> None:
    have = dest.stat().st_size if dest.exists() else 0
    if expected_size and have == expected_size:
        return
    if expected_size and have > expected_size:
        dest.unlink()
        have = 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    logger.info("downloading %s%s", url, f" (resuming at byte {have})" if have else "")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send, or a partial that does not fit: start over
            exc.close()
            dest.unlink()
            return _download_once(url, dest, timeout, expected_size, progress, label)
        raise
    with response:
        start = _resume_offset(response, have)
        if start == 0 and have:
            logger.info("%s: the server sent the whole file, not the rest: starting over", url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else (expected_size or None)
        update = progress(label, total, start) if progress is not None else None
        with open(dest, "r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            _copy(response, out, url, start, total, update)


def _resume_offset(response: http.client.HTTPResponse, have: int) -> int:
    """Where the body goes in the file: ``have`` for a matching 206 reply, 0 for a whole file (200)."""
    if response.status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if match is None or int(match.group(1)) != have:
        raise OSError(f"the server answered the Range request with {response.headers.get('Content-Range')!r}")
    return have


def _copy(response: http.client.HTTPResponse, out: object, url: str, start: int, total: int | None,
          update: Callable[[int], object] | None) -> None:
    done, last_log = start, time.monotonic()
    while True:
        try:
            chunk = response.read(CHUNK)
        except TimeoutError as exc:  # the server stopped sending
            raise TimeoutError(f"no data from {url} for the read timeout ({exc})") from exc
        if not chunk:
            break
        out.write(chunk)  # type: ignore[attr-defined]
        done += len(chunk)
        if update is not None:
            update(len(chunk))
        elif time.monotonic() - last_log > LOG_EVERY_S:
            last_log = time.monotonic()
            logger.info("%s: %s", url, _amount(done, total))
    if total is not None and done < total:
        raise http.client.IncompleteRead(b"", total - done)


def _amount(done: int, total: int | None) -> str:
    mb = done / 1e6
    return f"{mb:.1f} MB" if not total else f"{mb:.1f} / {total / 1e6:.1f} MB ({100 * done / total:.0f}%)"


# -------------------------------------------------------------------------------------------- a pinned file


def partial_path(target: Path, remote: RemoteFile) -> Path:
    """Where the bytes of ``remote`` collect while it downloads (kept between runs, so a fetch resumes)."""
    return target.with_name(f".{target.name}.{remote.sha256[:16]}.part")


def fetch_file(remote: RemoteFile, target: Path, *, timeout: float = 60.0, progress: Progress | None = None) -> Path:
    """Download ``remote`` into ``target`` (URLs in order) unless ``target`` already holds it; returns ``target``.

    Size, then sha256, are checked before the atomic move into place. Raises :class:`FetchError` listing each URL
    and its failure when none works.
    """
    import pooch

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and (not remote.size or target.stat().st_size == remote.size) \
            and sha256_of(target) == remote.sha256:
        return target
    pooch.get_logger().setLevel(logging.WARNING)  # our own log lines say what is downloaded
    attempts: list[str] = []
    for url in remote.urls:
        def downloader(url: str, output_file: str, _pooch: object) -> None:
            _download_checked(url, Path(output_file), remote, target, timeout, progress)

        try:
            pooch.retrieve(url, known_hash=f"sha256:{remote.sha256}", fname=target.name, path=target.parent,
                           downloader=downloader, progressbar=False)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = _reason(exc)
            logger.warning("%s: %s", url, reason)
            attempts.append(f"{url}: {reason}")
            continue
        return target
    lines = "\n".join(f"  - {attempt}" for attempt in attempts)
    raise FetchError(f"could not download {target.name} (sha256 {remote.sha256}, {remote.size or '?'} bytes):\n"
                     f"{lines}", attempts)


def _download_checked(url: str, output: Path, remote: RemoteFile, target: Path, timeout: float,
                      progress: Progress | None) -> None:
    """pooch's downloader: fill the resumable partial file, check its size, hand it to pooch (which checks the
    sha256 and moves it into place, or deletes it)."""
    partial = partial_path(target, remote)
    download_url(url, partial, timeout, expected_size=remote.size, resume=True, progress=progress, label=target.name)
    size = partial.stat().st_size
    if remote.size and size != remote.size:
        partial.unlink()
        raise ValueError(f"wrong size: got {size:,} bytes, expected {remote.size:,}")
    os.replace(partial, output)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    text = str(exc)
    if "does not match the known hash" in text:  # pooch's wording; ours is shorter
        found = re.search(r"\(([0-9a-f]{64})\)", text)
        return f"wrong sha256: got {found.group(1) if found else '?'}; nothing was installed"
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ValueError) else text
