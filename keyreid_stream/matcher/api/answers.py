"""The answers of the matcher's queries, one frozen dataclass per shape, and the query errors.

The HTTP API uses these dataclasses as its response schemas (FastAPI reads standard dataclasses), and the query
CLI prints them; :mod:`keyreid_stream.matcher.api.queries` produces them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BadQuery", "CameraTimeline", "CameraView", "Candidate", "DecisionView", "Health", "HeartbeatView",
    "IdentityCount", "IdentitySummary", "IdentityView", "LinkInfo", "LinkView", "LogEntry", "NotFound", "Rejection",
    "SearchHit", "Stats", "Thresholds", "TrackletSummary", "TrackletView", "Unavailable", "Visit",
]


class NotFound(LookupError):
    """No such identity, tracklet or thumbnail."""


class BadQuery(ValueError):
    """A malformed id, parameter or descriptor."""


class Unavailable(RuntimeError):
    """A feature this matcher runs without (image search needs the re-ID model)."""


# ------------------------------------------------------------------------------------------ answers


@dataclass(frozen=True)
class Health:
    """``status`` "ok", or "degraded" when Redis does not answer or the service reports a problem."""

    status: str
    redis: bool
    problems: list[str]
    service: dict[str, Any]


@dataclass(frozen=True)
class Thresholds:
    """The association's cosine-similarity thresholds, comparable with search scores: a tracklet joins an
    identity it scores ``link`` or more with, identities scoring ``merge`` are merged, a track below ``split`` is
    split off."""

    link: float
    merge: float
    split: float


@dataclass(frozen=True)
class Stats:
    """Shared counters (all matchers), sizes, association lag (seconds between the newest stored tracklet and the
    last one association decided; None when nothing is stored), the association lease owner's token and the
    association thresholds of this matcher's configuration (None when it was not given them)."""

    received: int
    stored: int
    duplicates: int
    rejected: dict[str, int]
    tracklets: int
    identities: int
    spaces: dict[str, int]
    stream_last_id: str | None
    assoc_cursor: str | None
    association_lag_s: float | None
    lease_owner: str | None
    service: dict[str, Any]
    thresholds: Thresholds | None = None


@dataclass(frozen=True)
class HeartbeatView:
    timestamp: float
    sequence: int
    received_at: float
    counters: dict[str, int]


@dataclass(frozen=True)
class CameraView:
    """A camera that sent tracklets or heartbeats; ``last_heartbeat`` is None before its first heartbeat."""

    camera_id: str
    tracklets: int
    last_heartbeat: HeartbeatView | None


@dataclass(frozen=True)
class TrackletSummary:
    """One tracklet of an identity and how it joined (``decision_kind`` None while not yet decided)."""

    tracklet_id: str
    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    num_frames: int
    has_thumbnail: bool
    decision_kind: str | None
    decision_score: float | None
    matched_tracklet: str | None


@dataclass(frozen=True)
class Visit:
    """Time on one camera: tracklets whose spans overlap are one visit."""

    camera_id: str
    start_time: float
    end_time: float
    tracklets: int


@dataclass(frozen=True)
class CameraTimeline:
    camera_id: str
    visits: list[Visit]


@dataclass(frozen=True)
class LogEntry:
    """One line of an identity's decision log: a decision (``tracklet``, ``camera``, ``matched``) or a correction
    by re-clustering (``kind`` "merge"/"split" with ``source``, ``target`` and the moved ``tracklets``)."""

    t: float
    kind: str
    score: float | None = None
    tracklet: str | None = None
    camera: str | None = None
    matched: str | None = None
    source: str | None = None
    target: str | None = None
    tracklets: list[str] | None = None


@dataclass(frozen=True)
class IdentityView:
    """``requested_id`` is the id asked for; ``identity_id`` the live identity it was merged into (the same id when
    not merged). ``tracklets`` (by start time) holds at most ``max_results`` of the ``num_tracklets``, the most
    recent ones (``truncated``); the timeline is built from them. ``log``: the recent decisions, newest first."""

    requested_id: str
    identity_id: str
    merged_from: list[str]
    created_at: float | None
    split_from: str | None
    first_seen: float | None
    last_seen: float | None
    cameras: list[str]
    num_tracklets: int
    truncated: bool
    tracklets: list[TrackletSummary]
    timeline: list[CameraTimeline]
    visits: list[Visit]
    log: list[LogEntry]


@dataclass(frozen=True)
class IdentitySummary:
    """``last_seen``: the end of its latest tracklet (within the query's range when it had one).

    ``cameras`` and ``thumbnails`` (camera -> the id of its latest tracklet there with a thumbnail, fetched with
    ``GET /tracklets/{id}/thumbnail``) are read from the identity's most recent tracklets only (at most
    :data:`~keyreid_stream.matcher.api.summaries.SUMMARY_TRACKLETS`, ``cameras_complete`` false when it has more), so
    that a list of identities costs a bounded number of Redis commands."""

    identity_id: str
    last_seen: float
    first_seen: float | None
    num_tracklets: int
    cameras: list[str] = field(default_factory=list)
    thumbnails: dict[str, str] = field(default_factory=dict)
    cameras_complete: bool = True


@dataclass(frozen=True)
class IdentityCount:
    """How many identities a ``GET /identities`` filter matches (every page together). ``exact`` is false when
    counting stopped at its budget: ``total`` is then a lower bound (narrow the time range to count exactly)."""

    total: int
    exact: bool


@dataclass(frozen=True)
class Candidate:
    identity: str
    score: float
    tracklet_id: str


@dataclass(frozen=True)
class Rejection:
    identity: str
    reason: str


@dataclass(frozen=True)
class DecisionView:
    """Why the tracklet got its identity: see :class:`~keyreid_stream.matcher.state.records.Decision`."""

    kind: str
    score: float
    matched_tracklet: str | None
    candidates: list[Candidate]
    rejected: list[Rejection]
    decided_at: float | None


@dataclass(frozen=True)
class LinkInfo:
    tracklet_id: str
    camera_id: str | None
    score: float
    kind: str


@dataclass(frozen=True)
class TrackletView:
    tracklet_id: str
    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    num_frames: int
    model_name: str
    model_version: str
    space: str
    dim: int
    ingested_at: float
    has_thumbnail: bool
    identity: str | None
    decision: DecisionView | None
    link: LinkInfo | None


@dataclass(frozen=True)
class LinkView:
    """An appearance link: ``tracklet_id`` (on ``camera_id``) joined ``identity`` through ``linked_tracklet``."""

    tracklet_id: str
    camera_id: str
    end_time: float
    identity: str | None
    linked_tracklet: str
    linked_camera: str | None
    score: float
    kind: str


@dataclass(frozen=True)
class SearchHit:
    """An identity found by a search: its best cosine similarity, that tracklet, and how many of its tracklets
    were among the nearest neighbours."""

    identity_id: str
    score: float
    best_tracklet: str
    best_camera: str
    tracklets_hit: int
