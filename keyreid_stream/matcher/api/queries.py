"""Read-only queries over the matcher's Redis state and vector index: what the HTTP API and the CLI answer.

Every answer is a frozen dataclass of :mod:`keyreid_stream.matcher.api.answers`, which the HTTP API uses as its
response schemas. Problems
with a query raise :class:`BadQuery` (bad id, parameter or descriptor), :class:`NotFound` (no such identity,
tracklet or thumbnail) or :class:`Unavailable` (a feature this matcher was started without, e.g. image search).
Redis errors (connection refused, timeouts) are raised unchanged; the API answers them with 503.

Identities merged by re-clustering keep a ``merged_into`` pointer: :meth:`MatcherQueries.identity` follows it and
says which identity was asked for and which is answered.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import redis

from keyreid_stream.contracts import CAMERA_ID_PATTERN, MESSAGE_ID_PATTERN, shown
from keyreid_stream.matcher.api.answers import (
    BadQuery,
    CameraTimeline,
    CameraView,
    Candidate,
    DecisionView,
    Health,
    HeartbeatView,
    IdentityCount,
    IdentitySummary,
    IdentityView,
    LinkInfo,
    LinkView,
    LogEntry,
    NotFound,
    Rejection,
    SearchHit,
    Stats,
    Thresholds,
    TrackletSummary,
    TrackletView,
    Unavailable,
    Visit,
)
from keyreid_stream.matcher.api.images import ImageError, decode_image
from keyreid_stream.matcher.api.summaries import count_identities, recent_identities
from keyreid_stream.matcher.index import GalleryIndex
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.records import IDENTITY_ID_PATTERN, normalize
from keyreid_stream.matcher.state.schema import VIEW_FIELDS, Field, decode_descriptor, decode_row, text, texts

__all__ = ["IDENTITY_ID_PATTERN", "MAX_OFFSET", "SPACE_PATTERN", "MatcherQueries", "merge_visits"]

logger = logging.getLogger(__name__)

MAX_MERGE_HOPS = 32
MAX_OFFSET = 1_000_000  # GET /identities?offset=: deeper pages are reached with a time range
MAX_IMAGE_PIXELS = 4096 * 4096
LOG_ENTRIES = 50
HEALTH_FLAGS = ("healthy", "redis_connected", "index_ready", "ingest_running")
SPACE_PATTERN = r"[^\x00-\x1f]{1,200}"
_TRACKLET_RE = re.compile(MESSAGE_ID_PATTERN)  # a tracklet's id is the id of the message that brought it
_IDENTITY_RE = re.compile(IDENTITY_ID_PATTERN)
_CAMERA_RE = re.compile(CAMERA_ID_PATTERN)
_SPACE_RE = re.compile(SPACE_PATTERN)


# ------------------------------------------------------------------------------------------ helpers


def _float(value: bytes | str | None) -> float | None:
    return None if value is None else float(value)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BadQuery(message)


def _check_person_crop(height: int, width: int) -> None:
    """A standing person's box is taller than wide (the model sees 2:1 crops): an image wider than tall is a whole
    frame or a scene, where the nearest identities would mean nothing."""
    _check(height >= width, f"the image is {width}x{height} pixels, wider than tall: a whole frame or a scene, not "
                            "a person crop; send one person cut out along their box (taller than wide, like the "
                            "thumbnails)")


def _check_id(pattern: re.Pattern[str], value: object, what: str) -> str:
    _check(isinstance(value, str) and pattern.fullmatch(value) is not None, f"bad {what} id {shown(value, 40)}")
    return value  # type: ignore[return-value]


def _check_time(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
           f"{name} must be a finite number of unix seconds, got {shown(value, 40)}")
    return float(value)


def _check_range(start: float | None, end: float | None, names: tuple[str, str]) -> tuple[str, str]:
    """The range as ZRANGEBYSCORE bounds ("-inf"/"+inf" when open)."""
    start, end = _check_time(start, names[0]), _check_time(end, names[1])
    if start is not None and end is not None:
        _check(start <= end, f"{names[0]} ({start}) is after {names[1]} ({end})")
    return ("-inf" if start is None else repr(start)), ("+inf" if end is None else repr(end))


def _space_dim(space: str) -> int | None:
    """The dimension a space name ends with (``name@version/dim``)."""
    _, _, dim = space.rpartition("/")
    return int(dim) if dim.isdigit() else None


def _rescored(neighbours: Sequence[tuple[str, float]], replies: Sequence[Sequence[bytes | None]],
              query: np.ndarray) -> tuple[list[tuple[str, float]], list[Sequence[bytes | None]]]:
    """Neighbours re-scored with the cosine of their full stored descriptors, best first."""
    scored = []
    for (tracklet_id, score), reply in zip(neighbours, replies):
        raw = reply[2]
        if raw is not None and len(raw) == 4 * query.size:
            score = float(decode_descriptor(raw) @ query)
        scored.append(((tracklet_id, score), reply))
    scored.sort(key=lambda pair: -pair[0][1])
    return [pair[0] for pair in scored], [pair[1] for pair in scored]


def merge_visits(spans: Sequence[tuple[str, float, float]]) -> list[Visit]:
    """Per camera, overlapping (closed) spans become one visit; visits of all cameras ordered by start time."""
    visits: list[Visit] = []
    latest: dict[str, int] = {}  # camera -> position of its latest visit in ``visits``
    for camera, start, end in sorted(spans, key=lambda span: (span[1], span[2])):
        position = latest.get(camera)
        if position is not None and start <= visits[position].end_time:
            visit = visits[position]
            visits[position] = Visit(camera, visit.start_time, max(visit.end_time, end), visit.tracklets + 1)
        else:
            latest[camera] = len(visits)
            visits.append(Visit(camera, start, end, 1))
    return visits


def _timeline(visits: Sequence[Visit]) -> list[CameraTimeline]:
    cameras = sorted({visit.camera_id for visit in visits})
    return [CameraTimeline(camera, [v for v in visits if v.camera_id == camera]) for camera in cameras]


def _log_entry(raw: bytes) -> LogEntry | None:
    try:
        entry = json.loads(raw)
        return LogEntry(t=float(entry["t"]), kind=str(entry["kind"]), score=entry.get("score"),
                        tracklet=entry.get("tracklet"), camera=entry.get("camera"), matched=entry.get("matched"),
                        source=entry.get("source"), target=entry.get("target"), tracklets=entry.get("tracklets"))
    except (ValueError, KeyError, TypeError):
        logger.warning("skipping an unreadable identity log entry: %.80r", raw)
        return None


def _decision(raw: bytes | str | None) -> DecisionView | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return DecisionView(
            kind=str(data["kind"]), score=float(data["score"]), matched_tracklet=data.get("matched"),
            candidates=[Candidate(str(g), float(s), str(t)) for g, s, t in data.get("candidates", [])],
            rejected=[Rejection(str(g), str(r)) for g, r in data.get("rejected", [])],
            decided_at=_float(data.get("decided_at")))
    except (ValueError, KeyError, TypeError):
        logger.warning("unreadable decision record: %.80r", raw)
        return None


# ------------------------------------------------------------------------------------------ queries


class MatcherQueries:
    """The read side of the matcher: every method reads Redis (and the index) and returns an answer dataclass.

    ``embed_crop(image_bgr) -> (space, descriptor)`` enables image search; ``status()`` reports the service's own
    state (shown by :meth:`health` and :meth:`stats`); ``max_results`` caps every list; a search asks the index
    for ``k * oversample`` tracklets before grouping them by identity; ``thresholds`` (the association's, shown by
    :meth:`stats`) let clients judge search scores.
    """

    def __init__(self, client: redis.Redis, keys: Keys, index: GalleryIndex, *,
                 embed_crop: Callable[[np.ndarray], tuple[str, np.ndarray]] | None = None,
                 status: Callable[[], Mapping[str, object]] | None = None, max_results: int = 1000,
                 oversample: int = 8, thresholds: Thresholds | None = None) -> None:
        if max_results < 1 or oversample < 1:
            raise ValueError("max_results and oversample must be >= 1")
        self.client, self.keys, self.index = client, keys, index
        self.embed_crop, self._status = embed_crop, status
        self.max_results, self.oversample = max_results, oversample
        self.thresholds = thresholds

    # ----------------------------------------------------------------------------- service

    def _service(self, problems: list[str]) -> dict[str, Any]:
        if self._status is None:
            return {}
        try:
            service = dict(self._status())
        except Exception as exc:
            logger.warning("service status failed", exc_info=True)
            problems.append(f"service status failed: {type(exc).__name__}")
            return {}
        if isinstance(service.get("starting"), str):  # why the service is not working yet
            problems.append(str(service["starting"]))
        problems.extend(f"{flag} is false" for flag in HEALTH_FLAGS if service.get(flag) is False)
        return service

    def health(self) -> Health:
        """Redis answers PING, and the service reports none of :data:`HEALTH_FLAGS` false."""
        problems: list[str] = []
        try:
            reachable = bool(self.client.ping())
        except redis.RedisError as exc:
            reachable = False
            problems.append(f"redis unreachable: {type(exc).__name__}")
        service = self._service(problems)
        return Health("ok" if not problems else "degraded", reachable, problems, service)

    def stats(self) -> Stats:
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.stats)
        pipe.zcard(keys.by_ingest)
        pipe.zcard(keys.identities)
        pipe.xrevrange(keys.stream, count=1)
        pipe.xrange(keys.stream, count=1)
        pipe.get(keys.cursor)
        pipe.get(keys.lease)
        counters, tracklets, identities, last, first, cursor, lease = pipe.execute()
        counts = {text(name): int(value) for name, value in counters.items()}
        last_id = text(last[0][0]) if last else None
        cursor_id = text(cursor)
        lag = None
        if last_id is not None:
            decided = cursor_id if cursor_id is not None else text(first[0][0])
            lag = max(0, int(last_id.split("-")[0]) - int(decided.split("-")[0])) / 1000.0
        return Stats(
            received=counts.get("received", 0), stored=counts.get("stored", 0),
            duplicates=counts.get("duplicates", 0),
            rejected={name.partition(":")[2]: value for name, value in counts.items() if name.startswith("rejected:")},
            tracklets=int(tracklets), identities=int(identities), spaces=dict(self.index.spaces()),
            stream_last_id=last_id, assoc_cursor=cursor_id, association_lag_s=lag, lease_owner=text(lease),
            service=self._service([]), thresholds=self.thresholds)

    def cameras(self) -> list[CameraView]:
        heartbeats: dict[bytes, bytes] = cast(Any, self.client.hgetall(self.keys.cameras))
        cameras = sorted(text(camera) for camera in heartbeats)[: self.max_results]
        pipe = self.client.pipeline(transaction=False)
        for camera in cameras:
            pipe.zcard(self.keys.camera_tracklets(camera))
        counts = pipe.execute() if cameras else []
        return [CameraView(camera, int(count), self._heartbeat(heartbeats[camera.encode()]))
                for camera, count in zip(cameras, counts)]

    @staticmethod
    def _heartbeat(raw: bytes) -> HeartbeatView | None:
        try:
            data = json.loads(raw)
            if not data:
                return None
            return HeartbeatView(float(data["timestamp"]), int(data["sequence"]), float(data["received_at"]),
                                 {str(k): int(v) for k, v in data.get("counters", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("unreadable camera heartbeat record: %.80r", raw)
            return None

    # ----------------------------------------------------------------------------- identities

    def _resolve(self, gid: str) -> tuple[str, list[str], dict[str, str]]:
        """Follow ``merged_into``: (live id, the ids passed through, its hash)."""
        passed: list[str] = []
        current = gid
        for _ in range(MAX_MERGE_HOPS + 1):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.identity(current))
            pipe.exists(self.keys.members(current))
            raw, has_members = pipe.execute()
            record = {text(k): text(v) for k, v in raw.items()}
            if not record and not has_members:
                raise NotFound(f"identity {gid} not found" if current == gid
                               else f"identity {gid} was merged into {current}, which no longer exists")
            target = record.get("merged_into")
            if not target or target == current:
                return current, passed, record
            passed.append(current)
            current = target
        raise NotFound(f"identity {gid}: its merge chain does not end within {MAX_MERGE_HOPS} hops")

    def identity(self, gid: str) -> IdentityView:
        _check_id(_IDENTITY_RE, gid, "identity")
        live, passed, record = self._resolve(gid)
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(keys.members(live))
        pipe.zrevrange(keys.members(live), 0, self.max_results - 1)
        pipe.lrange(keys.identity_log(live), -LOG_ENTRIES, -1)
        count, member_ids, log = pipe.execute()
        rows = self._rows([text(t) for t in reversed(member_ids)])
        tracklets = sorted((self._summary(tid, row) for tid, row in rows.items()), key=lambda t: t.start_time)
        visits = merge_visits([(t.camera_id, t.start_time, t.end_time) for t in tracklets])
        return IdentityView(
            requested_id=gid, identity_id=live, merged_from=passed, created_at=_float(record.get("created_at")),
            split_from=record.get("split_from"),
            first_seen=min((t.start_time for t in tracklets), default=None),
            last_seen=max((t.end_time for t in tracklets), default=None),
            cameras=sorted({t.camera_id for t in tracklets}), num_tracklets=int(count),
            truncated=int(count) > len(member_ids), tracklets=tracklets, timeline=_timeline(visits), visits=visits,
            log=[e for e in (_log_entry(raw) for raw in reversed(log)) if e is not None])

    def identities(self, *, camera: str | None = None, since: float | None = None, until: float | None = None,
                   limit: int | None = None, min_cameras: int = 1, offset: int = 0) -> list[IdentitySummary]:
        """Identities with a tracklet ending in [since, until] (on ``camera`` when given), seen on at least
        ``min_cameras`` cameras, most recent first, after the first ``offset`` of them (pages), each with its
        cameras and a thumbnail per camera (see :mod:`~keyreid_stream.matcher.api.summaries` for the cost); ``limit``
        defaults to 100 (at most ``max_results``)."""
        limit = self._limit(min(100, self.max_results) if limit is None else limit)
        _check(isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset <= MAX_OFFSET,
               f"offset must be an integer in [0, {MAX_OFFSET}], got {offset!r}")
        camera, low, high = self._identity_filter(camera, since, until, min_cameras)
        return recent_identities(self.client, self.keys, camera=camera, low=low, high=high, limit=limit,
                                 offset=offset, min_cameras=min_cameras, budget=self.max_results * 100)

    def count_identities(self, *, camera: str | None = None, since: float | None = None,
                         until: float | None = None, min_cameras: int = 1) -> IdentityCount:
        """How many identities :meth:`identities` lists with these filters over all its pages (``exact`` false
        when counting read ``100 x max_results`` candidates first, ``10 x max_results`` with ``min_cameras``
        above 1, where each candidate is summarised)."""
        camera, low, high = self._identity_filter(camera, since, until, min_cameras)
        return count_identities(self.client, self.keys, camera=camera, low=low, high=high, min_cameras=min_cameras,
                                budget=self.max_results * (100 if min_cameras <= 1 else 10))

    @staticmethod
    def _identity_filter(camera: str | None, since: float | None, until: float | None,
                         min_cameras: int) -> tuple[str | None, str, str]:
        _check(isinstance(min_cameras, int) and not isinstance(min_cameras, bool) and min_cameras >= 1,
               f"min_cameras must be an integer >= 1, got {shown(min_cameras, 40)}")
        low, high = _check_range(since, until, ("since", "until"))
        if camera is not None:
            _check_id(_CAMERA_RE, camera, "camera")
        return camera, low, high

    # ----------------------------------------------------------------------------- tracklets

    def _rows(self, ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """The stored fields of the tracklets among ``ids`` (missing ones left out), keyed by id, in order."""
        pipe = self.client.pipeline(transaction=False)
        for tracklet_id in ids:
            pipe.hmget(self.keys.tracklet(tracklet_id), VIEW_FIELDS)
        rows: dict[str, dict[str, str | None]] = {}
        for tracklet_id, values in zip(ids, pipe.execute() if ids else []):
            row = decode_row(VIEW_FIELDS, values)
            if row is not None:
                rows[tracklet_id] = row
        return rows

    @staticmethod
    def _summary(tracklet_id: str, row: Mapping[str, str | None]) -> TrackletSummary:
        decision = _decision(row[Field.DECISION])
        return TrackletSummary(
            tracklet_id=tracklet_id, camera_id=str(row[Field.CAMERA]), track_id=int(row[Field.TRACK] or 0),
            start_time=float(row[Field.START] or 0), end_time=float(row[Field.END] or 0), num_frames=int(row[Field.FRAMES] or 0),
            has_thumbnail=row[Field.THUMB] == "1", decision_kind=decision.kind if decision else None,
            decision_score=decision.score if decision else None,
            matched_tracklet=decision.matched_tracklet if decision else None)

    def tracklet(self, tracklet_id: str) -> TrackletView:
        _check_id(_TRACKLET_RE, tracklet_id, "tracklet")
        row = self._rows([tracklet_id]).get(tracklet_id)
        if row is None:
            raise NotFound(f"tracklet {tracklet_id} not found")
        link = None
        link_to = row[Field.LINK_TO]
        if link_to:
            linked_camera = text(self.client.hget(self.keys.tracklet(link_to), Field.CAMERA))
            link = LinkInfo(link_to, linked_camera, float(row[Field.LINK_SCORE] or 0), str(row[Field.LINK_KIND]))
        summary = self._summary(tracklet_id, row)
        return TrackletView(
            tracklet_id=tracklet_id, camera_id=summary.camera_id, track_id=summary.track_id,
            start_time=summary.start_time, end_time=summary.end_time, num_frames=summary.num_frames,
            model_name=str(row[Field.MODEL]), model_version=str(row[Field.VERSION]), space=str(row[Field.SPACE]),
            dim=int(row[Field.DIM] or 0), ingested_at=float(row[Field.INGESTED] or 0), has_thumbnail=summary.has_thumbnail,
            identity=row[Field.IDENTITY] or None, decision=_decision(row[Field.DECISION]), link=link)

    def thumbnail(self, tracklet_id: str) -> bytes:
        """The tracklet's JPEG thumbnail."""
        _check_id(_TRACKLET_RE, tracklet_id, "tracklet")
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.keys.tracklet(tracklet_id))
        pipe.get(self.keys.thumbnail(tracklet_id))
        exists, jpeg = pipe.execute()
        if not exists:
            raise NotFound(f"tracklet {tracklet_id} not found")
        if jpeg is None:
            raise NotFound(f"tracklet {tracklet_id} has no thumbnail")
        return bytes(jpeg)

    def links(self, camera: str, start: float | None = None, end: float | None = None,
              limit: int | None = None) -> list[LinkView]:
        """Links of the tracklets ending in [start, end] linked to or from ``camera``, oldest first; ``limit``
        defaults to 1000 (at most ``max_results``)."""
        _check_id(_CAMERA_RE, camera, "camera")
        limit = self._limit(min(1000, self.max_results) if limit is None else limit)
        low, high = _check_range(start, end, ("start", "end"))
        ids = texts(self.client.zrangebyscore(self.keys.camera_links(camera), low, high, start=0, num=limit))
        rows = self._rows(ids)
        links = {tid: link_to for tid, row in rows.items() if (link_to := row[Field.LINK_TO])}
        linked = list(links.values())
        pipe = self.client.pipeline(transaction=False)
        for tracklet_id in linked:
            pipe.hget(self.keys.tracklet(tracklet_id), Field.CAMERA)
        cameras = dict(zip(linked, (text(c) for c in (pipe.execute() if linked else []))))
        return [LinkView(tracklet_id=tid, camera_id=str(row[Field.CAMERA]), end_time=float(row[Field.END] or 0),
                         identity=row[Field.IDENTITY] or None, linked_tracklet=links[tid],
                         linked_camera=cameras.get(links[tid]), score=float(row[Field.LINK_SCORE] or 0),
                         kind=str(row[Field.LINK_KIND]))
                for tid, row in rows.items() if tid in links]

    def _limit(self, value: int, name: str = "limit") -> int:
        _check(isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= self.max_results,
               f"{name} must be an integer in [1, {self.max_results}], got {shown(value, 40)}")
        return value

    # ----------------------------------------------------------------------------- search

    def _resolve_space(self, space: str | None, dim: int) -> str:
        spaces = self.index.spaces()
        listing = ", ".join(sorted(spaces)) or "none (the index is empty)"
        if space is None:
            matching = [s for s in spaces if _space_dim(s) == dim]
            if not matching:  # a well-formed query of something not stored: 404, as for an unknown id
                raise NotFound(f"no descriptor space of dimension {dim} is stored; known: {listing}")
            _check(len(matching) == 1, f"more than one descriptor space of dimension {dim}: give 'space', one of: "
                                       f"{listing}")
            return matching[0]
        _check(isinstance(space, str) and _SPACE_RE.fullmatch(space) is not None, f"bad space {shown(space, 40)}")
        if space not in spaces:
            raise NotFound(f"unknown descriptor space {shown(space, 40)} (nothing stored in it); known: {listing}")
        _check(_space_dim(space) in (None, dim), f"descriptor has dimension {dim}, space {space} holds "
                                                 f"{_space_dim(space)}")
        return space

    def search_descriptor(self, descriptor: Sequence[float] | np.ndarray, k: int = 5,
                          space: str | None = None) -> list[SearchHit]:
        """The ``k`` identities nearest to ``descriptor`` (cosine similarity), best first."""
        k = self._limit(k, "k")
        try:
            vector = np.asarray(descriptor, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BadQuery(f"descriptor must be a list of numbers: {exc}") from None
        _check(vector.ndim == 1 and vector.size >= 1, f"descriptor must be a non-empty 1-D list, got shape "
                                                      f"{vector.shape}")
        _check(bool(np.isfinite(vector).all()), "descriptor contains NaN or infinite values")
        _check(bool(np.any(vector)), "descriptor is all zeros")
        query = normalize((vector / np.abs(vector).max()).astype(np.float32))[None, :]  # no float32 overflow
        name = self._resolve_space(space, vector.size)
        neighbours = self.index.search(name, query, k * self.oversample)[0]
        return self._group(neighbours, k, query[0])

    def search_tracklet(self, tracklet_id: str, k: int = 5, *, exclude_self: bool = False) -> list[SearchHit]:
        """The ``k`` identities nearest to a stored tracklet's own descriptor, searched in its descriptor space,
        best first. Its own identity comes first (found through the tracklet itself, score 1) unless
        ``exclude_self`` leaves the tracklet out of the neighbours."""
        _check_id(_TRACKLET_RE, tracklet_id, "tracklet")
        k = self._limit(k, "k")
        space, raw = self.client.hmget(self.keys.tracklet(tracklet_id), (Field.SPACE, Field.DESC))
        if space is None:
            raise NotFound(f"tracklet {tracklet_id} not found")
        if not raw or len(raw) % 4:
            raise NotFound(f"tracklet {tracklet_id} has no readable descriptor")
        query = decode_descriptor(cast(bytes, raw))[None, :]
        neighbours = self.index.search(text(space), query, (k + int(exclude_self)) * self.oversample)[0]
        if exclude_self:
            neighbours = [pair for pair in neighbours if pair[0] != tracklet_id]
        return self._group(neighbours, k, query[0])

    def _group(self, neighbours: Sequence[tuple[str, float]], k: int, query: np.ndarray) -> list[SearchHit]:
        """Map tracklets to identities (dropping deleted ones from the index) and keep each identity's best.

        When the index holds truncated vectors (``index.max_dim``), the candidates are re-scored exactly with
        their full stored descriptors, so every score is the cosine of the full descriptors.
        """
        rescore = getattr(self.index, "max_dim", None) is not None
        fields = (Field.CAMERA, Field.IDENTITY, Field.DESC) if rescore else (Field.CAMERA, Field.IDENTITY)
        pipe = self.client.pipeline(transaction=False)
        for tracklet_id, _ in neighbours:
            pipe.hmget(self.keys.tracklet(tracklet_id), fields)
        replies = pipe.execute() if neighbours else []
        if rescore:
            neighbours, replies = _rescored(neighbours, replies, query)
        best: dict[str, SearchHit] = {}
        deleted = []
        for (tracklet_id, score), (camera, gid, *_) in zip(neighbours, replies):
            if camera is None:
                deleted.append(tracklet_id)
                continue
            if gid is None or not gid:
                continue  # stored, not yet associated
            gid = text(gid)
            hit = best.get(gid)
            if hit is None:
                best[gid] = SearchHit(gid, float(score), tracklet_id, text(camera), 1)
            else:  # neighbours come best first: only the count changes
                best[gid] = SearchHit(gid, hit.score, hit.best_tracklet, hit.best_camera, hit.tracklets_hit + 1)
        if deleted:
            removed = self.index.remove(deleted)
            logger.debug("search: dropped %d tracklets deleted by retention from the index", removed)
        return sorted(best.values(), key=lambda hit: -hit.score)[:k]

    def search_image(self, image: bytes, k: int = 5) -> list[SearchHit]:
        """The ``k`` identities nearest to a person crop (JPEG or PNG bytes), embedded with the re-ID model."""
        if self.embed_crop is None:
            raise Unavailable("image search is not enabled on this matcher (configure search.arch and "
                              "search.checkpoint)")
        k = self._limit(k, "k")
        _check(isinstance(image, (bytes, bytearray)), "not a JPEG or PNG image")
        try:
            decoded = decode_image(bytes(image), MAX_IMAGE_PIXELS, "person crop")
        except ImageError as exc:
            raise BadQuery(f"{exc} (send a JPEG or PNG person crop)") from None
        _check_person_crop(decoded.shape[0], decoded.shape[1])
        space, descriptor = self.embed_crop(decoded)
        return self.search_descriptor(np.asarray(descriptor, dtype=np.float32), k, space)
