"""Ingest's edge cases, one rule each (docs/protocol.md), over a real ROUTER/DEALER pair and a real Redis: copies of
one id within and across batches, ids and times the contract refuses, heartbeats that fail validation, multipart
frames, thumbnails that do not decode; and ``received = stored + duplicates + rejected`` throughout."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import msgpack
import numpy as np
import pytest
import zmq

from keyreid_stream import wire
from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.matcher.ingest import Ingestor, bind_router
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.store import TrackletStore

T0 = 1_700_000_000.0
YEAR_2100 = 4_102_444_800.0  # contracts.MAX_MESSAGE_TIME


def message(number: int, value: float = 1.0, **changes: object) -> TrackletMessage:
    fields = {"camera_id": "cam-a", "track_id": number, "start_time": T0, "end_time": T0 + 1, "num_frames": 3,
              "descriptor": np.full(8, value, np.float32), "model_name": "m", "model_version": "1",
              "message_id": f"{number:032x}"}
    return TrackletMessage(**{**fields, **changes})  # type: ignore[arg-type]


def rewritten(buffer: bytes, body: bytes | None = None, **header_changes: object) -> bytes:
    """The encoded message with header values replaced (bypassing the contract, as a foreign producer could)."""
    length = struct.unpack_from("<I", buffer, 4)[0]
    header = {**msgpack.unpackb(buffer[8: 8 + length]), **header_changes}
    packed = msgpack.packb(header, use_bin_type=True)
    return wire.WIRE_MAGIC + struct.pack("<I", len(packed)) + packed + (buffer[8 + length:] if body is None else body)


def jpeg(width: int = 8, height: int = 16) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))
    assert ok
    return data.tobytes()


@dataclass
class Link:
    """A DEALER connected to an Ingestor's ROUTER; :meth:`batch` delivers frames as exactly one batch."""

    dealer: zmq.Socket
    router: zmq.Socket
    ingestor: Ingestor
    store: TrackletStore

    def batch(self, *messages: bytes | list[bytes]) -> list[wire.Ack]:
        for frames in messages:
            self.dealer.send_multipart(frames if isinstance(frames, list) else [frames])
        received = []
        while len(received) < len(messages):
            assert self.router.poll(5000), "the ROUTER received nothing"
            received.append(self.router.recv_multipart())
        self.ingestor.process(received, threading.Event())
        acks = []
        while self.dealer.poll(300):
            acks.append(wire.decode_ack(self.dealer.recv()))
        return acks

    def counters(self) -> dict[str, int]:
        raw = self.store.client.hgetall(self.store.keys.stats)
        return {name.decode(): int(value) for name, value in raw.items()}

    def stored(self, message_id: str) -> dict[bytes, bytes]:
        return self.store.client.hgetall(self.store.keys.tracklet(message_id))


@pytest.fixture
def link(redis_client, zmq_context) -> Iterator[Link]:
    router = bind_router(zmq_context, "tcp://127.0.0.1:*")
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
    store = TrackletStore(redis_client, Keys())
    store.check_layout()
    try:
        yield Link(dealer, router, Ingestor(router, store), store)
    finally:
        dealer.close(0)
        router.close(0)


def balanced(counters: dict[str, int]) -> bool:
    rejected = sum(value for name, value in counters.items() if name.startswith("rejected:"))
    return counters.get("received", 0) == counters.get("stored", 0) + counters.get("duplicates", 0) + rejected


def test_the_same_message_twice_in_one_batch_is_one_tracklet_and_one_duplicate(link: Link) -> None:
    data = wire.encode(message(1))
    acks = link.batch(data, data)
    assert [(a.message_id, a.status) for a in acks] == [(f"{1:032x}", "ok")] * 2
    assert link.counters() == {"received": 2, "stored": 1, "duplicates": 1}
    assert link.batch(data) == [wire.Ack(f"{1:032x}", "ok")]  # and once more in a later batch
    assert link.counters() == {"received": 3, "stored": 1, "duplicates": 2}
    assert link.store.client.xlen(link.store.keys.stream) == 1


