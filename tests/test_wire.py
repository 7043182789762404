"""Wire codec tests: property-based round trips, a generated corpus of malformed buffers, bit-flip fuzzing.

Every malformed input must be rejected with a :class:`WireError` (the right subclass where the case
determines it), never another exception and never slowly.
"""

from __future__ import annotations

import ast
import functools
import inspect
import pickle
import random
import struct
import time
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keyreid_stream import wire
from keyreid_stream.contracts import (
    MAX_DESCRIPTOR_DIM,
    MAX_ID_CHARS,
    MAX_MESSAGE_TIME,
    MAX_THUMBNAIL_BYTES,
    Heartbeat,
    TrackletMessage,
)
from keyreid_stream.wire import (
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    WIRE_MAGIC,
    BadMagic,
    InvalidField,
    MalformedHeader,
    NonFiniteDescriptor,
    OversizedMessage,
    TruncatedMessage,
    UnsupportedSchemaVersion,
    WireError,
)

pytestmark = pytest.mark.timeout(60)


def fuzz(max_examples: int) -> settings:
    """Fixed, deterministic hypothesis settings; no example database is written into the repository."""
    return settings(deadline=None, database=None, derandomize=True, max_examples=max_examples,
                    suppress_health_check=list(HealthCheck))


Case = tuple[str, bytes, type[WireError]]
MF, IF, OV = MalformedHeader, InvalidField, OversizedMessage
TR, UV = TruncatedMessage, UnsupportedSchemaVersion

# ------------------------------------------------------------------------------------ strategies

camera_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=MAX_ID_CHARS)
finite = st.floats(allow_nan=False, allow_infinity=False)
times = st.floats(0.0, MAX_MESSAGE_TIME)
f32_values = st.floats(width=32, allow_nan=False, allow_infinity=False)
descriptors = st.integers(1, 300).flatmap(lambda d: hnp.arrays(np.float32, d, elements=f32_values))
thumbnails = st.none() | st.binary(min_size=0, max_size=600).map(lambda b: b"\xff\xd8\xff" + b + b"\xff\xd9")
message_ids = st.uuids().map(lambda u: u.hex)
counters = st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,63}", fullmatch=True), st.integers(0, 2**63 - 1), max_size=32
)


@st.composite
def tracklet_messages(draw: st.DrawFn) -> TrackletMessage:
    start, end = sorted((draw(times), draw(times)))
    return TrackletMessage(
        camera_id=draw(camera_ids), track_id=draw(st.integers(0, 2**63 - 1)), start_time=start, end_time=end,
        num_frames=draw(st.integers(1, 2**63 - 1)), descriptor=draw(descriptors),
        model_name=draw(names), model_version=draw(names),
        message_id=draw(message_ids), thumbnail_jpeg=draw(thumbnails),
    )


@st.composite
def heartbeats(draw: st.DrawFn) -> Heartbeat:
    return Heartbeat(
        camera_id=draw(camera_ids), timestamp=draw(times), sequence=draw(st.integers(0, 2**63 - 1)),
        counters=draw(counters), message_id=draw(message_ids),
    )


# --------------------------------------------------------------------------------------- samples


def sample_messages() -> dict[str, TrackletMessage | Heartbeat]:
    mid = "00112233445566778899aabbccddeeff"
    return {
        "tracklet_full": TrackletMessage(
            "cam-1", 42, 100.0, 102.5, 60, np.linspace(-1, 1, 64, dtype=np.float32), "keyreid", "1.0", mid,
            b"\xff\xd8\xff\xe0" + bytes(range(96)) + b"\xff\xd9"),
        "tracklet_small": TrackletMessage("c", 0, 0.0, 0.0, 1, np.ones(1, np.float32), "m", "v", mid),
        "heartbeat_full": Heartbeat("cam-1", 1700000000.5, 7, {"frames": 1000, "dropped": 3, "t": 9}, mid),
        "heartbeat_empty": Heartbeat("c", 0.0, 0, {}, mid),
    }


SAMPLES = {name: wire.encode(m) for name, m in sample_messages().items()}


def split(buffer: bytes) -> tuple[dict[str, Any], bytes]:
    header_len = struct.unpack_from("<I", buffer, 4)[0]
    return msgpack.unpackb(buffer[8 : 8 + header_len]), buffer[8 + header_len :]


