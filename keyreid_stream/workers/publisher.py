"""The camera worker's reliable publisher: tracklet messages and heartbeats to the matcher over ZeroMQ.

A DEALER socket connects to the matcher's ROUTER (see ``docs/protocol.md``, Transport). Delivery guarantees:

* **At least once** for tracklet messages while the publisher runs. Each message stays buffered until the
  matcher acknowledges it; an unacknowledged message is sent again every ``ack_timeout_s``. A lost ack
  therefore produces a duplicate, and the matcher deduplicates by ``message_id``. Order is not preserved
  across retransmissions.
* **Bounded memory, never silent loss.** Every published message ends as exactly one of: ``acked`` (the
  matcher stored it), ``rejected`` (the matcher refused it for good with a status code, not retried) or
  ``dropped`` (pushed out of the full buffer, oldest first, or still unacknowledged when :meth:`close`
  gave up). Drops are counted and logged (rate-limited), rejections are counted and logged once per code.
* **Heartbeats are best effort**: sent every ``heartbeat_interval_s``, never acknowledged or retried; a tick
  at which the matcher is unreachable is counted as skipped.
* **An unreachable matcher is said once**: when messages have waited ``unreachable_warning_s`` without any
  acknowledgement, one warning names the matcher's address (and whether a connection exists at all); one info
  line follows when acknowledgements come again. :attr:`Publisher.connected` (a ZeroMQ handshake with the
  matcher's socket succeeded, from the socket monitor) and :meth:`Publisher.wait_connected` let a caller wait for
  the matcher before producing anything.

``IMMEDIATE=1`` makes a send fail at once (EAGAIN) while no matcher is connected, so nothing piles up inside
ZeroMQ where it could not be counted: messages wait in this publisher's own buffer instead. One background
thread owns the socket and calls ``on_ack`` and ``heartbeats`` (without holding the publisher's lock: they
may call :meth:`Publisher.stats`); :meth:`Publisher.publish` is thread-safe and never blocks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

from keyreid_stream import wire
from keyreid_stream.contracts import Heartbeat, TrackletMessage

__all__ = ["Publisher", "PublisherStats"]

logger = logging.getLogger(__name__)

TICK_S = 0.02
DROP_WARNING_INTERVAL_S = 10.0
LATENCY_WINDOW = 1000
MAX_ACKS_PER_TICK = 1000
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 5000
ZMTP_HEARTBEAT_IVL, ZMTP_HEARTBEAT_TIMEOUT = 1000, 3000  # ms; detect a dead matcher host that sent no FIN
SNDHWM_HEADROOM = 16  # room for heartbeats on top of max_in_flight
CLOSE_LINGER_MS = 100  # only when the final heartbeats were queued: time for them to reach the matcher
JOIN_SLACK_S = 2.0
WAIT_SLICE_S = 0.1
_MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
_COUNTS = ("published", "sent", "resent", "acked", "rejected", "dropped", "heartbeats_sent",
           "heartbeats_skipped", "bad_acks")


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of the publisher's counters (see the module docstring for the meaning of each outcome)."""

    published: int  # publish() calls accepted into the buffer
    sent: int  # first transmissions
    resent: int  # retransmissions after an ack timeout
    acked: int  # acknowledged with status "ok"
    rejected: int  # acknowledged with another status (dropped, not retried)
    dropped: int  # pushed out of a full buffer, or still unacknowledged when close() gave up
    buffered: int  # queued + in flight now
    in_flight: int
    heartbeats_sent: int
    heartbeats_skipped: int  # heartbeat ticks when the matcher was unreachable
    bad_acks: int  # undecodable frames received from the matcher
    ack_latency_p50_s: float | None  # publish() -> ack, over the last LATENCY_WINDOW acks
    ack_latency_p95_s: float | None


@dataclass
class _Pending:
    message_id: str
    payload: bytes
    published_at: float
    last_sent: float = 0.0