@pytest.mark.parametrize("same_batch", [True, False])
def test_an_id_reused_with_other_content_keeps_the_first_copy(link: Link, same_batch: bool) -> None:
    first, second = wire.encode(message(2, 1.0)), wire.encode(message(2, -1.0))
    acks = link.batch(first, second) if same_batch else link.batch(first) + link.batch(second)
    assert [a.status for a in acks] == ["ok", "id_conflict"]
    assert np.frombuffer(link.stored(f"{2:032x}")[b"desc"], "<f4")[0] == 1.0
    assert link.counters() == {"received": 2, "stored": 1, "rejected:id_conflict": 1}


@pytest.mark.parametrize(("name", "frames", "code"), [
    ("uppercase id", [rewritten(wire.encode(message(3)), message_id="ABCDEF" + "0" * 26)], "invalid_field"),
    ("time beyond 2100", [rewritten(wire.encode(message(4)), start_time=1e300, end_time=1e300)], "invalid_field"),
    ("negative time", [rewritten(wire.encode(message(5)), start_time=-1.0)], "invalid_field"),
    ("non-ASCII model name", [rewritten(wire.encode(message(6)), model_name="mod\u00e8le")], "invalid_field"),
    ("model name of 65 characters", [rewritten(wire.encode(message(7)), model_name="m" * 65)], "invalid_field"),
    ("multipart", [wire.encode(message(8)), b"second part"], "multipart"),
    ("thumbnail that is not an image", [wire.encode(message(9, thumbnail_jpeg=b"\xff\xd8\xff" + b"x" * 40 +
                                                           b"\xff\xd9"))], "thumbnail"),
    ("thumbnail with a frame of 8000 x 8000", [wire.encode(message(
        10, thumbnail_jpeg=jpeg().replace(b"\xff\xc0\x00\x11\x08\x00\x10\x00\x08",
                                          b"\x00\xff\xc0\x00\x11\x08\x1f\x40\x1f\x40")))], "thumbnail"),
])
def test_a_rejected_tracklet_is_answered_by_its_id(link: Link, name: str, frames: list[bytes], code: str) -> None:
    message_id = msgpack.unpackb(frames[0][8: 8 + struct.unpack_from("<I", frames[0], 4)[0]])["message_id"]
    assert link.batch(frames) == [wire.Ack(message_id, code)], name
    assert link.counters() == {"received": 1, f"rejected:{code}": 1}
    assert not link.stored(message_id.lower())


def test_a_valid_thumbnail_is_stored(link: Link) -> None:
    thumbnail = jpeg()
    assert [a.status for a in link.batch(wire.encode(message(11, thumbnail_jpeg=thumbnail)))] == ["ok"]
    assert link.store.client.get(link.store.keys.thumbnail(f"{11:032x}")) == thumbnail


def test_times_at_the_bounds_are_stored(link: Link) -> None:
    edges = [message(12, start_time=0.0, end_time=0.0), message(13, start_time=T0, end_time=YEAR_2100)]
    assert [a.status for a in link.batch(*(wire.encode(m) for m in edges))] == ["ok", "ok"]


@pytest.mark.parametrize("changes", [{"timestamp": 1e300}, {"sequence": -1}, {"camera_id": "no spaces"},
                                     {"message_id": "F" * 32}, {"schema_version": 2}])
def test_a_heartbeat_that_fails_validation_is_never_acknowledged(link: Link, changes: dict) -> None:
    heartbeat = wire.encode(Heartbeat("cam-a", T0, 1, {"frames": 3}, message_id="e" * 32))
    assert link.batch(rewritten(heartbeat, **changes), [heartbeat, b"more"]) == []
    counters = link.counters()
    assert sum(value for name, value in counters.items() if name.startswith("rejected:")) == 2
    assert balanced(counters)


def test_received_is_stored_plus_duplicates_plus_rejected(link: Link) -> None:
    good, other = wire.encode(message(20)), wire.encode(message(21))
    heartbeat = wire.encode(Heartbeat("cam-a", T0, 1, message_id="e" * 32))
    link.batch(good, good, other, heartbeat, b"garbage", rewritten(good, start_time=-5.0), [good, b"x"])
    link.batch(other, wire.encode(message(21, 3.0)))
    counters = link.counters()
    assert counters["received"] == 8 and balanced(counters), counters
