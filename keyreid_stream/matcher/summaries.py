"""The list of recent identities (``GET /identities``): which identities, newest first, and a summary of each
with its cameras and one thumbnail per camera.

Cost, for a page of N identities: the listing itself (one ``ZREVRANGEBYSCORE`` on the identities' last-seen index,
or, with a camera or an ``until`` bound, pages of 500 tracklets and one pipelined ``HGET`` per tracklet), then two
pipelined round trips: three commands per identity (member count, first member, its
:data:`SUMMARY_TRACKLETS` most recent members) and one ``HMGET`` per sampled tracklet. With ``min_cameras`` above
1, identities are summarised in chunks until ``limit`` of them qualify or ``budget`` candidates were read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice

import redis

from keyreid_stream.matcher.answers import IdentitySummary
from keyreid_stream.matcher.keys import Keys

__all__ = ["SUMMARY_TRACKLETS", "recent_identities", "summarize"]

SUMMARY_TRACKLETS = 64  # the most recent tracklets of an identity read for its cameras and thumbnails
_SCAN_PAGE = 500
_FILTER_CHUNK = 100  # identities summarised at a time while a min_cameras filter drops some


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _candidates(client: redis.Redis, keys: Keys, camera: str | None, low: str, high: str,
                budget: int, page: int) -> Iterator[tuple[str, float]]:
    """Distinct identities with a tracklet ending in [low, high] (on ``camera``), newest first, with the end of
    that latest tracklet; reads at most ``budget`` entries."""
    offset = 0
    if camera is None and high == "+inf":  # the identities' own last-seen index answers directly
        while offset < budget:
            rows = client.zrevrangebyscore(keys.identities, "+inf", low, start=offset,
                                           num=min(page, budget - offset), withscores=True)
            yield from ((_text(gid), float(score)) for gid, score in rows)
            if len(rows) < min(page, budget - offset):
                return
            offset += len(rows)
        return
    zset = keys.camera_tracklets(camera) if camera is not None else keys.by_end
    seen: set[str] = set()
    while offset < budget:
        rows = client.zrevrangebyscore(zset, high, low, start=offset, num=_SCAN_PAGE, withscores=True)
        if not rows:
            return
        pipe = client.pipeline(transaction=False)
        for tracklet_id, _ in rows:
            pipe.hget(keys.tracklet(_text(tracklet_id)), "identity")
        for (_, end), gid in zip(rows, pipe.execute()):
            gid = _text(gid)
            if gid and gid not in seen:
                seen.add(gid)
                yield gid, float(end)
        offset += len(rows)


def summarize(client: redis.Redis, keys: Keys, seen: Sequence[tuple[str, float]]) -> list[IdentitySummary]:
    """Summaries of ``(identity, last seen)`` pairs, in their order: two pipelined round trips."""
    if not seen:
        return []
    pipe = client.pipeline(transaction=False)
    for gid, _ in seen:
        pipe.zcard(keys.members(gid))
        pipe.zrange(keys.members(gid), 0, 0, withscores=True)
        pipe.zrevrange(keys.members(gid), 0, SUMMARY_TRACKLETS - 1)
    replies = pipe.execute()
    counts, firsts, recent = replies[::3], replies[1::3], [[_text(t) for t in ids] for ids in replies[2::3]]
    pipe = client.pipeline(transaction=False)
    for ids in recent:
        for tracklet_id in ids:
            pipe.hmget(keys.tracklet(tracklet_id), ("camera", "thumb"))
    rows = iter(pipe.execute() if any(recent) else [])
    summaries = []
    for (gid, last), count, first, ids in zip(seen, counts, firsts, recent):
        cameras: set[str] = set()
        thumbnails: dict[str, str] = {}
        for tracklet_id, (camera, thumb) in zip(ids, islice(rows, len(ids))):  # most recent start first
            if camera is None:
                continue  # deleted by retention meanwhile
            camera = _text(camera)
            cameras.add(camera)
            if _text(thumb) == "1" and camera not in thumbnails:
                thumbnails[camera] = tracklet_id
        summaries.append(IdentitySummary(gid, last, first[0][1] if first else None, int(count), sorted(cameras),
                                         dict(sorted(thumbnails.items())), int(count) <= len(ids)))
    return summaries


def recent_identities(client: redis.Redis, keys: Keys, *, camera: str | None, low: str, high: str, limit: int,
                      min_cameras: int = 1, budget: int = 100_000) -> list[IdentitySummary]:
    """Up to ``limit`` summaries of the identities with a tracklet ending in [low, high] (ZRANGEBYSCORE bounds),
    on ``camera`` when given, seen on at least ``min_cameras`` cameras, most recent first."""
    chunk = limit if min_cameras <= 1 else max(limit, _FILTER_CHUNK)
    source = _candidates(client, keys, camera, low, high, budget, chunk)
    found: list[IdentitySummary] = []
    while len(found) < limit:
        seen = list(islice(source, chunk))
        found += [s for s in summarize(client, keys, seen) if len(s.cameras) >= min_cameras]
        if len(seen) < chunk:
            break
    return found[:limit]