def _percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None when there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Publisher:
    """Sends :class:`TrackletMessage`s (acknowledged, retried) and heartbeats to the matcher's ROUTER."""

    def __init__(
        self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str, *, buffer_size: int = 10_000, max_in_flight: int = 256,
        ack_timeout_s: float = 5.0, heartbeat_interval_s: float = 2.0,
        heartbeats: Callable[[], Sequence[Heartbeat]] | None = None,
        on_ack: Callable[[str, float], None] | None = None, unreachable_warning_s: float = 10.0,
    ) -> None:
        for name, value in (("buffer_size", buffer_size), ("max_in_flight", max_in_flight),
                            ("ack_timeout_s", ack_timeout_s), ("heartbeat_interval_s", heartbeat_interval_s),
                            ("unreachable_warning_s", unreachable_warning_s)):
            if not value > 0:
                raise ValueError(f"Publisher: {name} must be > 0, got {value!r}")
        self._context, self._endpoint = context, endpoint
        self._buffer_size, self._max_in_flight = int(buffer_size), int(max_in_flight)
        self._ack_timeout_s, self._heartbeat_interval_s = float(ack_timeout_s), float(heartbeat_interval_s)
        self._heartbeats, self._on_ack = heartbeats, on_ack
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()  # not sent yet, oldest first
        self._in_flight: dict[str, _Pending] = {}  # sent, not acknowledged; first-send (= publish) order
        self._ids: set[str] = set()  # every buffered message id
        self._n = dict.fromkeys(_COUNTS, 0)
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._closing = False
        self._flush_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None  # publish() -> thread, a polled fd pair
        self._wake_pending = False
        self._drops_unreported = 0
        self._last_drop_warning: float | None = None
        self._logged: set[str] = set()  # rejection statuses and bad-ack causes already logged
        self._unreachable_warning_s = float(unreachable_warning_s)
        self._last_ack = time.monotonic()
        self._warned_unreachable = False
        self._connected = threading.Event()

    # ------------------------------------------------------------------------------ public API

    def start(self) -> Publisher:
        """Start the background thread (it creates and connects the DEALER socket); returns self."""
        with self._lock:
            if self._closing:
                raise RuntimeError("Publisher.start: the publisher is closed")
            if self._thread is not None:
                raise RuntimeError("Publisher.start: already started")
            dealer, monitor = self._open_socket()  # handed over to the thread: only it uses them from now on
            self._wake = socket.socketpair()
            for end in self._wake:
                end.setblocking(False)
            name = f"publisher {self._endpoint}"
            self._last_ack = time.monotonic()
            self._thread = threading.Thread(target=self._run, args=(dealer, monitor, self._wake[0]), name=name,
                                            daemon=True)
            self._wake_thread()  # for what was published before start()
        self._thread.start()
        return self

    def publish(self, message: TrackletMessage) -> None:
        """Encode and buffer one message (thread-safe, never blocks on the network).

        Raises the :class:`wire.WireError` of an unencodable message, ``TypeError`` for anything but a
        :class:`TrackletMessage`, ``ValueError`` when the same message id is still buffered and
        ``RuntimeError`` after :meth:`close`.
        """
        if not isinstance(message, TrackletMessage):
            raise TypeError(f"Publisher.publish: expected TrackletMessage, got {type(message).__name__}")
        payload = wire.encode(message)
        now = time.monotonic()
        with self._lock:
            if self._closing:
                raise RuntimeError("Publisher.publish: the publisher is closed")
            if message.message_id in self._ids:
                raise ValueError(f"Publisher.publish: message {message.message_id} is already buffered")
            if len(self._queue) + len(self._in_flight) >= self._buffer_size:
                self._drop_oldest(now)
            self._queue.append(_Pending(message.message_id, payload, now))
            self._ids.add(message.message_id)
            self._n["published"] += 1
            self._wake_thread()

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def connected(self) -> bool:
        """True while a ZeroMQ connection to the matcher's socket is up (its handshake succeeded)."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout_s`` for a connection to the matcher (returns at once when ``stop`` is set);
        True when connected."""
        deadline = time.monotonic() + timeout_s
        while not self._connected.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return False
            self._connected.wait(min(WAIT_SLICE_S, remaining))
        return True

    def stats(self) -> PublisherStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            counts, latencies = dict(self._n), list(self._latencies)
            in_flight = len(self._in_flight)
            buffered = len(self._queue) + in_flight
        latencies.sort()
        return PublisherStats(**counts, buffered=buffered, in_flight=in_flight,
                              ack_latency_p50_s=_percentile(latencies, 0.50),
                              ack_latency_p95_s=_percentile(latencies, 0.95))

    def close(self, flush_timeout_s: float = 10.0) -> PublisherStats:
        """Stop accepting, wait up to ``flush_timeout_s`` for the outstanding acks, stop; idempotent.

        What is still unacknowledged then is counted as dropped (one warning). Returns the final stats.
        """
        if flush_timeout_s < 0:
            raise ValueError(f"Publisher.close: flush_timeout_s must be >= 0, got {flush_timeout_s!r}")
        with self._lock:
            if not self._closing:
                self._closing = True
                self._flush_deadline = time.monotonic() + flush_timeout_s
                self._wake_thread()
            deadline = self._flush_deadline
        thread = self._thread
        if thread is threading.current_thread():  # close() from on_ack: the thread finishes by itself
            return self.stats()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + JOIN_SLACK_S)
            if thread.is_alive():
                logger.error("publisher %s: the thread did not stop within the flush timeout", self._endpoint)
        self._give_up("closed before start()" if thread is None else "the publisher thread failed or hung")
        if thread is not None and not thread.is_alive():
            with self._lock:
                for end in self._wake or ():
                    end.close()
                self._wake = None
        return self.stats()

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- buffer (lock held)

    def _wake_thread(self) -> None:
        if not self._wake_pending and self._wake is not None:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):  # full: the thread has wake-ups pending already
                self._wake[1].send(b"\0")

    def _drop_oldest(self, now: float) -> None:
        """Every in-flight message was published before every queued one: the oldest is the first of those."""
        if self._in_flight:
            victim = self._in_flight.pop(next(iter(self._in_flight)))
        else:
            victim = self._queue.popleft()
        self._ids.discard(victim.message_id)
        self._n["dropped"] += 1
        self._drops_unreported += 1
        self._report_drops(now)

    def _report_drops(self, now: float) -> None:
        """Warn at the first drop of an episode, then at most every DROP_WARNING_INTERVAL_S."""
        last = self._last_drop_warning
        if not self._drops_unreported or (last is not None and now - last < DROP_WARNING_INTERVAL_S):
            return
        logger.warning(
            "publisher %s: buffer full (%d messages), dropped the %d oldest unacknowledged message(s) "
            "(%d dropped in total); is the matcher reachable?",
            self._endpoint, self._buffer_size, self._drops_unreported, self._n["dropped"])
        self._drops_unreported, self._last_drop_warning = 0, now

    def _give_up(self, reason: str) -> None:
        """Count what is still buffered as dropped; one warning (also for overflow drops not reported yet)."""
        with self._lock:
            remaining = len(self._queue) + len(self._in_flight)
            if not remaining and not self._drops_unreported:
                return
            self._drops_unreported = 0
            self._queue.clear()
            self._in_flight.clear()
            self._ids.clear()
            self._n["dropped"] += remaining
            total = self._n["dropped"]
        logger.warning("publisher %s: %s: %d unacknowledged message(s) counted as dropped "
                       "(%d dropped in total)", self._endpoint, reason, remaining, total)

    # ------------------------------------------------------------------------------ the thread

    def _open_socket(self) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        """The DEALER, connecting, and its monitor (attached first, so that no connection event is missed)."""
        dealer = self._context.socket(zmq.DEALER)
        monitor = None
        try:
            options = {zmq.LINGER: 0, zmq.IMMEDIATE: 1, zmq.SNDHWM: self._max_in_flight + SNDHWM_HEADROOM,
                       zmq.RECONNECT_IVL: RECONNECT_IVL_MS, zmq.RECONNECT_IVL_MAX: RECONNECT_IVL_MAX_MS,
                       zmq.HEARTBEAT_IVL: ZMTP_HEARTBEAT_IVL, zmq.HEARTBEAT_TIMEOUT: ZMTP_HEARTBEAT_TIMEOUT}
            for option, value in options.items():
                dealer.setsockopt(option, value)
            monitor = dealer.get_monitor_socket(_MONITOR_EVENTS)
            dealer.connect(self._endpoint)
        except BaseException:
            if monitor is not None:
                monitor.close(linger=0)
            dealer.close(linger=0)
            raise
        return dealer, monitor

    def _run(self, dealer: zmq.Socket[bytes], monitor: zmq.Socket[bytes], wake: socket.socket) -> None:
        linger = 0
        try:
            self._loop(dealer, monitor, wake)
            self._give_up("not acknowledged after the close() flush timeout")
            if self._send_heartbeats(dealer):
                linger = CLOSE_LINGER_MS
        except Exception:
            logger.exception("publisher %s: the thread failed; nothing more is sent", self._endpoint)
        finally:
            self._connected.clear()
            with contextlib.suppress(zmq.ZMQError):
                dealer.disable_monitor()
            monitor.close(linger=0)
            dealer.close(linger=linger)

    def _loop(self, dealer: zmq.Socket[bytes], monitor: zmq.Socket[bytes], wake: socket.socket) -> None:
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(wake.fileno(), zmq.POLLIN)
        next_heartbeat = time.monotonic() + self._heartbeat_interval_s
        while True:
            # pyzmq's stubs say int; the timeout is any number of milliseconds
            events = dict(poller.poll(TICK_S * 1000))  # type: ignore[arg-type]
            if wake.fileno() in events:
                self._drain_wake(wake)
            if monitor in events:
                self._receive_events(monitor)
            if dealer in events:
                self._receive_acks(dealer)
            now = time.monotonic()
            self._retransmit(dealer, now)
            self._send_queued(dealer, now)
            if now >= next_heartbeat:
                self._send_heartbeats(dealer)
                next_heartbeat = now + self._heartbeat_interval_s
            with self._lock:
                self._report_drops(now)
                self._report_unreachable(now)
                if self._closing and (not self._ids or now >= self._flush_deadline):
                    return

    def _receive_events(self, monitor: zmq.Socket[bytes]) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected.set()
            elif event == zmq.EVENT_DISCONNECTED:
                self._connected.clear()

    def _report_unreachable(self, now: float) -> None:
        """Warn once when messages have waited ``unreachable_warning_s`` and nothing was acknowledged meanwhile
        (lock held)."""
        if self._warned_unreachable:
            return
        oldest = next(iter(self._in_flight.values()), None) or (self._queue[0] if self._queue else None)
        if oldest is None or now - max(self._last_ack, oldest.published_at) < self._unreachable_warning_s:
            return
        self._warned_unreachable = True
        state = ("connected, but it acknowledges nothing: is it a keyreid-stream matcher?" if self.connected
                 else "no connection: is it running, and listening on this address?")
        logger.warning("publisher: the matcher at %s looks unreachable: nothing acknowledged for %.0f s while %d "
                       "message(s) wait (%s); they stay buffered (up to %d, then the oldest are dropped) and are "
                       "sent when it answers", self._endpoint, now - max(self._last_ack, oldest.published_at),
                       len(self._queue) + len(self._in_flight), state, self._buffer_size)

    def _drain_wake(self, wake: socket.socket) -> None:
        with self._lock:
            self._wake_pending = False
            with contextlib.suppress(BlockingIOError):
                while wake.recv(4096):
                    pass

    def _send(self, dealer: zmq.Socket[bytes], payload: bytes) -> bool:
        """One frame without blocking; False when ZeroMQ cannot take it now (no matcher, or the HWM). A frame
        taken means a completed connection (IMMEDIATE): that also tells :attr:`connected` for transports whose
        monitor reports no handshake (inproc)."""
        try:
            dealer.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._connected.set()
        return True

    def _send_queued(self, dealer: zmq.Socket[bytes], now: float) -> None:
        while True:
            with self._lock:
                if not self._queue or len(self._in_flight) >= self._max_in_flight:
                    return
                item = self._queue[0]
                if not self._send(dealer, item.payload):
                    return
                self._queue.popleft()
                item.last_sent = now
                self._in_flight[item.message_id] = item
                self._n["sent"] += 1

    def _retransmit(self, dealer: zmq.Socket[bytes], now: float) -> None:
        with self._lock:
            overdue = [p for p in self._in_flight.values() if now - p.last_sent >= self._ack_timeout_s]
        for item in overdue:
            with self._lock:
                if item.message_id not in self._in_flight:  # dropped by publish() meanwhile
                    continue
                if not self._send(dealer, item.payload):
                    return
                item.last_sent = now
                self._n["resent"] += 1

    def _send_heartbeats(self, dealer: zmq.Socket[bytes]) -> bool:
        """Send one batch from the callable; True when all of a non-empty batch was sent."""
        if self._heartbeats is None:
            return False
        try:
            payloads = [wire.encode(heartbeat) for heartbeat in self._heartbeats()]
        except Exception:
            if self._log_once("heartbeat callable"):
                logger.exception("publisher %s: the heartbeat callable failed (logged once)", self._endpoint)
            return False
        sent = 0
        while sent < len(payloads) and self._send(dealer, payloads[sent]):
            sent += 1
        with self._lock:
            self._n["heartbeats_sent"] += sent
            self._n["heartbeats_skipped"] += int(sent < len(payloads))
        return 0 < sent == len(payloads)

    def _receive_acks(self, dealer: zmq.Socket[bytes]) -> None:
        for _ in range(MAX_ACKS_PER_TICK):
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 1:
                    raise wire.InvalidField(f"ack: expected 1 frame, got {len(frames)}")
                ack = wire.decode_ack(frames[0])
            except wire.WireError as exc:
                with self._lock:
                    self._n["bad_acks"] += 1
                if self._log_once(f"bad ack {exc.code}"):
                    logger.warning("publisher %s: undecodable frame from the matcher ignored (%s: %s); "
                                   "logged once per cause", self._endpoint, exc.code, exc)
                continue
            self._handle_ack(ack)

    def _handle_ack(self, ack: wire.Ack) -> None:
        with self._lock:
            item = self._in_flight.pop(ack.message_id, None)
            if item is None:  # a duplicate after a retransmission, or already dropped
                return
            self._ids.discard(ack.message_id)
            self._last_ack = time.monotonic()
            recovered, self._warned_unreachable = self._warned_unreachable, False
            latency = self._last_ack - item.published_at
            if ack.ok:
                self._n["acked"] += 1
                self._latencies.append(latency)
            else:
                self._n["rejected"] += 1
        if recovered:
            logger.info("publisher: the matcher at %s acknowledges again", self._endpoint)
        if not ack.ok:
            if self._log_once(f"status {ack.status}"):
                logger.warning("publisher %s: the matcher rejected message %s with status %r; not retried "
                               "(logged once per status)", self._endpoint, ack.message_id, ack.status)
        elif self._on_ack is not None:
            try:
                self._on_ack(ack.message_id, latency)
            except Exception:
                if self._log_once("on_ack"):
                    logger.exception("publisher %s: the on_ack callback failed (logged once)", self._endpoint)

    def _log_once(self, key: str) -> bool:
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        return first
