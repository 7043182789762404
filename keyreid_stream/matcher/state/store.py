"""The matcher's state in Redis: idempotent ingest, association commits fenced by the lease, retention.

Every key comes from :class:`~keyreid_stream.matcher.state.keys.Keys`; the data model is in ``docs/matcher.md``.

* :meth:`TrackletStore.ingest` stores a batch of tracklet messages, in order, with one atomic Lua script: a message
  whose id is already stored (by an earlier batch or earlier in this one) is a duplicate when its content is the
  same (counted, not stored again) and an ``id_conflict`` when it differs (rejected; the first copy stays), a
  descriptor whose size differs from its model's is rejected, anything else is written (hash, time indices,
  stream entry) before it is acknowledged.
* :meth:`TrackletStore.commit_decisions` / :meth:`commit_changes` write association results in one MULTI/EXEC
  transaction that WATCHes the association lease: a matcher that lost its lease cannot write (fencing).
* :meth:`TrackletStore.expire` deletes tracklets older than the retention age, and identities left empty.
* The store epoch (``meta.epoch``, in every identity id) names one life of the data: :meth:`check_layout` makes
  one for a new database, :meth:`lost_data` notices a Redis that lost its data (the marker gone, the identity
  counter or the stream behind what this process saw) and :meth:`recover` makes a new epoch, so that an identity id
  is never given twice even when the counter starts over.

Redis errors (connection refused, timeouts, a server restarting) are raised to the caller unchanged; the matcher
service retries with backoff and acknowledges nothing it has not stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.typing import EncodableT

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.matcher.state import schema
from keyreid_stream.matcher.state.keys import LAYOUT_VERSION, Keys
from keyreid_stream.matcher.state.records import Change, Decision, StoredTracklet, identity_id, next_epoch
from keyreid_stream.matcher.state.schema import Field, IngestStatus, text, texts

__all__ = ["LeaseLost", "StoreError", "StoreReset", "TrackletStore", "load_tracklets"]

logger = logging.getLogger(__name__)

LOG_LENGTH = 200
IDENTITY_BLOCK = 64

# One call stores a batch: message i's keys are KEYS[k+1 ..], its values ARGV[a+1 ..] (k, a: i times the number of
# each), named by schema.INGEST_KEYS / INGEST_ARGS (the ``local`` lines are generated from them). Returns one
# IngestStatus per message. Messages are taken in order, so the first copy of an id wins, within a batch as across
# batches: a later copy with the same content (schema.CONTENT_FIELDS) is a duplicate, one with other content an
# id_conflict (rejected, the stored copy unchanged).
_CONTENT = ", ".join(f"'{name}'" for name in schema.CONTENT_FIELDS)
_SAME = " and ".join(f"old[{n}] == arg_{name}" for n, name in enumerate(schema.CONTENT_FIELDS, 1))
_INGEST_SCRIPT = f"""
local statuses = {{}}
for i = 0, #KEYS / {len(schema.INGEST_KEYS)} - 1 do
  local k, a = i * {len(schema.INGEST_KEYS)}, i * {len(schema.INGEST_ARGS)}
  {schema.ingest_locals().replace(chr(10), chr(10) + "  ")}
  local status = '{IngestStatus.STORED}'
  local dim = redis.call('GET', key_model_dim)
  local old = redis.call('HMGET', key_tracklet, {_CONTENT})
  if old[1] then
    if {_SAME} then
      redis.call('HINCRBY', key_stats, 'duplicates', 1)
      status = '{IngestStatus.DUPLICATE}'
    else
      redis.call('HINCRBY', key_stats, 'rejected:{IngestStatus.ID_CONFLICT}', 1)
      status = '{IngestStatus.ID_CONFLICT}'
    end
  elseif dim and dim ~= arg_dim then
    redis.call('HINCRBY', key_stats, 'rejected:{IngestStatus.WRONG_DIM}', 1)
    status = '{IngestStatus.WRONG_DIM}'
  else
    if not dim then redis.call('SET', key_model_dim, arg_dim) end
    local thumb = '0'
    if arg_thumbnail ~= '' then
      redis.call('SET', key_thumbnail, arg_thumbnail)
      thumb = '1'
    end
    redis.call('HSET', key_tracklet, {", ".join(f"'{name}', arg_{name}" for name in schema.INGEST_ARGS[1:-1])},
      '{Field.THUMB}', thumb)
    redis.call('ZADD', key_by_end, arg_end, arg_id)
    redis.call('ZADD', key_by_ingest, arg_ingested, arg_id)
    redis.call('ZADD', key_camera_tracklets, arg_end, arg_id)
    redis.call('HSETNX', key_cameras, arg_camera, '{{}}')
    redis.call('XADD', key_stream, '*', '{schema.STREAM_ID}', arg_id)
    redis.call('HINCRBY', key_stats, '{IngestStatus.STORED}', 1)
  end
  statuses[i + 1] = status