def assemble(header: Any, body: bytes = b"", header_len: int | None = None) -> bytes:
    """A buffer from a header (a value to pack, or raw bytes), a body and optionally a lying length."""
    packed = header if isinstance(header, bytes) else msgpack.packb(header, use_bin_type=True)
    return WIRE_MAGIC + struct.pack("<I", len(packed) if header_len is None else header_len) + packed + body


# ------------------------------------------------------------------------------- round trips


def check_round_trip(message: TrackletMessage | Heartbeat) -> None:
    buffer = wire.encode(message)
    assert buffer.startswith(WIRE_MAGIC) and len(buffer) <= MAX_MESSAGE_BYTES
    for view in (buffer, bytearray(buffer), memoryview(buffer)):
        decoded = wire.decode(view)
        assert type(decoded) is type(message) and decoded == message
    assert wire.encode(decoded) == buffer  # deterministic, canonical encoding


@fuzz(150)
@given(tracklet_messages())
def test_round_trip_tracklet(message: TrackletMessage) -> None:
    check_round_trip(message)


@fuzz(150)
@given(heartbeats())
def test_round_trip_heartbeat(message: Heartbeat) -> None:
    check_round_trip(message)


def test_round_trip_at_the_limits() -> None:
    big = TrackletMessage(
        "c" * MAX_ID_CHARS, 2**63 - 1, 0.0, MAX_MESSAGE_TIME, 2**63 - 1,
        np.full(MAX_DESCRIPTOR_DIM, -3.5, np.float32), "~" * MAX_ID_CHARS, "v" * MAX_ID_CHARS,
        thumbnail_jpeg=b"\xff\xd8\xff" + b"\x00" * (MAX_THUMBNAIL_BYTES - 5) + b"\xff\xd9",
    )
    check_round_trip(big)
    keys = [f"{'k' * (MAX_ID_CHARS - 2)}{i:02d}" for i in range(32)]
    check_round_trip(Heartbeat("h" * MAX_ID_CHARS, MAX_MESSAGE_TIME, 2**63 - 1, dict.fromkeys(keys, 2**63 - 1)))


def test_decoded_descriptor_is_a_copy_of_the_buffer() -> None:
    buffer = bytearray(SAMPLES["tracklet_full"])
    message = wire.decode(buffer)
    assert isinstance(message, TrackletMessage)
    before = message.descriptor.copy()
    buffer[-200:-100] = b"\x00" * 100  # a transport reusing its receive buffer
    assert np.array_equal(message.descriptor, before)
    assert not np.shares_memory(message.descriptor, np.frombuffer(buffer, np.uint8))


def test_float_fields_accept_msgpack_ints_and_float32() -> None:
    header, body = split(SAMPLES["tracklet_full"])
    decoded = wire.decode(assemble({**header, "start_time": 100, "end_time": 102}, body))
    assert isinstance(decoded, TrackletMessage) and (decoded.start_time, decoded.end_time) == (100.0, 102.0)
    single = msgpack.packb(header, use_bin_type=True, use_single_float=True)
    assert wire.decode(assemble(single, body)) == sample_messages()["tracklet_full"]


def test_encode_validates() -> None:
    source = np.ones(4, np.float32)
    message = TrackletMessage("c", 1, 0.0, 1.0, 1, source, "m", "v")
    source[2] = np.nan  # the producer mutated its buffer after building the message
    with pytest.raises(NonFiniteDescriptor) as info:
        wire.encode(message)
    assert info.value.code == "non_finite"
    for bad in (object(), None, b"bytes", {"kind": "tracklet"}):
        with pytest.raises(InvalidField):
            wire.encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "code"),
    [(TruncatedMessage, "truncated"), (BadMagic, "bad_magic"), (OversizedMessage, "oversized"),
     (MalformedHeader, "malformed_header"), (UnsupportedSchemaVersion, "schema_version"),
     (InvalidField, "invalid_field"), (NonFiniteDescriptor, "non_finite")],
)
def test_error_codes(cls: type[WireError], code: str) -> None:
    assert issubclass(cls, WireError) and issubclass(cls, ValueError) and cls.code == code
    assert cls("x").code == code


def test_constants() -> None:
    assert (WIRE_MAGIC, MAX_MESSAGE_BYTES, MAX_HEADER_BYTES) == (b"KRSW", 1 << 20, 4096)


# ----------------------------------------------------------------------------- malformed corpus

