"""A static HTML report of a running matcher's identities: ONE self-contained file (thumbnails inlined as
``data:`` URIs, a timeline per identity as inline SVG, no script, no external resource) that can be mailed or
archived. The demo writes one with ``--report FILE``, with the result of its geometry check of the links.

The identities seen on more than one camera are highlighted (listed first in the summary, marked in the index and
in their sections). Times follow :mod:`keyreid_stream.clock` (media time or UTC wall clock, each saying which; the
header says which the report shows); decision times are the matcher's wall clock.

It asks the matcher's HTTP API through a :class:`~keyreid_stream.query.client.QueryClient`: the recent
identities (``GET /identities``), each identity (``GET /identities/{gid}``) and up to ``thumbnails_per_camera``
thumbnails per camera and identity (``GET /tracklets/{id}/thumbnail``). Every text that comes from the matcher or
the caller (ids, camera names, notes, the title) is HTML-escaped. Failures raise
:class:`~keyreid_stream.query.client.QueryError` (an identity or thumbnail deleted meanwhile is skipped) or
``OSError`` (the file).
"""

from __future__ import annotations

import base64
import html
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from keyreid_stream.clock import clock_note, format_time
from keyreid_stream.contracts import short_track_id
from keyreid_stream.query.client import QueryClient, QueryError

__all__ = ["LinkCheck", "ReportSummary", "write_report"]

logger = logging.getLogger(__name__)

