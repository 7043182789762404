"""The list of recent identities (``GET /identities``): which identities, newest first, and a summary of each
with its cameras and one thumbnail per camera; and how many a filter matches (``GET /identities/count``).

Cost, for a page of N identities: the listing itself (one ``ZREVRANGEBYSCORE`` on the identities' last-seen index,
whatever the ``offset``, or, with a camera or an ``until`` bound, pages of 500 tracklets and one pipelined
``HGET`` per tracklet, the ones before ``offset`` included), then two pipelined round trips: three commands per
identity (member count, first member, its :data:`SUMMARY_TRACKLETS` most recent members) and one ``HMGET`` per
sampled tracklet. With ``min_cameras`` above 1, identities are summarised in chunks until ``offset + limit`` of
them qualify or ``budget`` candidates were read. Counting costs one ``ZCOUNT`` without camera, ``until`` or
``min_cameras``, otherwise the same reads as listing every page (up to the budget).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from itertools import islice
from typing import Any, cast

import redis

from keyreid_stream.matcher.api.answers import IdentityCount, IdentitySummary
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.schema import Field, text

__all__ = ["SUMMARY_TRACKLETS", "count_identities", "recent_identities", "summarize"]

SUMMARY_TRACKLETS = 64  # the most recent tracklets of an identity read for its cameras and thumbnails
_SCAN_PAGE = 500
_FILTER_CHUNK = 100  # identities summarised at a time while a min_cameras filter drops some


def _candidates(client: redis.Redis, keys: Keys, camera: str | None, low: str, high: str, budget: int, page: int,
                skip: int = 0) -> Generator[tuple[str, float], None, bool]:
    """Distinct identities with a tracklet ending in [low, high] (on ``camera``), newest first, with the end of
    that latest tracklet, after the first ``skip`` of them; reads at most ``budget`` entries besides the ones the
    identities' index skips. Returns whether it reached the end (False: the budget ran out first)."""
    read = 0
    if camera is None and high == "+inf":  # the identities' own last-seen index answers directly
        while read < budget:
            rows: Any = client.zrevrangebyscore(keys.identities, "+inf", low, start=skip + read,
                                           num=min(page, budget - read), withscores=True)
            yield from ((str(text(gid)), float(score)) for gid, score in rows)
            if len(rows) < min(page, budget - read):
                return True
            read += len(rows)
        return False
    zset = keys.camera_tracklets(camera) if camera is not None else keys.by_end
    seen: set[str] = set()
    while read < budget:
        wanted = min(_SCAN_PAGE, budget - read)
        rows = cast(Any, client.zrevrangebyscore(zset, high, low, start=read, num=wanted, withscores=True))
        pipe = client.pipeline(transaction=False)
        for tracklet_id, _ in rows:
            pipe.hget(keys.tracklet(text(tracklet_id)), Field.IDENTITY)
        for (_, end), gid in zip(rows, pipe.execute() if rows else []):
            gid = text(gid)
            if gid and gid not in seen:
                seen.add(gid)
                if len(seen) > skip:
                    yield gid, float(end)
        read += len(rows)
        if len(rows) < wanted:
            return True
    return False


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
    counts, firsts, recent = replies[::3], replies[1::3], [[text(t) for t in ids] for ids in replies[2::3]]
    pipe = client.pipeline(transaction=False)
    for ids in recent:
        for tracklet_id in ids:
            pipe.hmget(keys.tracklet(tracklet_id), (Field.CAMERA, Field.THUMB))
    rows = iter(pipe.execute() if any(recent) else [])
    summaries = []
    for (gid, last), count, first, ids in zip(seen, counts, firsts, recent):
        cameras: set[str] = set()
        thumbnails: dict[str, str] = {}
        for tracklet_id, (camera, thumb) in zip(ids, islice(rows, len(ids))):  # most recent start first
            if camera is None:
                continue  # deleted by retention meanwhile
            camera = text(camera)
            cameras.add(camera)
            if text(thumb) == "1" and camera not in thumbnails:
                thumbnails[camera] = tracklet_id
        summaries.append(IdentitySummary(gid, last, first[0][1] if first else None, int(count), sorted(cameras),
                                         dict(sorted(thumbnails.items())), int(count) <= len(ids)))
    return summaries


def _qualifying(client: redis.Redis, keys: Keys, source: Generator[tuple[str, float], None, bool], min_cameras: int,
                wanted: int) -> Generator[IdentitySummary, None, bool]:
    """Summaries of the candidates seen on ``min_cameras`` cameras or more, summarised in chunks; returns
    whether the candidates ran out before ``wanted`` of them qualified (what ``source`` says then)."""
    found = 0
    while found < wanted:
        chunk: list[tuple[str, float]] = []
        try:
            while len(chunk) < _FILTER_CHUNK:
                chunk.append(next(source))
        except StopIteration as end:
            for summary in summarize(client, keys, chunk):
                if len(summary.cameras) >= min_cameras:
                    yield summary
            return bool(end.value)
        for summary in summarize(client, keys, chunk):
            if len(summary.cameras) >= min_cameras:
                found += 1
                yield summary
    return False


def recent_identities(client: redis.Redis, keys: Keys, *, camera: str | None, low: str, high: str, limit: int,
                      offset: int = 0, min_cameras: int = 1, budget: int = 100_000) -> list[IdentitySummary]:
    """Up to ``limit`` summaries of the identities with a tracklet ending in [low, high] (ZRANGEBYSCORE bounds),
    on ``camera`` when given, seen on at least ``min_cameras`` cameras, most recent first, after the first
    ``offset`` of them."""
    if min_cameras <= 1:  # every candidate qualifies: skip without summarising
        return summarize(client, keys, list(islice(_candidates(client, keys, camera, low, high, budget, limit,
                                                               skip=offset), limit)))
    source = _candidates(client, keys, camera, low, high, budget, _FILTER_CHUNK)
    found = _qualifying(client, keys, source, min_cameras, offset + limit)
    return list(islice(found, offset, offset + limit))


def count_identities(client: redis.Redis, keys: Keys, *, camera: str | None, low: str, high: str,
                     min_cameras: int = 1, budget: int = 100_000) -> IdentityCount:
    """How many identities :func:`recent_identities` lists over all its pages (``exact`` false when the budget
    ran out first: ``total`` is then a lower bound)."""
    if camera is None and high == "+inf" and min_cameras <= 1:
        return IdentityCount(int(client.zcount(keys.identities, low, "+inf")), True)
    source = _candidates(client, keys, camera, low, high, budget, _SCAN_PAGE)
    items = source if min_cameras <= 1 else _qualifying(client, keys, source, min_cameras, budget)
    total = 0
    while True:
        try:
            next(items)
        except StopIteration as end:
            return IdentityCount(total, bool(end.value))
        total += 1
