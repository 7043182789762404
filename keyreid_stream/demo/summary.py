"""What the demo reports, read back from the matcher's HTTP API like any other client would.

* :func:`cross_camera_identities` -- every identity with its time span per camera.
* :func:`link_latencies` -- per tracklet, the seconds from its last frame (the person leaving the camera) to the
  matcher's decision (the link being queryable). Only tracklets on the wall clock have one (live cameras, files
  read with ``pace``): media time (files read faster than real time) and the decision's wall clock do not compare
  (:mod:`keyreid_stream.clock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keyreid_stream.clock import is_media_time
from keyreid_stream.query.client import QueryClient

__all__ = ["CameraSpan", "IdentityReport", "Member", "cross_camera_identities", "link_latencies"]

PAGE = 1000


@dataclass(frozen=True)
class CameraSpan:
    """Where an identity was seen on one camera: its first and last frame times (keyreid_stream.clock) and
    tracklets."""

    camera_id: str
    start: float
    end: float
    tracklets: int


@dataclass(frozen=True)
class Member:
    """One tracklet of an identity: its id, camera and the worker's track id."""

    tracklet_id: str
    camera_id: str
    track_id: int


@dataclass(frozen=True)
class IdentityReport:
    identity_id: str
    spans: tuple[CameraSpan, ...]
    members: tuple[Member, ...]

    @property
    def tracklet_ids(self) -> tuple[str, ...]:
        return tuple(member.tracklet_id for member in self.members)

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(span.camera_id for span in self.spans)

    @property
    def start(self) -> float:
        return min(span.start for span in self.spans)


def cross_camera_identities(client: QueryClient, limit: int = PAGE) -> list[IdentityReport]:
    """Every identity (up to ``limit``) with its spans per camera, those seen on most cameras first."""
    reports = []
    for row in client.get("/identities", {"limit": limit}):
        identity = client.get(f"/identities/{row['identity_id']}")
        if identity["identity_id"] != row["identity_id"]:
            continue  # merged into another identity since the list was read: that one is listed too
        reports.append(_report(identity))
    return sorted(reports, key=lambda r: (-len(r.spans), r.start))


def _report(identity: dict[str, Any]) -> IdentityReport:
    per_camera: dict[str, list[dict[str, Any]]] = {}
    for tracklet in identity["tracklets"]:
        per_camera.setdefault(tracklet["camera_id"], []).append(tracklet)
    spans = tuple(CameraSpan(camera, min(t["start_time"] for t in rows), max(t["end_time"] for t in rows), len(rows))
                  for camera, rows in sorted(per_camera.items()))
    members = tuple(Member(t["tracklet_id"], t["camera_id"], int(t["track_id"])) for t in identity["tracklets"])
    return IdentityReport(identity["identity_id"], spans, members)


def link_latencies(client: QueryClient, tracklet_ids: Sequence[str]) -> list[float]:
    """Decision time minus the tracklet's last frame time, in seconds, for each decided tracklet on the wall
    clock (a tracklet on media time has none)."""
    latencies = []
    for tracklet_id in tracklet_ids:
        tracklet = client.get(f"/tracklets/{tracklet_id}")
        decision = tracklet.get("decision") or {}
        if decision.get("decided_at") and not is_media_time(float(tracklet["end_time"])):
            latencies.append(float(decision["decided_at"]) - float(tracklet["end_time"]))
    return latencies