_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d232a;background:#f6f7f9;margin:0 auto;max-width:1000px;padding:1rem}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:0 0 .3rem}h3{font-size:.95rem;margin:0 0 .3rem}
.notes{background:#eef4ff;border:1px solid #b6cdf6;border-radius:6px;padding:.5rem 1.5rem}
.muted{color:#5d6873}table{border-collapse:collapse;width:100%;background:#fff;margin:.4rem 0}
th,td{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #d5dbe1;vertical-align:top}
.identity{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:.7rem 1rem;margin:1rem 0}
.cameras{display:flex;flex-wrap:wrap;gap:1rem}.camera img{width:56px;height:112px;object-fit:contain;
background:#e9ecf0;margin-right:4px;border-radius:3px}.timeline{width:100%;max-width:900px}
.timeline text{font-size:12px}.bar{fill:#1f6feb}.bar.new{fill:#8a94a6}.bar.continuation{fill:#2e9d5b}
code{font-family:ui-monospace,monospace;font-size:.9em}
.identity.cross-camera{border:2px solid #1f6feb;box-shadow:0 0 0 3px #dbe8ff}
tr.cross-camera td{background:#eef4ff;font-weight:600}.badge{display:inline-block;background:#1f6feb;color:#fff;
border-radius:9px;padding:0 .5rem;font-size:.8rem;font-weight:600;margin-left:.4rem;vertical-align:middle}
.check{background:#fff;border:1px solid #d5dbe1;border-radius:6px;padding:.5rem 1rem;margin:.6rem 0}
"""


class LinkCheck(Protocol):
    """Links checked against a known truth (e.g. the demo's geometry check): pairs of tracks that are the same
    person (``true_pairs``), linked into one identity (``predicted_pairs``) and both (``correct_pairs``)."""

    @property
    def true_pairs(self) -> int: ...

    @property
    def predicted_pairs(self) -> int: ...

    @property
    def correct_pairs(self) -> int: ...

    @property
    def precision(self) -> float: ...

    @property
    def recall(self) -> float: ...


@dataclass(frozen=True)
class ReportSummary:
    """What was written: the file, its size, and what it shows."""

    path: Path
    identities: int
    tracklets: int
    cameras: tuple[str, ...]
    thumbnails: int
    size_bytes: int


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(seconds: float | None) -> str:
    return _e(format_time(seconds))


def _track(camera: str, track_id: object) -> str:
    """``cam1 #12``: the camera and the worker's own track count (the full id is in the tracklet's title)."""
    return f"{camera} #{short_track_id(int(track_id))}" if isinstance(track_id, int) else f"{camera} #{track_id}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def _data_uri(image: bytes) -> str | None:
    kind = "image/jpeg" if image.startswith(_JPEG) else "image/png" if image.startswith(_PNG) else None
    return None if kind is None else f"data:{kind};base64,{base64.b64encode(image).decode('ascii')}"


def _by_camera(view: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {camera: [] for camera in view["cameras"]}
    for tracklet in view["tracklets"]:
        groups.setdefault(tracklet["camera_id"], []).append(tracklet)
    return groups


def _timeline(view: Mapping[str, Any], groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One row per camera, one bar per tracklet, over the identity's time span."""
    width, label, row_height, top = 900, 140, 24, 6
    start = view["first_seen"] or 0.0
    span = max((view["last_seen"] or start) - start, 1e-3)
    height = top + row_height * len(groups) + 22

    def x(t: float) -> float:
        return label + (t - start) / span * (width - label - 10)

    parts = [(f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
              f'aria-label="timeline of {_e(view["identity_id"])}">')]
    for row, (camera, tracklets) in enumerate(groups.items()):
        y = top + row * row_height
        parts.append(f'<g class="row" data-camera="{_e(camera)}"><text x="4" y="{y + row_height / 2 + 4:.0f}">'
                     f'{_e(camera)}</text>')
        for t in tracklets:
            left = x(t["start_time"])
            kind = t["decision_kind"] or "pending"
            parts.append(f'<rect class="bar {_e(kind)}" data-tracklet="{_e(t["tracklet_id"])}" x="{left:.1f}" '
                         f'y="{y + 4}" width="{max(x(t["end_time"]) - left, 3):.1f}" height="{row_height - 9}">'
                         f'<title>{_e(_track(camera, t["track_id"]))} (track {_e(t["track_id"])}): '
                         f'{_when(t["start_time"])}, {_e(kind)}</title></rect>')
        parts.append("</g>")
    axis = top + row_height * len(groups) + 15
    parts.append(f'<text x="{label}" y="{axis}" fill="#5d6873">{_when(start)}</text>'
                 f'<text x="{width - 10}" y="{axis}" text-anchor="end" fill="#5d6873">+{_duration(span)}</text></svg>')
    return "".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _log(view: Mapping[str, Any]) -> str:
    names = {t["tracklet_id"]: _track(t["camera_id"], t["track_id"]) for t in view["tracklets"]}

    def name(tracklet_id: str) -> str:
        return _e(names.get(tracklet_id) or f"\u2026{tracklet_id[-8:]}")

    rows = []
    for entry in view["log"]:
        if entry["kind"] in ("merge", "split"):
            moved = _plural(len(entry["tracklets"] or []), "tracklet")
            what = f'{_e(entry["source"])} &rarr; {_e(entry["target"])} ({moved})'
        else:
            what = name(entry["tracklet"] or "")
            if entry["matched"]:
                what += f' looks like {name(entry["matched"])}'
        score = "-" if entry["score"] is None else f'{entry["score"]:.3f}'
        rows.append(f'<tr><td>{_when(entry["t"])}</td><td>{_e(entry["kind"])}</td><td>{what}</td><td>{score}</td></tr>')
    if not rows:
        return '<p class="muted">No decision recorded.</p>'
    return ('<table class="log"><thead><tr><th>decided (matcher\'s clock)</th><th>kind</th><th>what</th><th>score'
            f'</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _identity(view: Mapping[str, Any], images: Mapping[str, str], per_camera: int) -> str:
    gid = view["identity_id"]
    groups = _by_camera(view)
    cameras = []
    for camera, tracklets in groups.items():
        shown = [t for t in reversed(tracklets) if t["tracklet_id"] in images][:per_camera]
        pictures = "".join(f'<img src="{images[t["tracklet_id"]]}" data-tracklet="{_e(t["tracklet_id"])}" '
                           f'alt="{_e(_track(camera, t["track_id"]))}" title="{_when(t["start_time"])}">'
                           for t in shown)
        pictures = pictures or '<span class="muted">no thumbnail</span>'
        cameras.append(f'<div class="camera" data-camera="{_e(camera)}"><h3>{_e(camera)} '
                       f'({_plural(len(tracklets), "tracklet")})</h3>{pictures}</div>')
    first, last = view["first_seen"], view["last_seen"]
    span = "-" if first is None else f"{_when(first)} to {_when(last)} ({_duration(last - first)})"
    most_recent = f", the {len(view['tracklets'])} most recent shown" if view["truncated"] else ""
    count = _plural(view["num_tracklets"], "tracklet")
    cross = len(groups) > 1
    badge = f'<span class="badge">{len(groups)} cameras</span>' if cross else ""
    return (f'<section class="identity{" cross-camera" if cross else ""}" id="identity-{_e(gid)}" '
            f'data-identity="{_e(gid)}"><h2>Identity {_e(gid)}{badge}</h2><p class="muted">{span}; {count}{most_recent} '
            f'on {_e(", ".join(groups))}</p><div class="cameras">{"".join(cameras)}</div>'
            f'{_timeline(view, groups)}{_log(view)}</section>')


def _check(check: LinkCheck | None, note: str) -> str:
    if check is None:
        return ""
    how = f'<p class="muted">{_e(note)}</p>' if note else ""
    return (f'<div class="check" id="link-check"><h2>Links checked</h2><p>{check.correct_pairs} of '
            f'{check.predicted_pairs} linked track pairs are right: <strong>precision {check.precision:.2f}'
            f'</strong>; {check.correct_pairs} of the {check.true_pairs} true pairs were found: <strong>recall '
            f'{check.recall:.2f}</strong>.</p>{how}</div>')


def _cross_summary(views: Sequence[Mapping[str, Any]]) -> str:
    cross = [v for v in views if len(v["cameras"]) > 1]
    links = ", ".join(f'<a href="#identity-{_e(v["identity_id"])}">{_e(v["identity_id"])}</a> '
                      f'({_e(", ".join(v["cameras"]))})' for v in cross)
    return (f'<p class="cross-summary" id="cross-camera"><strong>{len(cross)} of {len(views)} '
            f'identit{"y" if len(views) == 1 else "ies"} seen on more than one camera</strong>'
            f'{": " + links if links else "."}</p>')


def _document(title: str, notes: Sequence[str], views: Sequence[Mapping[str, Any]], images: Mapping[str, str],
              source: str, generated_at: float, per_camera: int, check: str) -> str:
    cameras = sorted({t["camera_id"] for view in views for t in view["tracklets"]})
    tracklets = sum(view["num_tracklets"] for view in views)
    index = "".join(f'<tr{" class=cross-camera" if len(v["cameras"]) > 1 else ""}>'
                    f'<td><a href="#identity-{_e(v["identity_id"])}">{_e(v["identity_id"])}</a></td>'
                    f'<td>{_when(v["first_seen"])}</td><td>{_when(v["last_seen"])}</td>'
                    f'<td>{_e(", ".join(v["cameras"]))}</td><td>{v["num_tracklets"]}</td></tr>' for v in views)
    clocks = clock_note(v["first_seen"] for v in views)
    clocks = f" The {clocks}; decisions are on the matcher's wall clock (UTC)." if clocks else ""
    notes_html = ("<ul class=\"notes\">" + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul>") if notes else ""
    body = "".join(_identity(view, images, per_camera) for view in views) or '<p class="muted">No identity.</p>'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>{notes_html}"
        f'<p class="muted">Generated {_when(generated_at)} from {_e(source)}: {len(views)} identities, {tracklets} '
        f'tracklets, cameras: {_e(", ".join(cameras) or "-")}.{_e(clocks)}</p>{_cross_summary(views)}{check}'
        '</header><table class="index"><thead><tr><th>identity</th><th>first seen</th><th>last seen</th>'
        f"<th>cameras</th><th>tracklets</th></tr></thead><tbody>{index}</tbody></table>{body}</body></html>\n"
    )


def _fetch_thumbnails(client: QueryClient, views: Sequence[Mapping[str, Any]], per_camera: int) -> dict[str, str]:
    """Data URIs of the most recent ``per_camera`` thumbnails of each camera of each identity."""
    images: dict[str, str] = {}
    for view in views:
        for tracklets in _by_camera(view).values():
            chosen = [t["tracklet_id"] for t in reversed(tracklets) if t["has_thumbnail"]][:per_camera]
            for tracklet_id in chosen:
                try:
                    uri = _data_uri(client.thumbnail(tracklet_id))
                except QueryError as exc:
                    if exc.status != 404:
                        raise
                    continue  # deleted by retention since the identity was read
                if uri is None:
                    logger.warning("report: the thumbnail of %s is neither JPEG nor PNG; left out", tracklet_id)
                else:
                    images[tracklet_id] = uri
    return images


def write_report(client: QueryClient, path: str | os.PathLike[str], *, title: str, notes: Sequence[str] = (),
                 min_cameras: int = 1, limit: int = 200, thumbnails_per_camera: int = 4,
                 generated_at: float | None = None, link_check: LinkCheck | None = None,
                 link_check_note: str = "") -> ReportSummary:
    """Write the report of the ``limit`` most recent identities seen on at least ``min_cameras`` cameras to
    ``path`` (replaced atomically); ``notes`` are shown at the top (e.g. which models ran), and ``link_check``
    (its precision and recall; ``link_check_note``: how the truth was known) below them. ``limit`` must not
    exceed the matcher's ``api.max_results``. Costs 2 + N requests plus one per embedded thumbnail."""
    if thumbnails_per_camera < 0:
        raise ValueError(f"thumbnails_per_camera must be >= 0, got {thumbnails_per_camera}")
    path = Path(path)
    views: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for row in client.identities(min_cameras=min_cameras, limit=limit):
        try:
            view = client.identity(row["identity_id"])
        except QueryError as exc:
            if exc.status != 404:
                raise
            continue  # merged away and deleted, or expired, since the list was read
        if view["identity_id"] not in seen and len(view["cameras"]) >= min_cameras:
            seen.add(view["identity_id"])
            views.append(view)
    images = _fetch_thumbnails(client, views, thumbnails_per_camera) if thumbnails_per_camera else {}
    document = _document(title, notes, views, images, client.url,
                         time.time() if generated_at is None else generated_at, thumbnails_per_camera,
                         _check(link_check, link_check_note))
    data = document.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    cameras = tuple(sorted({t["camera_id"] for view in views for t in view["tracklets"]}))
    logger.info("report: %d identities, %d thumbnails, %d bytes in %s", len(views), len(images), len(data), path)
    return ReportSummary(path, len(views), sum(v["num_tracklets"] for v in views), cameras, len(images), len(data))
