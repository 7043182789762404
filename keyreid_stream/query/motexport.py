"""The workers' MOT files relabelled with the matcher's global identities, for multi-camera evaluation.

A worker with ``output.mot_dir`` writes each camera's tracked boxes with its local track ids
(``MOT_DIR/CAMERA.txt``). :func:`export_global_ids` asks a running matcher (its HTTP API, through
:class:`~keyreid_stream.query.client.QueryClient`) which identity each track joined and writes the same files
with identity numbers instead, which ``keyreid-stream eval-mtmc`` compares with the ground truth:

* For each camera, the identities seen there (``GET /identities?camera=...``, paged backwards in time with
  ``until``), then each identity once (``GET /identities/{gid}``, merges followed) for its tracklets, each with its
  ``camera_id``, ``track_id`` and ``num_frames``.
* A track whose segments (the tracklets a long track is cut into) went to different identities takes the
  identity with the most frames among them (ties: the smaller identity number); such tracks are counted.
* An identity's number is the numeric part of its id (``g42`` -> 42) when every id has a distinct one, else ids
  without a usable number are numbered after the largest one, in sorted order. ``identities.csv`` maps numbers to
  identity ids, ``tracks.csv`` every (camera, track) to its number and the identities of its segments.
* A track with no identity (never published, e.g. shorter than ``tracklets.min_frames``, or not decided yet) keeps
  an id of its own, from :data:`UNLINKED_BASE` on (or above the largest identity number), and is counted.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import urllib.parse
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keyreid_stream.mot import MotTracks, read_camera_dir, write_mot
from keyreid_stream.query.client import QueryClient

__all__ = ["UNLINKED_BASE", "ExportReport", "TrackAssignment", "assign_tracks", "export_global_ids",
           "fetch_track_identities", "format_export_report", "identity_numbers"]

logger = logging.getLogger(__name__)

UNLINKED_BASE = 1_000_000_000
_NUMBERED = re.compile(r"\D*(\d+)(?:-[0-9a-z]+)?")  # g42, g42-<epoch>
TrackKey = tuple[str, int]  # (camera, local track id)


@dataclass(frozen=True)
class TrackAssignment:
    """One (camera, track): its number in the exported files, its identity (None: unlinked) and the frames of
    its segments per identity."""

    camera: str
    track_id: int
    number: int
    identity: str | None
    segments: dict[str, int]


@dataclass(frozen=True)
class ExportReport:
    out_dir: str
    cameras: int
    rows: int
    tracks: int
    linked_tracks: int
    unlinked_tracks: int
    split_tracks: int
    identities: int
    truncated_identities: int


# ------------------------------------------------------------------------------------------ the matcher's answers


def _camera_identities(client: QueryClient, camera: str, page_size: int) -> list[str]:
    """Every identity with a tracklet on ``camera``, newest first (pages going back in time)."""
    seen: dict[str, None] = {}
    until: float | None = None
    while True:
        page = client.get("/identities", {"camera": camera, "until": until, "limit": page_size})
        new = [item["identity_id"] for item in page if item["identity_id"] not in seen]
        seen.update(dict.fromkeys(new))
        if len(page) < page_size:
            return list(seen)
        oldest = min(float(item["last_seen"]) for item in page)
        if not new and until is not None and oldest >= until:  # a full page at one instant: step past it
            oldest = math.nextafter(until, -math.inf)
        until = oldest


def fetch_track_identities(client: QueryClient, cameras: Iterable[str], *,
                           page_size: int = 100) -> tuple[dict[TrackKey, dict[str, int]], int]:
    """{(camera, track id): {identity: frames}} of the tracks of ``cameras`` that have an identity, and the number
    of identities whose tracklet list the API truncated (their oldest tracklets are then missing)."""
    wanted = set(cameras)
    found: dict[TrackKey, dict[str, int]] = defaultdict(dict)
    visited: set[str] = set()
    truncated = 0
    for camera in sorted(wanted):
        for gid in _camera_identities(client, camera, page_size):
            if gid in visited:
                continue
            view = client.get(f"/identities/{urllib.parse.quote(gid, safe='')}")
            live = view["identity_id"]
            if live in visited:  # gid was merged into an identity already read
                visited.add(gid)
                continue
            visited.update((gid, live, *view.get("merged_from", [])))
            if view.get("truncated"):
                truncated += 1
                logger.warning("identity %s has %d tracklets; the API returned the %d most recent", live,
                               view["num_tracklets"], len(view["tracklets"]))
            for tracklet in view["tracklets"]:
                if tracklet["camera_id"] in wanted:
                    segments = found[(tracklet["camera_id"], int(tracklet["track_id"]))]
                    segments[live] = segments.get(live, 0) + int(tracklet["num_frames"])
    return dict(found), truncated


# ------------------------------------------------------------------------------------------ numbering


def identity_numbers(identities: Iterable[str]) -> dict[str, int]:
    """Integer ids: the numeric part of each identity id where it is distinct, else numbers after the largest."""
    names = sorted(set(identities))
    parsed = {name: int(match.group(1)) for name in names if (match := _NUMBERED.fullmatch(name))}
    counts: dict[int, int] = defaultdict(int)
    for number in parsed.values():
        counts[number] += 1
    numbers = {name: number for name, number in parsed.items() if counts[number] == 1}
    following = max(numbers.values(), default=0) + 1
    for name in names:
        if name not in numbers:
            numbers[name] = following
            following += 1
    return numbers


def assign_tracks(tracks: Iterable[TrackKey], identities: Mapping[TrackKey, Mapping[str, int]],
                  ) -> list[TrackAssignment]:
    """Each track's identity (most frames) and number; unlinked tracks get their own numbers, in order."""
    keys = sorted(set(tracks))
    numbers = identity_numbers(gid for key in keys for gid in identities.get(key, {}))
    unlinked = max(UNLINKED_BASE, max(numbers.values(), default=0) + 1)
    result = []
    for camera, track_id in keys:
        segments = dict(identities.get((camera, track_id), {}))
        if segments:
            identity = min(segments, key=lambda gid: (-segments[gid], numbers[gid]))
            number = numbers[identity]
        else:
            identity, number = None, unlinked
            unlinked += 1
        result.append(TrackAssignment(camera, track_id, number, identity, segments))
    return result