WRONG_TYPES: list[Any] = [None, True, False, "x", b"x", 1.5, 7, -3, [], {}, [1], msgpack.ExtType(1, b"x")]
EXPECTED_TYPES: dict[str, tuple[type, ...]] = {
    "schema_version": (int,), "kind": (str,), "message_id": (str,), "camera_id": (str,), "track_id": (int,),
    "start_time": (int, float), "end_time": (int, float), "num_frames": (int,), "model_name": (str,),
    "model_version": (str,), "descriptor_dtype": (str,), "descriptor_shape": (list,),
    "descriptor_nbytes": (int,), "thumbnail_nbytes": (int,), "timestamp": (int, float), "sequence": (int,),
    "counters": (dict,),
}
EXTRA_WRONG = {
    "descriptor_shape": [["8"], [True], [1.0], [[1]], [None], 64, "64"],
    "counters": [{"a": "1"}, {"a": True}, {"a": 1.0}, {"a": None}, {b"a": 1}, {"a": [1]}, [["a", 1]]],
}
NAN, INF = float("nan"), float("inf")
BAD_STR = {
    "message_id": ["", "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 31 + "\n"],
    "camera_id": ["", "a b", "x" * 65, "\u00e9", "cam\n", "cam/1"],
    "model_name": ["", "m" * 65, "a\nb", "\x7f", "\x00", "\u00e9", "\u4e00"],
    "model_version": ["", "v" * 65, "\t"],
}
COMMON_VALUES: dict[str, list[tuple[Any, type[WireError]]]] = {
    "schema_version": [(v, UV) for v in (0, 2, -1, 255, 2**64 - 1, -(2**63))],
    "kind": [(v, MF) for v in ("", "Tracklet", "HEARTBEAT", "tracklet\x00", "message")],
    **{key: [(v, IF) for v in values] for key, values in BAD_STR.items()},
}
TRACKLET_VALUES: dict[str, list[tuple[Any, type[WireError]]]] = {
    "track_id": [(v, IF) for v in (-1, 2**63, 2**64 - 1, -(2**63))],
    "start_time": [(v, IF) for v in (NAN, INF, -INF, 1e300, -0.5)],
    "end_time": [(v, IF) for v in (NAN, INF, -INF, -1e300, MAX_MESSAGE_TIME + 1)],
    "num_frames": [(v, IF) for v in (0, -1, 2**63)],
    "descriptor_dtype": [(v, IF) for v in ("<f8", ">f4", "float32", "<i4", "", "f4", "<f2", "|u1")],
    # the full sample has a 64-value descriptor (256 bytes) and a 102-byte thumbnail
    "descriptor_shape": [*[(v, IF) for v in ([], [64, 1], [65], [63], [0], [-1], [16, 4])],
                         ([MAX_DESCRIPTOR_DIM + 1], OV), ([2**63], OV)],
    "descriptor_nbytes": [*[(v, IF) for v in (0, -1, 255, 260)], (4 * MAX_DESCRIPTOR_DIM + 1, OV),
                          (2**63, OV)],
    "thumbnail_nbytes": [*[(v, IF) for v in (-1, 0, 101)], (103, TR), (MAX_THUMBNAIL_BYTES + 1, OV),
                         (2**64 - 1, OV)],
}
HEARTBEAT_VALUES: dict[str, list[tuple[Any, type[WireError]]]] = {
    "timestamp": [(v, IF) for v in (NAN, INF, -INF, 1e300, -1.0)],
    "sequence": [(v, IF) for v in (-1, 2**63, 2**64 - 1)],
    "counters": [(v, IF) for v in ({"1a": 1}, {"": 1}, {"k" * 65: 1}, {"a": -1}, {"a": 2**63}, {"a-b": 1},
                                   {f"c{i}": i for i in range(33)})],
}


def truncations() -> list[Case]:
    return [(f"{name}[:{n}]", buf[:n], TR) for name, buf in SAMPLES.items() for n in range(len(buf))]


def bad_magic() -> list[Case]:
    buf = SAMPLES["heartbeat_full"]
    cases = [(f"magic[{i}]={v}", buf[:i] + bytes([v]) + buf[i + 1 :], BadMagic)
             for i in range(4) for v in range(0, 256, 7) if v != buf[i]]
    others = [b"KRSX", b"krsw", b"\x00" * 4, b"PK\x03\x04", b"\x80\x04\x95\x00", b'{"a"', b"WSRK"]
    return cases + [(f"magic={m!r}", m + buf[4:], BadMagic) for m in others] + [("one byte", b"X", BadMagic)]


def header_length_lies() -> list[Case]:
    cases: list[Case] = []
    for name, buf in SAMPLES.items():
        real = struct.unpack_from("<I", buf, 4)[0]
        lies = [*range(real), real + 1, real + 9, len(buf) - 8, len(buf) - 7, 4096, 4097, 2**31, 2**32 - 1]
        for lie in lies:
            if lie == real:
                continue
            expected = OV if lie > MAX_HEADER_BYTES else TR if 8 + lie > len(buf) else MF
            cases.append((f"{name} header_len={lie}", buf[:4] + struct.pack("<I", lie) + buf[8:], expected))
    return cases


def garbage_headers() -> list[Case]:
    raw = [b"\xc1", b"\xc1" * 9, b"\x90", b"\x80", b"\xc0", b"\x01", b"\xa3abc", b"\xc4\x01x",
           b"\xd4\x01\x00", b"\xd6\xff\x00\x00\x00\x01", b"\x91" * 3000, b"\x81\xa1a" * 1000 + b"\x01",
           b"\xdf\xff\xff\xff\xff",
           b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\xa2\xff\xfe",
           b"\x81\x01\x01", b"\x81\xc0\x01", b"\x81\x91\x01\x01", b"\x82\xa1a\x01", b"\x81\xa1a\x01\xc0",
           b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", msgpack.packb([1, 2, 3]), msgpack.packb("header")]
    rng = random.Random(7)
    raw += [b"\xc1" + rng.randbytes(rng.randrange(1, 64)) for _ in range(40)]
    header, _ = split(SAMPLES["heartbeat_full"])
    packer = msgpack.Packer()
    dup = packer.pack_map_pairs([*header.items(), ("camera_id", "other")])
    raw += [dup, packer.pack_map_pairs([("schema_version", 1), ("schema_version", 1), *header.items()][1:])]
    return [(f"garbage header {i}", assemble(r), MF) for i, r in enumerate(raw) if len(r) <= MAX_HEADER_BYTES]


def field_cases(name: str, values: dict[str, list[tuple[Any, type[WireError]]]]) -> list[Case]:
    header, body = split(SAMPLES[name])
    cases: list[Case] = []
    for key in header:
        accepted = EXPECTED_TYPES[key]
        wrong = [v for v in WRONG_TYPES if not (isinstance(v, accepted) and not isinstance(v, bool))]
        wrong += EXTRA_WRONG.get(key, [])
        if key == "schema_version":
            wrong = [v for v in wrong if not isinstance(v, int) or isinstance(v, bool)]
        cases += [(f"{name}.{key}={v!r}", assemble({**header, key: v}, body), MF) for v in wrong]
        good = values.get(key, []) + COMMON_VALUES.get(key, [])
        cases += [(f"{name}.{key}={v!r:.40}", assemble({**header, key: v}, body), exp) for v, exp in good]
        removed = {k: v for k, v in header.items() if k != key}
        cases.append((f"{name} missing {key}", assemble(removed, body), MF))
    extras = [("extra", 1), ("Camera_id", "x"), ("", 0), ("descriptor", "x"), (b"kind", "tracklet")]
    cases += [(f"{name} unknown {k!r}", assemble({**header, k: v}, body), MF) for k, v in extras]
    many = {**header, **{f"x{i}": i for i in range(60)}}
    cases += [(f"{name} 60 unknown keys", assemble(many, body), MF)]
    future = {"schema_version": 2, "kind": "next", "new": [1]}
    cases += [(f"{name} future schema", assemble(future, body), UV)]
    return cases


def descriptor_cases() -> list[Case]:
    cases: list[Case] = []
    patterns = [0x7FC00000, 0x7F800001, 0xFFC00000, 0x7F800000, 0xFF800000, 0x7FFFFFFF, 0xFFFFFFFF]
    for name in ("tracklet_full", "tracklet_small"):
        buf = SAMPLES[name]
        header, body = split(buf)
        start = len(buf) - len(body)
        dim = header["descriptor_shape"][0]
        for pos in sorted({0, dim // 2, dim - 1}):
            for bits in patterns:
                at = start + 4 * pos
                cases.append((f"{name} descriptor[{pos}]={bits:#x}",
                               buf[:at] + struct.pack("<I", bits) + buf[at + 4 :], NonFiniteDescriptor))
    header, body = split(SAMPLES["tracklet_full"])
    desc, thumb = body[:256], body[256:]
    for label, new_thumb in [("first byte", b"\x00" + thumb[1:]), ("last byte", thumb[:-1] + b"\x00"),
                             ("too short", b"\xff\xd8\xff\xd9"), ("png", b"\x89PNG\r\n\x1a\n" + thumb)]:
        cases.append((f"thumbnail {label}", assemble({**header, "thumbnail_nbytes": len(new_thumb)},
                                                     desc + new_thumb), IF))
    return cases


def trailing_and_oversized() -> list[Case]:
    cases: list[Case] = []
    for name, buf in SAMPLES.items():
        for extra in (b"\x00", b"\x00" * 3, b"\xff\xd9", b"x" * 100, SAMPLES["heartbeat_empty"], buf):
            cases.append((f"{name} + {len(extra)} trailing bytes", buf + extra, IF))
        padded = buf + b"\x00" * (MAX_MESSAGE_BYTES + 1 - len(buf))
        cases.append((f"{name} padded past the limit", padded, OV))
    cases += [("zeros past the limit", b"\x00" * (MAX_MESSAGE_BYTES + 1), OV),
              ("2 MiB", WIRE_MAGIC + b"\x00" * (2 << 20), OV)]
    return cases


def pickle_payloads() -> list[Case]:
    objs = [*sample_messages().values(), split(SAMPLES["tracklet_full"])[0], [1, 2], "x", None]
    return [(f"pickle p{p} {type(o).__name__}", pickle.dumps(o, protocol=p), BadMagic)
            for o in objs for p in range(pickle.HIGHEST_PROTOCOL + 1)]


@functools.lru_cache(maxsize=1)
def malformed_corpus() -> dict[str, list[Case]]:
    return {
        "truncations": truncations(), "bad_magic": bad_magic(), "header_length_lies": header_length_lies(),
        "garbage_headers": garbage_headers(),
        "tracklet_fields": field_cases("tracklet_full", TRACKLET_VALUES),
        "heartbeat_fields": field_cases("heartbeat_full", HEARTBEAT_VALUES),
        "descriptor_and_thumbnail": descriptor_cases(), "trailing_and_oversized": trailing_and_oversized(),
        "pickle": pickle_payloads(),
    }


def outcome(data: Any) -> tuple[str, WireError | None]:
    """'accepted', 'rejected' (with the error) or 'escaped: ...' for any other exception."""
    try:
        wire.decode(data)
    except WireError as exc:
        return "rejected", exc
    except BaseException as exc:
        return f"escaped {type(exc).__name__}: {exc}", None
    return "accepted", None


def test_malformed_corpus_size() -> None:
    counts = {name: len(cases) for name, cases in malformed_corpus().items()}
    assert all(counts.values()), counts
    assert sum(counts.values()) >= 1000, counts


@pytest.mark.parametrize("category", list(malformed_corpus()))
def test_malformed_input_rejected(category: str) -> None:
    failures, slowest = [], 0.0
    for label, data, expected in malformed_corpus()[category]:
        started = time.perf_counter()
        result, error = outcome(data)
        slowest = max(slowest, time.perf_counter() - started)
        if error is None or not isinstance(error, expected) or error.code != expected.code:
            got = f"{type(error).__name__} ({error})" if error is not None else result
            failures.append(f"{label}: expected {expected.__name__}, got {got}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:20])
    assert slowest < 0.5


@pytest.mark.parametrize("data", ["KRSW", None, 42, [1, 2], np.zeros(3, np.float64)[::2], bytearray()])
def test_decode_non_bytes_inputs(data: Any) -> None:
    assert outcome(data)[0] == "rejected"


def test_decode_accepts_other_byte_buffers() -> None:
    buf = SAMPLES["tracklet_full"]
    assert wire.decode(np.frombuffer(buf, np.uint8)) == sample_messages()["tracklet_full"]
    strided = np.zeros(2 * len(buf), np.uint8)
    strided[::2] = np.frombuffer(buf, np.uint8)
    assert wire.decode(memoryview(strided[::2])) == sample_messages()["tracklet_full"]


@fuzz(400)
@given(st.binary(max_size=2048))
def test_random_bytes_rejected(data: bytes) -> None:
    assert outcome(data)[0] == "rejected"


@fuzz(300)
@given(st.integers(0, 2**32 - 1) | st.integers(0, 300), st.binary(max_size=1024))
def test_random_bytes_after_magic_rejected(header_len: int, rest: bytes) -> None:
    assert outcome(WIRE_MAGIC + struct.pack("<I", header_len) + rest)[0] == "rejected"


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=16), inner, max_size=5),
    max_leaves=20,
)


@fuzz(300)
@given(msgpack_values, st.binary(max_size=64))
def test_random_msgpack_headers_rejected(header: Any, body: bytes) -> None:
    assert outcome(assemble(msgpack.packb(header, use_bin_type=True), body))[0] == "rejected"


@fuzz(200)
@given(st.sampled_from(list(SAMPLES)), st.data())
def test_random_header_field_values(name: str, data: st.DataObject) -> None:
    header, body = split(SAMPLES[name])
    key = data.draw(st.sampled_from(sorted(header)))
    result, _ = outcome(assemble({**header, key: data.draw(msgpack_values)}, body))
    assert result in ("accepted", "rejected")


@pytest.mark.parametrize("name", list(SAMPLES))
def test_bit_flips_decode_or_reject(name: str) -> None:
    rng = random.Random(name)
    original = SAMPLES[name]
    accepted = 0
    for _ in range(600):
        buf = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(8 * len(buf))
            buf[bit // 8] ^= 1 << (bit % 8)
        try:
            message = wire.decode(bytes(buf))
        except WireError:
            continue
        accepted += 1
        assert isinstance(message, (TrackletMessage, Heartbeat))
        assert wire.decode(wire.encode(message)) == message
    assert accepted < 600


# ------------------------------------------------------------------------------------- no pickle


def test_pickle_payload_rejected_with_bad_magic() -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        payload = pickle.dumps(sample_messages()["tracklet_full"], protocol=protocol)
        with pytest.raises(BadMagic) as info:
            wire.decode(payload)
        assert info.value.code == "bad_magic"


def test_codec_never_uses_pickle() -> None:
    tree = ast.parse(inspect.getsource(wire))
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    imported = {alias.name.split(".")[0] for node in imports for alias in node.names}
    imported |= {n.module.split(".")[0] for n in imports if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
    for buf in SAMPLES.values():
        assert buf.startswith(WIRE_MAGIC) and b"\x80\x04\x95" not in buf[:16]


# ------------------------------------------------------------------------------------------- acks

ACK_ID = "00112233445566778899aabbccddeeff"


@pytest.mark.parametrize("status", ["ok", "invalid_field", "non_finite", "a", "0", "z" * 32, "db_full_2"])
def test_ack_round_trip(status: str) -> None:
    frame = wire.encode_ack(ACK_ID, status)
    assert frame == wire.ACK_MAGIC + ACK_ID.encode() + status.encode() and len(frame) <= wire.MAX_ACK_BYTES
    for view in (frame, bytearray(frame), memoryview(frame), np.frombuffer(frame, np.uint8)):
        ack = wire.decode_ack(view)
        assert ack == wire.Ack(ACK_ID, status) and ack.ok == (status == "ok")
    assert wire.encode_ack(ACK_ID) == b"KRSA" + ACK_ID.encode() + b"ok"


def test_ack_is_frozen_and_exported() -> None:
    with pytest.raises(AttributeError):
        wire.decode_ack(wire.encode_ack(ACK_ID)).status = "x"  # type: ignore[misc]
    assert {"ACK_MAGIC", "Ack", "encode_ack", "decode_ack"} <= set(wire.__all__)
    assert (wire.ACK_MAGIC, wire.ACK_OK, wire.MAX_ACK_BYTES) == (b"KRSA", "ok", 68)


@pytest.mark.parametrize(
    ("message_id", "status"),
    [("", "ok"), (ACK_ID[:-1], "ok"), (ACK_ID + "0", "ok"), ("g" * 32, "ok"),
     ("\u00e9" * 32, "ok"), (None, "ok"), (ACK_ID, ""), (ACK_ID, "OK"), (ACK_ID, "a-b"), (ACK_ID, "x" * 33),
     (ACK_ID, "ok\n"), (ACK_ID, "\u00e9"), (ACK_ID, None), (ACK_ID, b"ok")],
)
def test_encode_ack_rejects(message_id: Any, status: Any) -> None:
    with pytest.raises(InvalidField):
        wire.encode_ack(message_id, status)


GOOD_ACK = wire.ACK_MAGIC + ACK_ID.encode() + b"ok"
MALFORMED_ACKS: list[tuple[str, Any, type[WireError]]] = [
    ("empty", b"", TR), ("magic only", b"KRSA", TR), ("partial magic", b"KRS", TR),
    ("no status", GOOD_ACK[:-2], TR), ("id of 30", wire.ACK_MAGIC + ACK_ID[:-2].encode() + b"ok", TR),
    ("id of 31", wire.ACK_MAGIC + ACK_ID[:-1].encode() + b"ok", IF),
    ("message magic", b"KRSW" + GOOD_ACK[4:], BadMagic),
    ("lowercase magic", b"krsa" + GOOD_ACK[4:], BadMagic),
    ("wire message", SAMPLES["heartbeat_empty"], BadMagic), ("pickle", pickle.dumps(GOOD_ACK), BadMagic),
    ("one byte", b"X", BadMagic),
    ("non-hex id", wire.ACK_MAGIC + b"g" * 32 + b"ok", IF), ("uppercase status", GOOD_ACK[:-2] + b"OK", IF),
    ("dash in status", GOOD_ACK + b"-x", IF), ("newline", GOOD_ACK + b"\n", IF),
    ("nul", GOOD_ACK + b"\0", IF),
    ("non-ascii status", GOOD_ACK[:-2] + "\u00e9".encode(), IF), ("latin-1", GOOD_ACK + b"\xff", IF),
    ("status of 33", GOOD_ACK[:-2] + b"x" * 33, OV), ("2 MiB", wire.ACK_MAGIC + b"0" * (2 << 20), OV),
    ("str", GOOD_ACK.decode(), IF), ("None", None, IF), ("int", 42, IF), ("list", [1, 2], IF),
]


@pytest.mark.parametrize(("label", "data", "expected"), MALFORMED_ACKS, ids=[c[0] for c in MALFORMED_ACKS])
def test_malformed_ack_rejected(label: str, data: Any, expected: type[WireError]) -> None:
    with pytest.raises(WireError) as info:
        wire.decode_ack(data)
    assert type(info.value) is expected and info.value.code == expected.code


@fuzz(300)
@given(st.binary(max_size=80) | st.binary(max_size=70).map(lambda b: wire.ACK_MAGIC + b))
def test_random_ack_bytes_decode_or_reject(data: bytes) -> None:
    try:
        ack = wire.decode_ack(data)
    except WireError:
        return
    assert wire.encode_ack(ack.message_id, ack.status) == data


def test_peek_message_id_of_rejected_messages() -> None:
    header, body = split(SAMPLES["tracklet_full"])
    mid = header["message_id"]
    for name, buffer in SAMPLES.items():  # a heartbeat is never answered
        assert wire.peek_message_id(buffer) == (None if name.startswith("heartbeat") else mid), name
    readable = {
        "future schema": assemble({**header, "schema_version": 2}, body),
        "unknown key": assemble({**header, "extra": 1}, body),
        "truncated body": SAMPLES["tracklet_full"][:-10],
        "non-finite": assemble(header, struct.pack("<f", float("nan")) + body[4:]),
        "uppercase id": assemble({**header, "message_id": mid.upper()}, body),
    }
    for name, buffer in readable.items():
        with pytest.raises(WireError):
            wire.decode(buffer)
        assert wire.peek_message_id(buffer) in (mid, mid.upper()), name
    unreadable = [b"", b"KRSW", pickle.dumps(header), SAMPLES["tracklet_full"][:40], None, 42, "KRSW",
                  assemble({**header, "kind": "heartbeat"}, body), assemble({**header, "message_id": 7}),
                  assemble([mid]), assemble(b"\xc1"), WIRE_MAGIC + struct.pack("<I", 2**31) + b"x"]
    assert [wire.peek_message_id(data) for data in unreadable] == [None] * len(unreadable)


@fuzz(200)
@given(st.binary(max_size=300).map(lambda b: WIRE_MAGIC + b))
def test_peek_message_id_never_raises(data: bytes) -> None:
    result = wire.peek_message_id(data)
    assert result is None or (isinstance(result, str) and len(result) == 32)
