"""ZeroMQ ingest: the ROUTER socket the workers' DEALERs connect to (the protocol is in ``docs/protocol.md``).

A batch of frames is decoded, its tracklet messages are stored in Redis in one round trip, in the order they
arrived (:meth:`~keyreid_stream.matcher.state.store.TrackletStore.ingest`), and only then acknowledged: ``ok`` for
stored and for duplicates (a retransmission of something already stored, also earlier in the same batch), the
rejection code otherwise. While Redis is unreachable the batch is retried with backoff and nothing is
acknowledged, so the workers keep their copies. Frames that do not decode (or hold more than one payload frame,
or a thumbnail that is not a decodable JPEG) are counted under their code, logged once per cause, and rejected by
id when the id can still be read (never a heartbeat's: heartbeats are never acknowledged); they never stop the
loop. Every tracklet frame counts once in ``received``: ``received = stored + duplicates + rejected``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import zmq

from keyreid_stream import wire
from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.matcher.api.images import ImageError, check_image
from keyreid_stream.matcher.state.schema import IngestStatus
from keyreid_stream.matcher.state.store import TrackletStore

__all__ = ["IngestStats", "Ingestor", "Outage", "bind_router"]

logger = logging.getLogger(__name__)

MULTIPART, BAD_THUMBNAIL = "multipart", "thumbnail"
THUMBNAIL_MAX_PIXELS = 1 << 20  # the workers send 128-pixel-tall person crops
SOCKET_MAX_BYTES = 4 * wire.MAX_MESSAGE_BYTES  # bigger frames make ZeroMQ drop the connection (memory guard)


@dataclass
class IngestStats:
    frames: int = 0
    stored: int = 0
    duplicates: int = 0
    heartbeats: int = 0
    acks: int = 0
    batches: int = 0
    redis_retries: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class Outage:
    """Backoff and one warning per outage of a dependency (then one line when it is back)."""

    def __init__(self, what: str, backoff_s: tuple[float, float]) -> None:
        self.what, (self.first, self.largest) = what, backoff_s
        self.since: float | None = None
        self.delay = self.first
        self.last_error = ""

    def failed(self, exc: BaseException) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.since is None:
            self.since, self.delay = time.monotonic(), self.first
            logger.warning("%s: Redis unavailable (%s: %s); retrying with backoff up to %.1f s", self.what,
                           type(exc).__name__, exc, self.largest)
        else:
            self.delay = min(self.largest, self.delay * 2)
        return self.delay

    def recovered(self) -> None:
        if self.since is not None:
            logger.info("%s: Redis reachable again after %.1f s", self.what, time.monotonic() - self.since)
            self.since = None

    @property
    def down(self) -> bool:
        return self.since is not None


def bind_router(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    """The matcher's ROUTER socket, bound; ``LAST_ENDPOINT`` tells the port when ``endpoint`` asked for ``*``."""
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_BYTES)
    router.setsockopt(zmq.RCVHWM, 100_000)
    router.setsockopt(zmq.SNDHWM, 100_000)
    router.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    try:
        router.bind(endpoint)
    except zmq.ZMQError as exc:
        router.close(linger=0)
        busy = " (another matcher or program listens there)" if exc.errno == errno.EADDRINUSE else ""
        error = OSError(f"cannot listen for the workers on {endpoint} (ingest.listen): "
                        f"{os.strerror(exc.errno) if exc.errno else exc}{busy}")
        error.errno = exc.errno
        raise error from None
    return router