# ------------------------------------------------------------------------------------------ export


def _write_tables(out_dir: Path, assignments: list[TrackAssignment]) -> None:
    identities = sorted({(a.number, a.identity) for a in assignments if a.identity is not None})
    with (out_dir / "identities.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("number", "identity"))
        writer.writerows(identities)
    with (out_dir / "tracks.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("camera", "track_id", "number", "identity", "segments"))
        for a in assignments:
            segments = ";".join(f"{gid}:{frames}" for gid, frames in sorted(a.segments.items()))
            writer.writerow((a.camera, a.track_id, a.number, a.identity or "", segments))


def _relabel(tracks: MotTracks, numbers: Mapping[int, int]) -> MotTracks:
    local = np.asarray(sorted(numbers), dtype=np.int64)
    mapped = np.asarray([numbers[int(t)] for t in local], dtype=np.int64)
    return tracks.with_ids(mapped[np.searchsorted(local, tracks.ids)])


def export_global_ids(tracks_dir: str | Path, client: QueryClient, out_dir: str | Path, *,
                      page_size: int = 100) -> ExportReport:
    """Read ``tracks_dir/CAMERA.txt`` (local track ids), write ``out_dir/CAMERA.txt`` with identity numbers, plus
    ``identities.csv`` and ``tracks.csv``; see the module docstring."""
    cameras = read_camera_dir(tracks_dir)
    out_dir = Path(out_dir)
    keys = [(camera, int(t)) for camera, tracks in cameras.items() for t in np.unique(tracks.ids)]
    found, truncated = fetch_track_identities(client, cameras, page_size=page_size)
    assignments = assign_tracks(keys, found)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_camera: dict[str, dict[int, int]] = defaultdict(dict)
    for a in assignments:
        by_camera[a.camera][a.track_id] = a.number
    for camera, tracks in cameras.items():
        write_mot(out_dir / f"{camera}.txt", _relabel(tracks, by_camera[camera]) if len(tracks) else tracks)
    _write_tables(out_dir, assignments)
    linked = [a for a in assignments if a.identity is not None]
    report = ExportReport(
        out_dir=str(out_dir), cameras=len(cameras), rows=sum(len(t) for t in cameras.values()),
        tracks=len(assignments), linked_tracks=len(linked), unlinked_tracks=len(assignments) - len(linked),
        split_tracks=sum(len(a.segments) > 1 for a in assignments), identities=len({a.identity for a in linked}),
        truncated_identities=truncated)
    logger.debug("%s", format_export_report(report))
    return report


def format_export_report(report: ExportReport) -> str:
    text: dict[str, Any] = {
        "wrote": f"{report.cameras} camera file(s) with {report.rows} boxes to {report.out_dir}",
        "tracks": f"{report.tracks}: {report.linked_tracks} linked to {report.identities} identities, "
                  f"{report.unlinked_tracks} unlinked (ids of their own), "
                  f"{report.split_tracks} split over several identities (took the one with most frames)",
    }
    if report.truncated_identities:
        text["warning"] = (f"{report.truncated_identities} identities had more tracklets than the API returns: "
                           "their oldest tracks may show as unlinked")
    return "\n".join(f"{key}: {value}" for key, value in text.items())
