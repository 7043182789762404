"""A small client of the matcher's HTTP API (what ``keyreid-stream query`` uses): requests, input files, and
readable summaries of the answers.

Standard library only (urllib), so it runs anywhere the package is installed. The command reads the API token
from an environment variable (``--token-env``, default ``$KEYREID_API_TOKEN``), never from the command line,
where other users could see it; ``--json`` prints the API's raw JSON, the default is a summary made here. Times are unix
seconds or ISO-8601 (UTC unless the text has an offset). Every failure (connection refused, an HTTP error with
the server's message, an unreadable file) raises :class:`QueryError` with one readable line.
"""

from __future__ import annotations

import argparse
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from keyreid_stream.clock import format_time, is_media_time

__all__ = ["DEFAULT_URL", "TOKEN_ENV", "QueryClient", "QueryError", "format_cameras", "format_health",
           "format_identities", "format_identity", "format_links", "format_search", "format_stats", "format_tracklet",
           "load_descriptor", "load_image", "parse_time"]

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_ENV = "KEYREID_API_TOKEN"
_MAX_ERROR_BODY = 64 * 1024


class QueryError(Exception):
    """The query failed: the matcher is unreachable, answered an error, or an input file is unreadable.
    ``status`` is the HTTP status when the matcher answered an error, else None."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------ client


class QueryClient:
    """A minimal JSON client of the query API."""

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise QueryError(f"--url must be http://HOST:PORT or https://..., got {url!r}")
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def get(self, path: str, params: Mapping[str, object] | None = None, *, accept: Sequence[int] = ()) -> Any:
        return self._request("GET", path, params, accept=accept)

    def post(self, path: str, body: bytes, content_type: str, params: Mapping[str, object] | None = None) -> Any:
        return self._request("POST", path, params, body, content_type)

    def identities(self, **params: object) -> list[dict[str, Any]]:
        """``GET /identities`` (camera, since, until, limit, min_cameras, offset; None values are left out)."""
        return cast("list[dict[str, Any]]", self.get("/identities", params))

    def identity_count(self, **params: object) -> dict[str, Any]:
        """``GET /identities/count`` (camera, since, until, min_cameras): ``{"total": N, "exact": bool}``."""
        return cast("dict[str, Any]", self.get("/identities/count", params))

    def identity(self, gid: str) -> dict[str, Any]:
        """``GET /identities/{gid}``."""
        return cast("dict[str, Any]", self.get(f"/identities/{urllib.parse.quote(gid, safe='')}"))

    def similar(self, tracklet_id: str, k: int = 5, *, exclude_self: bool = False) -> list[dict[str, Any]]:
        """``GET /tracklets/{id}/similar``: the identities that look most like a stored tracklet, best first."""
        params = {"k": k, "exclude_self": "true" if exclude_self else None}
        return cast("list[dict[str, Any]]",
                    self.get(f"/tracklets/{urllib.parse.quote(tracklet_id, safe='')}/similar", params))

    def thumbnail(self, tracklet_id: str) -> bytes:
        """``GET /tracklets/{id}/thumbnail``: the JPEG bytes."""
        return cast(bytes, self._request("GET", f"/tracklets/{urllib.parse.quote(tracklet_id, safe='')}/thumbnail",
                                         raw=True))

    def _request(self, method: str, path: str, params: Mapping[str, object] | None = None, body: bytes | None = None,
                 content_type: str | None = None, accept: Sequence[int] = (), raw: bool = False) -> Any:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        request = urllib.request.Request(self.url + path + (f"?{query}" if query else ""), data=body, method=method)
        request.add_header("Accept", "*/*" if raw else "application/json")
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
                return payload if raw else _json(payload, f"{method} {path}")
        except urllib.error.HTTPError as exc:
            payload = exc.read(_MAX_ERROR_BODY)
            exc.close()
            if exc.code in accept:
                return _json(payload, f"{method} {path}")
            raise QueryError(self._http_error(method, path, exc.code, payload), exc.code) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise QueryError(f"cannot reach the matcher API at {self.url}: {reason}") from None
        except TimeoutError:
            raise QueryError(f"no answer from the matcher API at {self.url} within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise QueryError(f"connection to the matcher API at {self.url} failed: {exc}") from None

    def _http_error(self, method: str, path: str, status: int, payload: bytes) -> str:
        try:
            data = json.loads(payload)
            message = f"{data['error']}: {data['detail']}"
        except (ValueError, KeyError, TypeError):
            message = payload.decode("utf-8", "replace").strip()[:200] or "no details"
        hint = ""
        if status == 401 and not self.token:
            hint = " (the API needs a token: put it in the environment variable named by --token-env)"
        return f"{method} {path}: HTTP {status} {message}{hint}".replace("\n", " ")


def _json(payload: bytes, what: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise QueryError(f"{what}: the server did not answer JSON") from None


# ------------------------------------------------------------------------------------------ inputs


def parse_time(text: str) -> float:
    """Unix seconds (``1700000000.5``) or ISO-8601 (``2024-05-01T12:00:00``, UTC unless an offset is given)."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected unix seconds or an ISO-8601 time, got {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        value = moment.timestamp()
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite time, got {text!r}")
    return value


