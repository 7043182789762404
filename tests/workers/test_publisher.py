"""The worker's reliable publisher against a real ROUTER on 127.0.0.1 that stands in for the matcher
(``worker_harness.Matcher``)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import zmq

from keyreid_stream import wire
from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.redis_server import free_port
from keyreid_stream.workers import publisher as publisher_module
from keyreid_stream.workers.publisher import Publisher, PublisherStats

from worker_harness import Matcher, Policy, Reply, ack_all

pytestmark = [pytest.mark.zmq, pytest.mark.timeout(30)]

LOGGER = "keyreid_stream.workers.publisher"
@pytest.fixture
def endpoint() -> str:
    """A free TCP port on 127.0.0.1 (nothing bound yet)."""
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def receivers(zmq_context: zmq.Context, endpoint: str) -> Iterator[Callable[..., Matcher]]:
    """Start stand-in matchers on ``endpoint``; all closed at teardown."""
    started: list[Matcher] = []

    def start(policy: Policy = ack_all) -> Matcher:
        started.append(Matcher(zmq_context, endpoint=endpoint, policy=policy))
        started[-1].start()
        return started[-1]

    try:
        yield start
    finally:
        for receiver in started:
            receiver.close()


@pytest.fixture
def publishers(zmq_context: zmq.Context, endpoint: str) -> Iterator[Callable[..., Publisher]]:
    """Started publishers connected to ``endpoint``; all closed at teardown."""
    made: list[Publisher] = []

    def make(**kwargs: object) -> Publisher:
        kwargs.setdefault("ack_timeout_s", 0.3)
        made.append(Publisher(zmq_context, endpoint, **kwargs).start())  # type: ignore[arg-type]
        return made[-1]

    try:
        yield make
    finally:
        for publisher in made:
            publisher.close(flush_timeout_s=0)


def message(i: int) -> TrackletMessage:
    return TrackletMessage("cam-1", i, 0.0, 1.0, 1, np.full(8, i, np.float32), "keyreid", "1")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def publish_all(publisher: Publisher, n: int, start: int = 0) -> list[str]:
    messages = [message(i) for i in range(start, start + n)]
    for m in messages:
        publisher.publish(m)
    return [m.message_id for m in messages]


def test_each_message_delivered_once_and_acked(publishers, receivers) -> None:
    receiver = receivers()
    acks: list[tuple[str, float]] = []

    def on_ack(message_id: str, latency: float) -> None:
        assert publisher.stats().acked >= 1  # callbacks run without the publisher's lock held
        acks.append((message_id, latency))

    publisher = publishers(ack_timeout_s=3.0, on_ack=on_ack)
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.extend(publish_all(publisher, 50))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = publisher.close(flush_timeout_s=5)  # waits for the outstanding acks
    assert sorted(receiver.arrivals) == sorted(ids) and len(set(ids)) == 200
    assert (stats.published, stats.sent, stats.resent, stats.acked) == (200, 200, 0, 200)
    assert (stats.rejected, stats.dropped, stats.buffered, stats.in_flight, stats.bad_acks) == (0, 0, 0, 0, 0)
    assert stats.ack_latency_p50_s is not None and stats.ack_latency_p95_s is not None
    assert 0 <= stats.ack_latency_p50_s <= stats.ack_latency_p95_s < 3.0
    assert sorted(mid for mid, _ in acks) == sorted(ids) and all(latency >= 0 for _, latency in acks)


def test_matcher_down_at_start(publishers, receivers) -> None:
    publisher = publishers()
    ids = publish_all(publisher, 50)
    time.sleep(0.3)
    stats = publisher.stats()
    assert (stats.sent, stats.buffered, stats.in_flight) == (0, 50, 0)  # IMMEDIATE: nothing queued in ZeroMQ
    receiver = receivers()
    wait_until(lambda: publisher.stats().acked == 50)
    assert sorted(receiver.arrivals) == sorted(ids)


def test_overflow_while_down_drops_the_oldest(publishers, receivers, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    publisher = publishers(buffer_size=20)
    ids = publish_all(publisher, 25)
    stats = publisher.stats()
    assert (stats.published, stats.dropped, stats.buffered) == (25, 5, 20)
    receiver = receivers()
    wait_until(lambda: publisher.stats().acked == 20)
    assert sorted(receiver.arrivals) == sorted(ids[5:])
    warnings = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_drop_warnings_are_rate_limited(publishers, caplog, monkeypatch) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    monkeypatch.setattr(publisher_module, "DROP_WARNING_INTERVAL_S", 0.3)
    publisher = publishers(buffer_size=20)
    publish_all(publisher, 25)
    publish_all(publisher, 5, start=25)
    wait_until(lambda: len([r for r in caplog.records if "buffer full" in r.getMessage()]) == 2)
    time.sleep(0.4)
    warnings = [r.getMessage() for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(warnings) == 2 and "(1 dropped in total)" in warnings[0]
    assert "the 9 oldest" in warnings[1] and "(10 dropped in total)" in warnings[1]


def test_unacknowledged_messages_are_retransmitted(publishers, receivers) -> None:
    def ignore_first_copy_of_even(m: TrackletMessage, copy: int) -> list[Reply]:
        return [] if m.track_id % 2 == 0 and copy == 1 else [wire.encode_ack(m.message_id)]

    receiver = receivers(ignore_first_copy_of_even)
    publisher = publishers()
    ids = publish_all(publisher, 10)
    wait_until(lambda: publisher.stats().acked == 10)
    stats = publisher.stats()
    assert stats.resent >= 5 and stats.sent == 10 and stats.buffered == 0
    copies = Counter(receiver.arrivals)
    assert all(copies[mid] >= 2 for mid in ids[::2]) and set(copies) == set(ids)


def test_receiver_restart(publishers, receivers) -> None:
    stored: list[str] = []

    def store_20_then_crash(m: TrackletMessage, copy: int) -> list[Reply]:
        if len(stored) >= 20:  # received but never stored nor acknowledged
            return []
        stored.append(m.message_id)
        return [wire.encode_ack(m.message_id)]

    first = receivers(store_20_then_crash)
    publisher = publishers()
    ids = publish_all(publisher, 50)
    wait_until(lambda: len(first.arrivals) == 50)
    first.close()
    ids += publish_all(publisher, 50, start=50)  # while no matcher is up
    second = receivers()
    wait_until(lambda: publisher.stats().acked == 100)
    assert set(stored) | set(second.arrivals) == set(ids) and set(ids[20:50]) <= set(second.arrivals)
    assert publisher.stats().resent >= 30


def test_rejected_messages_are_not_retried(publishers, receivers, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def reject_odd(m: TrackletMessage, copy: int) -> list[Reply]:
        return [wire.encode_ack(m.message_id, "invalid_field" if m.track_id % 2 else "ok")]

    receiver = receivers(reject_odd)
    publisher = publishers()
    ids = publish_all(publisher, 10)
    wait_until(lambda: publisher.stats().buffered == 0)
    time.sleep(0.7)  # two ack timeouts
    stats = publisher.stats()
    assert (stats.acked, stats.rejected, stats.resent, stats.dropped) == (5, 5, 0, 0)
    assert sorted(receiver.arrivals) == sorted(ids)  # each exactly once
    assert len([r for r in caplog.records if "invalid_field" in r.getMessage()]) == 1


def test_heartbeats(publishers, receivers) -> None:
    sequence = iter(range(1000))

    def beat() -> list[Heartbeat]:
        n = next(sequence)
        return [Heartbeat("cam-1", time.time(), n, {"frames": 10 * n})]

    publisher = publishers(heartbeats=beat, heartbeat_interval_s=0.1)
    time.sleep(0.45)
    stats = publisher.stats()
    assert stats.heartbeats_sent == 0 and stats.heartbeats_skipped >= 2
    receiver = receivers()
    wait_until(lambda: len(receiver.heartbeats) >= 3)
    final = publisher.close()
    wait_until(lambda: len(receiver.heartbeats) == final.heartbeats_sent)  # the last batch at close arrives
    sequences = [h.sequence for h in receiver.heartbeats]
    assert sequences == sorted(sequences) and sequences[0] >= 2
    assert all(h.counters == {"frames": 10 * h.sequence} for h in receiver.heartbeats)
    assert final.heartbeats_skipped + final.heartbeats_sent == sequences[-1] + 1


def test_close_without_receiver_gives_up_in_time(publishers, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    publisher = publishers()
    publish_all(publisher, 10)
    started = time.monotonic()
    stats = publisher.close(flush_timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 1.0
    assert (stats.dropped, stats.buffered, stats.acked) == (10, 0, 0)
    warnings = [r.getMessage() for r in caplog.records if "counted as dropped" in r.getMessage()]
    assert len(warnings) == 1 and " 10 unacknowledged" in warnings[0]
    assert publisher.close() == stats  # idempotent


def test_garbage_from_the_matcher_is_counted(publishers, receivers) -> None:
    def garbage_then_ack(m: TrackletMessage, copy: int) -> list[Reply]:
        bad_status = wire.ACK_MAGIC + m.message_id.encode() + b"OK"
        return [b"junk", (b"two", b"frames"), bad_status, wire.encode(m), wire.encode_ack(m.message_id)]

    receivers(garbage_then_ack)
    publisher = publishers()
    publish_all(publisher, 10)
    wait_until(lambda: publisher.stats().acked == 10)
    stats = publisher.stats()
    assert stats.bad_acks == 40 and stats.buffered == 0 and stats.rejected == 0


def test_api_misuse(zmq_context: zmq.Context, endpoint: str) -> None:
    publisher = Publisher(zmq_context, endpoint).start()
    with pytest.raises(RuntimeError):
        publisher.start()
    with pytest.raises(TypeError):
        publisher.publish(Heartbeat("cam-1", 0.0, 0))  # type: ignore[arg-type]
    source = np.ones(4, np.float32)
    broken = TrackletMessage("cam-1", 1, 0.0, 1.0, 1, source, "k", "1")
    source[0] = np.nan  # the producer changed the descriptor after building the message
    with pytest.raises(wire.NonFiniteDescriptor):
        publisher.publish(broken)
    first = message(1)
    publisher.publish(first)
    with pytest.raises(ValueError):
        publisher.publish(first)
    stats = publisher.close(flush_timeout_s=0)
    assert isinstance(stats, PublisherStats) and (stats.published, stats.dropped) == (1, 1)
    with pytest.raises(RuntimeError):
        publisher.publish(message(2))
    with pytest.raises(RuntimeError):
        publisher.start()
    with pytest.raises(zmq.ZMQError):
        Publisher(zmq_context, "tcp://no-such-transport").start()
    with pytest.raises(ValueError):
        Publisher(zmq_context, endpoint, buffer_size=0)


def test_unreachable_matcher_is_warned_once_with_its_address(publishers, receivers, endpoint, caplog) -> None:
    """Nothing listening: one warning naming the address, no connection; then a matcher appears: connected,
    everything acknowledged, one line that it answers again, and no second warning."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    publisher = publishers(unreachable_warning_s=0.5)
    publish_all(publisher, 5)
    assert not publisher.wait_connected(1.2) and not publisher.connected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"the matcher at {endpoint} looks unreachable" in warnings[0] and "no connection" in warnings[0]
    time.sleep(0.6)  # still nothing: still one warning
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    receivers()
    assert publisher.wait_connected(5.0) and publisher.connected
    wait_until(lambda: publisher.stats().acked == 5)
    assert any("acknowledges again" in r.getMessage() for r in caplog.records)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_connected_peer_that_never_acknowledges_is_named(publishers, receivers, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receivers(lambda message, copy: [])
    publisher = publishers(unreachable_warning_s=0.5)
    assert publisher.wait_connected(5.0)
    publish_all(publisher, 3)
    wait_until(lambda: any("looks unreachable" in r.getMessage() for r in caplog.records), 5.0)
    [warning] = [r.getMessage() for r in caplog.records if "looks unreachable" in r.getMessage()]
    assert "connected, but it acknowledges nothing" in warning


@pytest.mark.parametrize("transport", ["tcp", "ipc", "inproc"])
def test_wait_connected_on_every_transport(zmq_context: zmq.Context, endpoint: str, tmp_path, transport: str) -> None:
    """tcp and ipc report the handshake; inproc has none, and a heartbeat ZeroMQ takes tells instead."""
    where = {"tcp": endpoint, "ipc": f"ipc://{tmp_path}/matcher.sock", "inproc": "inproc://matcher"}[transport]
    router = zmq_context.socket(zmq.ROUTER)
    router.bind(where)
    publisher = Publisher(zmq_context, where, heartbeat_interval_s=0.1,
                          heartbeats=lambda: [Heartbeat("cam-1", 0.0, 1, {})]).start()
    try:
        assert publisher.wait_connected(5.0) and publisher.connected
    finally:
        publisher.close(flush_timeout_s=0)
        router.close(linger=0)
