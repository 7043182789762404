"""The matcher's state in Redis: idempotent ingest, association commits fenced by the lease, retention.

Every key comes from :class:`~keyreid_stream.matcher.keys.Keys`; the data model is in ``docs/matcher.md``.

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

import numpy as np
import redis

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.matcher.keys import LAYOUT_VERSION, Keys
from keyreid_stream.matcher.records import (
    Change,
    Decision,
    StoredTracklet,
    descriptor_space,
    identity_id,
    next_epoch,
    normalize,
)

__all__ = ["DUPLICATE", "ID_CONFLICT", "LeaseLost", "STORED", "StoreError", "StoreReset", "TrackletStore",
           "load_tracklets"]

logger = logging.getLogger(__name__)

STORED, DUPLICATE, WRONG_DIM, ID_CONFLICT = "stored", "duplicate", "descriptor_dim", "id_conflict"
LOG_LENGTH = 200
IDENTITY_BLOCK = 64
_FIELDS = ("camera", "track", "start", "end", "frames", "space", "desc", "identity", "ingested")

# One call stores a batch: for message i, KEYS[9i+1 .. 9i+9] are its tracklet, thumbnail, by_end, by_ingest, camera
# tracklets, stream, model dim, stats and cameras keys, ARGV[13i+1 .. 13i+13] its id, camera, track, start, end,
# frames, model, version, space, dim, descriptor, ingested time and thumbnail. Returns one status per message.
# Messages are taken in order, so the first copy of an id wins, within a batch as across batches: a later copy with
# the same content (camera, track, times, frames, model, version, descriptor) is a duplicate, one with other content
# an id_conflict (rejected, the stored copy unchanged).
_INGEST_SCRIPT = """
local statuses = {}
for i = 0, #KEYS / 9 - 1 do
  local k, a = i * 9, i * 13
  local status = 'stored'
  local dim = redis.call('GET', KEYS[k + 7])
  local old = redis.call('HMGET', KEYS[k + 1], 'camera', 'track', 'start', 'end', 'frames', 'model', 'version', 'desc')
  if old[1] then
    local same = true
    for j = 1, 7 do same = same and old[j] == ARGV[a + 1 + j] end
    if same and old[8] == ARGV[a + 11] then
      redis.call('HINCRBY', KEYS[k + 8], 'duplicates', 1)
      status = 'duplicate'
    else
      redis.call('HINCRBY', KEYS[k + 8], 'rejected:id_conflict', 1)
      status = 'id_conflict'
    end
  elseif dim and dim ~= ARGV[a + 10] then
    redis.call('HINCRBY', KEYS[k + 8], 'rejected:descriptor_dim', 1)
    status = 'descriptor_dim'
  else
    if not dim then redis.call('SET', KEYS[k + 7], ARGV[a + 10]) end
    local thumb = '0'
    if ARGV[a + 13] ~= '' then
      redis.call('SET', KEYS[k + 2], ARGV[a + 13])
      thumb = '1'
    end
    redis.call('HSET', KEYS[k + 1], 'camera', ARGV[a + 2], 'track', ARGV[a + 3], 'start', ARGV[a + 4],
      'end', ARGV[a + 5], 'frames', ARGV[a + 6], 'model', ARGV[a + 7], 'version', ARGV[a + 8],
      'space', ARGV[a + 9], 'dim', ARGV[a + 10], 'desc', ARGV[a + 11], 'ingested', ARGV[a + 12], 'thumb', thumb)
    redis.call('ZADD', KEYS[k + 3], ARGV[a + 5], ARGV[a + 1])
    redis.call('ZADD', KEYS[k + 4], ARGV[a + 12], ARGV[a + 1])
    redis.call('ZADD', KEYS[k + 5], ARGV[a + 5], ARGV[a + 1])
    redis.call('HSETNX', KEYS[k + 9], ARGV[a + 2], '{}')
    redis.call('XADD', KEYS[k + 6], '*', 'id', ARGV[a + 1])
    redis.call('HINCRBY', KEYS[k + 8], 'stored', 1)
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


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _tracklet(tracklet_id: str, values: Sequence[bytes | None]) -> StoredTracklet | None:
    if values[0] is None:
        return None
    camera, track, start, end, frames, space, desc, identity, ingested = values
    return StoredTracklet(
        tracklet_id=tracklet_id, camera_id=_text(camera), track_id=int(track), start_time=float(start),
        end_time=float(end), num_frames=int(frames), space=_text(space),
        descriptor=normalize(np.frombuffer(desc, dtype="<f4")), identity=_text(identity) or None,
        ingested_at=float(ingested),
    )


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
            pipe.hmget(keys.tracklet(tracklet_id), _FIELDS)
        for tracklet_id, values in zip(part, pipe.execute()):
            record = _tracklet(tracklet_id, values)
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
        reply = [_text(value) for value in self._epoch_script(
            keys=[self.keys.meta], args=[LAYOUT_VERSION, replace, next_epoch(time.time(), self.epoch)])]
        if reply[0] == "layout":
            raise StoreError(f"redis prefix {self.keys.prefix!r} holds matcher data layout {reply[1]}, this matcher "
                             f"reads layout {LAYOUT_VERSION}: use another redis.prefix or migrate the data")
        with self._identity_lock:
            if reply[1] != self.epoch:
                self.epoch, self._counter_floor = reply[1], 0
                self._free_identities.clear()
        return reply[0], reply[1], reply[2] == "1"

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
        if _text(epoch) != self.epoch:
            return f"its store epoch changed from {self.epoch} to {_text(epoch)} (set by another matcher)"
        if int(counter or 0) < floor:
            return f"its identity counter went back from {floor} to {int(counter or 0)}"
        with self._identity_lock:
            self._counter_floor = max(self._counter_floor, int(counter or 0))
        last = "0-0" if isinstance(stream, Exception) else _text(stream.get("last-generated-id")) or "0-0"
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

    def ingest(self, messages: Sequence[TrackletMessage], now: float | None = None) -> list[str]:
        """Store a batch in order; per message "stored", "duplicate" or a rejection code ("descriptor_dim",
        "id_conflict").

        One script call (one round trip, atomic) for the batch. Raises redis errors (nothing is then stored).
        """
        now = time.time() if now is None else now
        statuses: list[str | None] = [None] * len(messages)
        keys: list[str] = []
        args: list[object] = []
        queued: list[int] = []
        for position, message in enumerate(messages):
            if self.expected_dim is not None and int(message.descriptor.shape[0]) != self.expected_dim:
                statuses[position] = WRONG_DIM
                continue
            keys += self._ingest_keys(message)
            args += self._ingest_args(message, now)
            queued.append(position)
        pipe = self.client.pipeline(transaction=False)
        if queued:
            self._ingest_script(keys=keys, args=args, client=pipe)
        if len(queued) < len(messages):
            pipe.hincrby(self.keys.stats, f"rejected:{WRONG_DIM}", len(messages) - len(queued))
        results = pipe.execute() if len(pipe) else []
        for position, result in zip(queued, results[0] if queued else []):
            statuses[position] = _text(result)
        return [status or WRONG_DIM for status in statuses]

    def _ingest_keys(self, message: TrackletMessage) -> list[str]:
        keys = self.keys
        return [keys.tracklet(message.message_id), keys.thumbnail(message.message_id), keys.by_end, keys.by_ingest,
                keys.camera_tracklets(message.camera_id), keys.stream,
                keys.model_dim(message.model_name, message.model_version), keys.stats, keys.cameras]

    def _ingest_args(self, message: TrackletMessage, now: float) -> list[object]:
        dim = int(message.descriptor.shape[0])
        thumbnail = message.thumbnail_jpeg if (self.store_thumbnails and message.thumbnail_jpeg) else b""
        return [message.message_id, message.camera_id, message.track_id, repr(message.start_time),
                repr(message.end_time), message.num_frames, message.model_name, message.model_version,
                descriptor_space(message.model_name, message.model_version, dim), dim,
                message.descriptor.astype("<f4").tobytes(), repr(now), thumbnail]

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
        entries = self.client.xrange(self.keys.stream, min=f"({after}" if after != "0-0" else "-", count=count)
        return [(_text(entry_id), _text(fields[b"id"])) for entry_id, fields in entries]

    def last_stream_id(self) -> str:
        entries = self.client.xrevrange(self.keys.stream, count=1)
        return _text(entries[0][0]) if entries else "0-0"

    def cursor(self) -> str:
        return _text(self.client.get(self.keys.cursor)) or "0-0"

    def load(self, ids: Sequence[str]) -> list[StoredTracklet]:
        return load_tracklets(self.client, self.keys, ids)

    def ids_ending_after(self, time_s: float, limit: int) -> list[str]:
        """The ``limit`` most recently ending tracklet ids with end time >= ``time_s``."""
        ids = self.client.zrevrangebyscore(self.keys.by_end, "+inf", time_s, start=0, num=limit)
        return [_text(i) for i in reversed(ids)]

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

    def _fenced(self, token: str):  # noqa: ANN202 - a redis-py pipeline in MULTI state
        """A transaction that runs only while ``token`` holds the lease and the store epoch is this process's
        (decisions made before Redis lost its data are never written into the new data)."""
        pipe = self.client.pipeline()
        pipe.watch(self.keys.lease, self.keys.meta)
        if _text(pipe.get(self.keys.lease)) != token:
            pipe.reset()
            raise LeaseLost("the association lease is held by another matcher")
        if _text(pipe.hget(self.keys.meta, "epoch")) != self.epoch:
            pipe.reset()
            raise StoreReset("redis no longer holds this matcher's store epoch")
        pipe.multi()
        return pipe

    def _execute_fenced(self, pipe) -> None:  # noqa: ANN001
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

    def _write_decision(self, pipe, decision: Decision, tracklet: StoredTracklet,  # noqa: ANN001
                        matched: StoredTracklet | None, now: float) -> None:
        keys, gid = self.keys, decision.identity
        explanation = {"kind": decision.kind, "score": round(decision.score, 6), "matched": decision.matched_tracklet,
                       "candidates": [[g, round(s, 6), t] for g, s, t in decision.candidates],
                       "rejected": [list(r) for r in decision.rejected], "decided_at": now}
        fields: dict[str, object] = {"identity": gid, "decision": json.dumps(explanation)}
        if matched is not None:
            fields.update(link_to=matched.tracklet_id, link_score=repr(float(decision.score)),
                          link_kind=decision.kind)
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

    def _log(self, pipe, gid: str, entry: Mapping[str, object]) -> None:  # noqa: ANN001
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
                pipe.hset(keys.tracklet(tracklet_id), "identity", change.target)
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
            for member, start in self.client.zrange(self.keys.members(change.source), 0, -1, withscores=True):
                moved[_text(member)] = start
        return moved

    # ------------------------------------------------------------------------------- retention

    def expire(self, ingested_before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` tracklets ingested before the given time; identities left empty go too."""
        keys = self.keys
        ids = [_text(i) for i in self.client.zrangebyscore(keys.by_ingest, "-inf", f"({ingested_before!r}",
                                                           start=0, num=limit)]
        if not ids:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for tracklet_id in ids:
            pipe.hmget(keys.tracklet(tracklet_id), ("camera", "identity"))
        owners = pipe.execute()
        identities = {_text(identity) for _camera, identity in owners if identity}
        pipe = self.client.pipeline(transaction=True)
        for tracklet_id, (camera, identity) in zip(ids, owners):
            pipe.delete(keys.tracklet(tracklet_id), keys.thumbnail(tracklet_id))
            pipe.zrem(keys.by_end, tracklet_id)
            pipe.zrem(keys.by_ingest, tracklet_id)
            if camera:
                pipe.zrem(keys.camera_tracklets(_text(camera)), tracklet_id)
                pipe.zrem(keys.camera_links(_text(camera)), tracklet_id)
            if identity:
                pipe.zrem(keys.members(_text(identity)), tracklet_id)
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