end
return statuses
"""


# KEYS[1] meta; ARGV: layout version, the epoch to replace ('' = none), a new epoch. Marks the layout, keeps the
# epoch there unless it is missing or the one to replace. Returns {'layout', found} for another layout version, else
# {'kept' | 'new', epoch, '1' when the layout marker was there before, else '0'}.
_EPOCH_SCRIPT = """
local layout = redis.call('HGET', KEYS[1], 'layout')
if layout and layout ~= ARGV[1] then return {'layout', layout} end
if not layout then redis.call('HSET', KEYS[1], 'layout', ARGV[1]) end
local had = layout and '1' or '0'
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if (not epoch) or epoch == ARGV[2] then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3])
  return {'new', ARGV[3], had}
end
return {'kept', epoch, had}
"""
# KEYS[1] meta, KEYS[2] the identity counter; ARGV: this process's epoch, the block size, the lowest counter value
# this process may see. Returns the counter after reserving a block, -1 when the epoch is not this process's, -2
# when the counter went back.
_ALLOCATE_SCRIPT = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return -1 end
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[3]) then return -2 end
return redis.call('INCRBY', KEYS[2], ARGV[2])
"""


class StoreError(RuntimeError):
    """The Redis data is not what this version of the matcher expects (e.g. another layout version)."""


class StoreReset(RuntimeError):
    """Redis lost the matcher's data (or holds an older copy of it): nothing was allocated; see
    :meth:`TrackletStore.recover`."""


class LeaseLost(RuntimeError):
    """The association lease is held by another matcher: nothing was written."""