def load_descriptor(path: Path) -> list[float]:
    """A descriptor from ``.npy`` (one vector) or ``.json`` (a list, or ``{"descriptor": [...]}``)."""
    try:
        if path.suffix.lower() == ".npy":
            import numpy as np

            values = np.load(path, allow_pickle=False)
            if values.ndim == 2 and values.shape[0] == 1:
                values = values[0]
            if values.ndim != 1 or values.dtype.kind not in "fiu":
                raise QueryError(f"{path}: expected one numeric vector, got {values.dtype} {values.shape}")
            return [float(v) for v in values]
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            data = data.get("descriptor") if isinstance(data, dict) else data
            if not isinstance(data, list) or not all(isinstance(v, (int, float)) for v in data):
                raise QueryError(f"{path}: expected a JSON list of numbers or {{\"descriptor\": [...]}}")
            return [float(v) for v in data]
    except OSError as exc:
        raise QueryError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise QueryError(f"{path}: not a valid descriptor file ({exc})") from None
    raise QueryError(f"{path}: a descriptor file must be .npy or .json")


def load_image(path: Path) -> tuple[bytes, str]:
    """The bytes of a JPEG or PNG file and its content type (from its first bytes, not its name)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QueryError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data.startswith(b"\xff\xd8\xff"):
        return data, "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "image/png"
    raise QueryError(f"{path}: not a JPEG or PNG image")


# ------------------------------------------------------------------------------------------ output


def _when(value: float | None) -> str:
    """ISO-8601 UTC for wall-clock times, ``0:01:04.6 media`` for media time (see :mod:`keyreid_stream.clock`)."""
    if value is None or is_media_time(value):
        return format_time(value)
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str = "(none)") -> str:
    if not rows:
        return empty
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _pairs(data: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={value}" for key, value in data.items()) or "-"


def format_health(data: Mapping[str, Any]) -> str:
    lines = [f"status: {data['status']}", f"redis: {'reachable' if data['redis'] else 'UNREACHABLE'}"]
    lines += [f"problem: {problem}" for problem in data.get("problems", [])]
    lines += [f"{key}: {value}" for key, value in data.get("service", {}).items()]
    return "\n".join(lines)


def format_stats(data: Mapping[str, Any]) -> str:
    lag = data["association_lag_s"]
    return "\n".join([
        f"tracklets: {data['tracklets']}   identities: {data['identities']}",
        (f"received: {data['received']}   stored: {data['stored']}   duplicates: {data['duplicates']}   "
         f"rejected: {_pairs(data['rejected'])}"),
        f"index: {_pairs(data['spaces'])}",
        f"association lag: {'-' if lag is None else f'{lag:.1f} s'}   lease owner: {data['lease_owner'] or '-'}",
        *(f"{key}: {value}" for key, value in data.get("service", {}).items()),
    ])


def format_cameras(rows: Sequence[Mapping[str, Any]]) -> str:
    table = []
    for row in rows:
        beat = row["last_heartbeat"] or {}
        table.append([row["camera_id"], row["tracklets"], _when(beat.get("received_at")), beat.get("sequence", "-")])
    return _table(["camera", "tracklets", "last heartbeat", "sequence"], table)


def format_identities(rows: Sequence[Mapping[str, Any]]) -> str:
    return _table(["identity", "last seen", "first seen", "tracklets", "cameras"],
                  [[r["identity_id"], _when(r["last_seen"]), _when(r["first_seen"]), r["num_tracklets"],
                    ",".join(r.get("cameras", [])) + ("" if r.get("cameras_complete", True) else ",...")]
                   for r in rows])


def format_identity(data: Mapping[str, Any]) -> str:
    name = data["identity_id"]
    if data["requested_id"] != name:
        name += f" (asked for {data['requested_id']}, merged: {' -> '.join([*data['merged_from'], name])})"
    shown = f", showing {len(data['tracklets'])}" if data["truncated"] else ""
    tracklets = [[t["tracklet_id"], t["camera_id"], t["track_id"], _when(t["start_time"]), _when(t["end_time"]),
                  t["decision_kind"] or "-", _score(t["decision_score"])] for t in data["tracklets"]]
    visits = [[v["camera_id"], _when(v["start_time"]), _when(v["end_time"]), v["tracklets"]] for v in data["visits"]]
    return "\n".join([
        f"identity {name}",
        (f"seen {_when(data['first_seen'])} .. {_when(data['last_seen'])} on {', '.join(data['cameras']) or '-'}; "
         f"{data['num_tracklets']} tracklets{shown}"),
        "", "visits:", _table(["camera", "from", "to", "tracklets"], visits),
        "", "tracklets:", _table(["tracklet", "camera", "track", "start", "end", "decision", "score"], tracklets),
    ])


def format_tracklet(data: Mapping[str, Any]) -> str:
    lines = [(f"tracklet {data['tracklet_id']}: camera {data['camera_id']} track {data['track_id']}, "
              f"{_when(data['start_time'])} .. {_when(data['end_time'])}, {data['num_frames']} frames"),
             (f"identity: {data['identity'] or '- (not associated yet)'}   space: {data['space']}   "
              f"thumbnail: {'yes' if data['has_thumbnail'] else 'no'}")]
    decision, link = data.get("decision"), data.get("link")
    if decision:
        lines.append(f"decision: {decision['kind']} score {_score(decision['score'])}"
                     + (f" via {decision['matched_tracklet']}" if decision["matched_tracklet"] else ""))
        lines += [f"  candidate {c['identity']} {_score(c['score'])} ({c['tracklet_id']})"
                  for c in decision["candidates"]]
        lines += [f"  rejected {r['identity']}: {r['reason']}" for r in decision["rejected"]]
    if link:
        lines.append(f"link: {link['kind']} to {link['tracklet_id']} on {link['camera_id'] or '?'} "
                     f"score {_score(link['score'])}")
    return "\n".join(lines)


def format_links(rows: Sequence[Mapping[str, Any]]) -> str:
    return _table(["tracklet", "camera", "end", "identity", "linked tracklet", "linked camera", "score", "kind"],
                  [[r["tracklet_id"], r["camera_id"], _when(r["end_time"]), r["identity"] or "-", r["linked_tracklet"],
                    r["linked_camera"] or "-", _score(r["score"]), r["kind"]] for r in rows])


def format_search(rows: Sequence[Mapping[str, Any]]) -> str:
    return _table(["rank", "identity", "score", "best tracklet", "camera", "hits"],
                  [[i, r["identity_id"], _score(r["score"]), r["best_tracklet"], r["best_camera"], r["tracklets_hit"]]
                   for i, r in enumerate(rows, 1)], empty="(no match)")


# ------------------------------------------------------------------------------------------ commands