class Ingestor:
    """Receives, stores and acknowledges; call :meth:`run` in one thread (ZeroMQ sockets are not thread-safe)."""

    def __init__(self, router: zmq.Socket[bytes], store: TrackletStore, *, batch_size: int = 256,
                 backoff_s: tuple[float, float] = (0.2, 5.0), on_stored: Callable[[int], None] | None = None) -> None:
        self.router, self.store, self.batch_size = router, store, batch_size
        self.outage = Outage("ingest", backoff_s)
        self.stats = IngestStats()
        self._on_stored = on_stored
        self._logged_causes: set[str] = set()
        self.running = False

    def run(self, stop: threading.Event, poll_ms: int = 100) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        self.running = True
        try:
            while not stop.is_set():
                if poller.poll(poll_ms):
                    self.process(self._receive_batch(), stop)
        finally:
            self.running = False

    def _receive_batch(self) -> list[list[bytes]]:
        batch: list[list[bytes]] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self.router.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        return batch

    def process(self, batch: list[list[bytes]], stop: threading.Event) -> None:
        """Decode, store and acknowledge one batch of ROUTER messages ``[identity, payload]``."""
        accepted: list[tuple[bytes, TrackletMessage]] = []
        heartbeats: list[Heartbeat] = []
        rejected: Counter[str] = Counter()
        for frames in batch:
            self.stats.frames += 1
            message = self._decode(frames, rejected)
            if isinstance(message, Heartbeat):
                heartbeats.append(message)
            elif message is not None:
                accepted.append((frames[0], message))
        statuses = self._store([message for _, message in accepted], heartbeats, rejected, stop)
        if statuses is None:
            return  # stopping while Redis is down: nothing acknowledged, the workers keep their copies
        for (identity, message), status in zip(accepted, statuses):
            self._ack(identity, message.message_id, wire.ACK_OK if status.accepted else status)
            if not status.accepted:
                self._reject(status, f"tracklet {message.message_id} from camera {message.camera_id}", rejected,
                             count=False)
        self.stats.batches += 1

    def _decode(self, frames: list[bytes], rejected: Counter[str]) -> TrackletMessage | Heartbeat | None:
        if len(frames) != 2:
            self._refuse(frames, MULTIPART, f"expected one frame per message, got {len(frames) - 1}", rejected)
            return None
        try:
            message = wire.decode(frames[1])
        except wire.WireError as exc:
            self._refuse(frames, exc.code, str(exc), rejected)
            return None
        if isinstance(message, TrackletMessage) and message.thumbnail_jpeg is not None:
            try:
                check_image(message.thumbnail_jpeg, THUMBNAIL_MAX_PIXELS, "thumbnail")
            except ImageError as exc:
                self._refuse(frames, BAD_THUMBNAIL, str(exc), rejected)
                return None
        return message

    def _refuse(self, frames: list[bytes], code: str, detail: str, rejected: Counter[str]) -> None:
        """Count and log a rejected frame, and reject it by id when its id can be read (see
        :func:`~keyreid_stream.wire.peek_message_id`: never a heartbeat)."""
        self._reject(code, detail, rejected)
        message_id = wire.peek_message_id(frames[1]) if len(frames) > 1 else None
        if message_id is not None:
            self._ack(frames[0], message_id, code)

    def _store(self, messages: list[TrackletMessage], heartbeats: list[Heartbeat], rejected: Counter[str],
               stop: threading.Event) -> list[IngestStatus] | None:
        """Store the batch's tracklets in order; their statuses (None when stopped while Redis is down)."""
        counts = {"received": len(messages) + sum(rejected.values())}
        counts.update({f"rejected:{code}": n for code, n in rejected.items()})
        while True:
            try:
                statuses = self.store.ingest(messages) if messages else []
                for heartbeat in heartbeats:
                    self.store.record_heartbeat(heartbeat)
                self.store.count(counts)
                self.outage.recovered()
                break
            except redis.RedisError as exc:
                self.stats.redis_retries += 1
                if stop.wait(self.outage.failed(exc)):
                    return None
        stored = sum(status is IngestStatus.STORED for status in statuses)
        self.stats.stored += stored
        self.stats.duplicates += sum(status is IngestStatus.DUPLICATE for status in statuses)
        self.stats.heartbeats += len(heartbeats)
        if stored and self._on_stored is not None:
            self._on_stored(stored)
        return statuses

    def _ack(self, identity: bytes, message_id: str, status: str) -> None:
        try:
            self.router.send_multipart([identity, wire.encode_ack(message_id, status)], zmq.NOBLOCK)
            self.stats.acks += 1
        except zmq.ZMQError as exc:  # the peer is gone or its pipe is full: it retransmits and we ack again
            logger.debug("ack %s not sent: %s", message_id, exc)

    def _reject(self, code: str, detail: str, rejected: Counter[str], count: bool = True) -> None:
        self.stats.rejected[code] += 1
        if count:
            rejected[code] += 1
        if code not in self._logged_causes:
            self._logged_causes.add(code)
            logger.warning("rejected a worker message (%s): %s; further rejections of this kind are only counted "
                           "(see /stats)", code, detail)