def _stream_position(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def load_tracklets(client: redis.Redis, keys: Keys, ids: Sequence[str], chunk: int = 2000) -> list[StoredTracklet]:
    """The stored tracklets among ``ids`` (missing ones are skipped), in the order given."""
    found: list[StoredTracklet] = []
    for offset in range(0, len(ids), chunk):
        part = ids[offset: offset + chunk]
        pipe = client.pipeline(transaction=False)
        for tracklet_id in part:
            pipe.hmget(keys.tracklet(tracklet_id), schema.STORED_FIELDS)
        for tracklet_id, values in zip(part, pipe.execute()):
            record = schema.decode_tracklet(tracklet_id, values)
            if record is not None:
                found.append(record)
    return found


class TrackletStore:
    """Reads and writes the matcher's state through one redis-py client (passed in, never global)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, expected_dim: int | None = None,
                 store_thumbnails: bool = True) -> None:
        self.client, self.keys = client, keys
        self.expected_dim, self.store_thumbnails = expected_dim, store_thumbnails
        self._ingest_script = client.register_script(_INGEST_SCRIPT)
        self._epoch_script = client.register_script(_EPOCH_SCRIPT)
        self._allocate_script = client.register_script(_ALLOCATE_SCRIPT)
        self._identity_lock = threading.Lock()  # the block of identity numbers, the epoch and the counter floor
        self._free_identities: deque[int] = deque()
        self.epoch: str | None = None  # this process's store epoch (set by check_layout)
        self._counter_floor = 0  # the highest identity counter this process has seen in its epoch

    # ----------------------------------------------------------------------------------- setup

    def check_layout(self) -> str:
        """Mark a fresh database with this data model's version and a store epoch; refuse a database of another
        version. Returns the epoch."""
        state, epoch, _had_layout = self._mark_epoch("")
        if state == "new":
            logger.info("redis prefix %r: new store epoch %s (identity ids g<n>-%s)", self.keys.prefix, epoch, epoch)
        return epoch

    def _mark_epoch(self, replace: str) -> tuple[str, str, bool]:
        reply = [text(value) for value in self._epoch_script(
            keys=[self.keys.meta], args=[LAYOUT_VERSION, replace, next_epoch(time.time(), self.epoch)])]
        if reply[0] == "layout":
            raise StoreError(f"redis prefix {self.keys.prefix!r} holds matcher data layout {reply[1]}, this matcher "
                             f"reads layout {LAYOUT_VERSION}: use another redis.prefix or migrate the data")
        state, epoch, had = texts(reply)
        with self._identity_lock:
            if epoch != self.epoch:
                self.epoch, self._counter_floor = epoch, 0
                self._free_identities.clear()
        return state, epoch, had == "1"

    def lost_data(self, stream_after: str = "0-0") -> str | None:
        """Why Redis no longer holds the data this process worked with, or None when it does: the layout or epoch
        marker is gone or changed, or the identity counter or the tracklet stream (last entry id ever added) is
        behind what this process saw (``stream_after``: the last stream entry it read)."""
        with self._identity_lock:  # before the read: the counter only grows meanwhile, unless it went back
            floor = self._counter_floor
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.meta, ("layout", "epoch"))
        pipe.get(self.keys.identity_counter)
        pipe.xinfo_stream(self.keys.stream)
        meta, counter, stream = pipe.execute(raise_on_error=False)  # XINFO fails while the stream is missing
        for reply in (meta, counter):
            if isinstance(reply, Exception):
                raise reply
        layout, epoch = meta
        if layout is None or epoch is None:
            return "its layout and epoch marker is gone"
        if text(epoch) != self.epoch:
            return f"its store epoch changed from {self.epoch} to {text(epoch)} (set by another matcher)"
        if int(counter or 0) < floor:
            return f"its identity counter went back from {floor} to {int(counter or 0)}"
        with self._identity_lock:
            self._counter_floor = max(self._counter_floor, int(counter or 0))
        last = "0-0" if isinstance(stream, Exception) else text(stream.get("last-generated-id")) or "0-0"
        if _stream_position(last) < _stream_position(stream_after):
            return f"its tracklet stream went back from {stream_after} to {last}"
        return None

    def recover(self) -> tuple[str, str]:
        """After :meth:`lost_data`: mark the layout again and give the data a new epoch (or take the one another
        matcher already made); returns (the old epoch, the new one). The caller rebuilds what it derived."""
        old = self.epoch
        self._mark_epoch(old or "")
        return old or "", self.epoch or ""

    # ---------------------------------------------------------------------------------- ingest

    def ingest(self, messages: Sequence[TrackletMessage], now: float | None = None) -> list[IngestStatus]:
        """Store a batch in order; per message its :class:`IngestStatus`.

        One script call (one round trip, atomic) for the batch. Raises redis errors (nothing is then stored).
        """
        now = time.time() if now is None else now
        statuses: list[IngestStatus | None] = [None] * len(messages)
        keys: list[str] = []
        args: list[str | int | bytes] = []
        queued: list[int] = []
        for position, message in enumerate(messages):
            if self.expected_dim is not None and int(message.descriptor.shape[0]) != self.expected_dim:
                statuses[position] = IngestStatus.WRONG_DIM
                continue
            keys += self._ingest_keys(message)
            args += self._ingest_args(message, now)
            queued.append(position)
        pipe = self.client.pipeline(transaction=False)
        if queued:
            self._ingest_script(keys=keys, args=args, client=pipe)
        if len(queued) < len(messages):
            pipe.hincrby(self.keys.stats, f"rejected:{IngestStatus.WRONG_DIM}", len(messages) - len(queued))
        results = pipe.execute() if len(pipe) else []
        for position, result in zip(queued, results[0] if queued else []):
            statuses[position] = IngestStatus(text(result))
        return [status or IngestStatus.WRONG_DIM for status in statuses]

    def _ingest_keys(self, message: TrackletMessage) -> list[str]:
        keys = self.keys
        named = {"tracklet": keys.tracklet(message.message_id), "thumbnail": keys.thumbnail(message.message_id),
                 "by_end": keys.by_end, "by_ingest": keys.by_ingest,
                 "camera_tracklets": keys.camera_tracklets(message.camera_id), "stream": keys.stream,
                 "model_dim": keys.model_dim(message.model_name, message.model_version), "stats": keys.stats,
                 "cameras": keys.cameras}
        return [named[name] for name in schema.INGEST_KEYS]

    def _ingest_args(self, message: TrackletMessage, now: float) -> list[str | int | bytes]:
        thumbnail = message.thumbnail_jpeg if (self.store_thumbnails and message.thumbnail_jpeg) else b""
        return schema.encode_tracklet(message, now, thumbnail)

    def record_heartbeat(self, heartbeat: Heartbeat, now: float | None = None) -> None:
        record = {"timestamp": heartbeat.timestamp, "sequence": heartbeat.sequence,
                  "received_at": time.time() if now is None else now, "counters": dict(heartbeat.counters)}
        self.client.hset(self.keys.cameras, heartbeat.camera_id, json.dumps(record))

    def count(self, counts: Mapping[str, int]) -> None:
        """Add to the shared counters (e.g. ``{"received": 3, "rejected:truncated": 1}``)."""
        pipe = self.client.pipeline(transaction=False)
        for name, value in counts.items():
            if value:
                pipe.hincrby(self.keys.stats, name, int(value))
        if len(pipe):
            pipe.execute()

    # ----------------------------------------------------------------------------- association

    def read_stream(self, after: str, count: int) -> list[tuple[str, str]]:
        """Up to ``count`` (entry id, tracklet id) stored after stream entry ``after`` ("0-0" = from the start)."""
        entries: Any = self.client.xrange(self.keys.stream, min=f"({after}" if after != "0-0" else "-", count=count)
        return [(str(text(entry_id)), str(text(fields[schema.STREAM_ID.encode()]))) for entry_id, fields in entries]

    def last_stream_id(self) -> str:
        entries: Any = self.client.xrevrange(self.keys.stream, count=1)
        return str(text(entries[0][0])) if entries else "0-0"

    def cursor(self) -> str:
        return text(self.client.get(self.keys.cursor)) or "0-0"

    def load(self, ids: Sequence[str]) -> list[StoredTracklet]:
        return load_tracklets(self.client, self.keys, ids)

    def ids_ending_after(self, time_s: float, limit: int) -> list[str]:
        """The ``limit`` most recently ending tracklet ids with end time >= ``time_s``."""
        ids = self.client.zrevrangebyscore(self.keys.by_end, "+inf", time_s, start=0, num=limit)
        return texts(reversed(ids))

    def allocate_identity(self) -> str:
        """A new identity id ``g<n>-<epoch>``; numbers are reserved in blocks (one round trip per block), so ids
        are unique across matchers but may have gaps. Raises :class:`StoreReset` when Redis no longer holds this
        process's epoch, or its counter went back (nothing is allocated then)."""
        with self._identity_lock:
            epoch = self.epoch
            if epoch is None:
                raise StoreReset("the store epoch is not known yet (check_layout first)")
            if not self._free_identities:
                last = int(self._allocate_script(keys=[self.keys.meta, self.keys.identity_counter],
                                                 args=[epoch, IDENTITY_BLOCK, self._counter_floor]))
                if last < 0:
                    raise StoreReset("redis no longer holds this matcher's store epoch" if last == -1 else
                                     "the identity counter in redis went back")
                self._counter_floor = max(self._counter_floor, last)
                self._free_identities.extend(range(last - IDENTITY_BLOCK + 1, last + 1))
            return identity_id(self._free_identities.popleft(), epoch)

    def _fenced(self, token: str) -> Pipeline:
        """A transaction that runs only while ``token`` holds the lease and the store epoch is this process's
        (decisions made before Redis lost its data are never written into the new data)."""
        pipe = self.client.pipeline()
        pipe.watch(self.keys.lease, self.keys.meta)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        if text(pipe.get(self.keys.lease)) != token:
            pipe.reset()
            raise LeaseLost("the association lease is held by another matcher")
        if text(pipe.hget(self.keys.meta, "epoch")) != self.epoch:
            pipe.reset()
            raise StoreReset("redis no longer holds this matcher's store epoch")
        pipe.multi()
        return pipe

    def _execute_fenced(self, pipe: Pipeline) -> None:
        try:
            pipe.execute()
        except redis.WatchError as exc:
            raise LeaseLost("the association lease changed during the commit") from exc
        finally:
            pipe.reset()

    def commit_decisions(self, decisions: Sequence[Decision], tracklets: Mapping[str, StoredTracklet],
                         cursor: str | None, token: str, now: float | None = None) -> None:
        """Write the decisions (identity, links, log) and advance the cursor, only while holding the lease."""
        now = time.time() if now is None else now
        keys = self.keys
        pipe = self._fenced(token)
        for decision in decisions:
            tracklet = tracklets[decision.tracklet_id]
            self._write_decision(pipe, decision, tracklet, tracklets.get(decision.matched_tracklet or ""), now)
        if cursor is not None:
            pipe.set(keys.cursor, cursor)
        self._execute_fenced(pipe)

    def _write_decision(self, pipe: Pipeline, decision: Decision, tracklet: StoredTracklet,
                        matched: StoredTracklet | None, now: float) -> None:
        keys, gid = self.keys, decision.identity
        explanation = {"kind": decision.kind, "score": round(decision.score, 6), "matched": decision.matched_tracklet,
                       "candidates": [[g, round(s, 6), t] for g, s, t in decision.candidates],
                       "rejected": [list(r) for r in decision.rejected], "decided_at": now}
        fields: dict[EncodableT, EncodableT] = {Field.IDENTITY: gid, Field.DECISION: json.dumps(explanation)}
        if matched is not None:
            fields.update({Field.LINK_TO: matched.tracklet_id, Field.LINK_SCORE: repr(float(decision.score)),
                           Field.LINK_KIND: decision.kind})
            pipe.zadd(keys.camera_links(tracklet.camera_id), {tracklet.tracklet_id: tracklet.end_time})
            pipe.zadd(keys.camera_links(matched.camera_id), {tracklet.tracklet_id: tracklet.end_time})
        pipe.hset(keys.tracklet(tracklet.tracklet_id), mapping=fields)
        pipe.zadd(keys.members(gid), {tracklet.tracklet_id: tracklet.start_time})
        if decision.kind == "new":
            pipe.hsetnx(keys.identity(gid), "created_at", repr(now))
        pipe.zadd(keys.identities, {gid: tracklet.end_time}, gt=True)  # GT still adds a new member
        self._log(pipe, gid, {"t": now, "kind": decision.kind, "tracklet": tracklet.tracklet_id,
                              "camera": tracklet.camera_id, "score": round(decision.score, 6),
                              "matched": decision.matched_tracklet})

    def _log(self, pipe: Pipeline, gid: str, entry: Mapping[str, object]) -> None:
        pipe.rpush(self.keys.identity_log(gid), json.dumps(entry))
        pipe.ltrim(self.keys.identity_log(gid), -LOG_LENGTH, -1)

    def commit_changes(self, changes: Sequence[Change], tracklets: Mapping[str, StoredTracklet], token: str,
                       now: float | None = None) -> None:
        """Apply re-clustering merges and splits, only while holding the lease.

        A merge moves every member of the source identity (also those older than the re-clustering horizon, read
        from Redis); a split moves the tracklets it names.
        """
        now = time.time() if now is None else now
        keys = self.keys
        moves = [self._moved(change, tracklets) for change in changes]
        pipe = self._fenced(token)
        for change, moved in zip(changes, moves):
            for tracklet_id, start in moved.items():
                pipe.hset(keys.tracklet(tracklet_id), Field.IDENTITY, change.target)
                pipe.zrem(keys.members(change.source), tracklet_id)
                pipe.zadd(keys.members(change.target), {tracklet_id: start})
            ends = [tracklets[t].end_time for t in moved if t in tracklets]
            if ends:
                pipe.zadd(keys.identities, {change.target: max(ends)}, gt=True)
            if change.kind == "merge":
                pipe.hset(keys.identity(change.source), "merged_into", change.target)
                pipe.zrem(keys.identities, change.source)
            else:
                pipe.hsetnx(keys.identity(change.target), "created_at", repr(now))
                pipe.hset(keys.identity(change.target), "split_from", change.source)
            entry = {"t": now, "kind": change.kind, "source": change.source, "target": change.target,
                     "score": round(change.score, 6), "tracklets": list(change.tracklets)}
            self._log(pipe, change.source, entry)
            self._log(pipe, change.target, entry)
        self._execute_fenced(pipe)

    def _moved(self, change: Change, tracklets: Mapping[str, StoredTracklet]) -> dict[str, float]:
        """Tracklet id -> start time of what the change moves."""
        moved = {t: tracklets[t].start_time for t in change.tracklets if t in tracklets}
        if change.kind == "merge":
            members: Any = self.client.zrange(self.keys.members(change.source), 0, -1, withscores=True)
            for member, start in members:
                moved[str(text(member))] = start
        return moved

    # ------------------------------------------------------------------------------- retention

    def expire(self, ingested_before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` tracklets ingested before the given time; identities left empty go too."""
        keys = self.keys
        ids = texts(self.client.zrangebyscore(keys.by_ingest, "-inf", f"({ingested_before!r}", start=0, num=limit))
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for tracklet_id in ids:
            pipe.hmget(keys.tracklet(tracklet_id), (Field.CAMERA, Field.IDENTITY))
        owners = [(text(camera), text(identity)) for camera, identity in pipe.execute()]
        identities = {identity for _camera, identity in owners if identity}
        pipe = self.client.pipeline(transaction=True)
        for tracklet_id, (camera, identity) in zip(ids, owners):
            pipe.delete(keys.tracklet(tracklet_id), keys.thumbnail(tracklet_id))
            pipe.zrem(keys.by_end, tracklet_id)
            pipe.zrem(keys.by_ingest, tracklet_id)
            if camera:
                pipe.zrem(keys.camera_tracklets(camera), tracklet_id)
                pipe.zrem(keys.camera_links(camera), tracklet_id)
            if identity:
                pipe.zrem(keys.members(identity), tracklet_id)
        pipe.execute()
        self._drop_empty_identities(identities)
        self._trim_stream(ingested_before)
        logger.info("retention: deleted %d tracklets ingested before %.0f", len(ids), ingested_before)
        return len(ids)

    def _drop_empty_identities(self, identities: Iterable[str]) -> None:
        keys = self.keys
        for gid in identities:
            if self.client.zcard(keys.members(gid)) == 0:
                self.client.delete(keys.identity(gid), keys.members(gid), keys.identity_log(gid))
                self.client.zrem(keys.identities, gid)

    def _trim_stream(self, before: float) -> None:
        """Drop stream entries older than ``before`` that association has already decided."""
        cursor_ms = int(self.cursor().split("-")[0])
        self.client.xtrim(self.keys.stream, minid=str(min(cursor_ms, int(before * 1000))), approximate=True)
