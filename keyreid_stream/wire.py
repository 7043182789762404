"""Wire codec for :class:`TrackletMessage` and :class:`Heartbeat` (see ``docs/protocol.md``).

One self-contained buffer per message, all integers little-endian::

    offset 0   4 bytes   magic b"KRSW"
    offset 4   4 bytes   header length H (uint32)
    offset 8   H bytes   msgpack map: schema_version, kind, scalar fields, section lengths
    8 + H      ...       descriptor as raw "<f4" bytes, then the optional JPEG thumbnail bytes

The total length must equal ``8 + H`` plus the declared section lengths exactly. Nothing is ever pickled.
:func:`decode` raises only :class:`WireError` subclasses, whose ``code`` names the cause of a rejection.
The codec is transport-agnostic; the workers send one ZeroMQ frame per message.

The matcher acknowledges each stored tracklet message with an ack frame (:func:`encode_ack`)::

    b"KRSA" + message_id (32 hex ASCII, as sent) + status (1 to 32 ASCII chars of [a-z0-9_]; "ok" = stored)

A valid message id is lowercase; an ack may carry uppercase hex digits only to reject, by the id exactly as it
was sent, a message whose id broke that rule (so that its sender stops retrying it).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import msgpack
import numpy as np

from keyreid_stream.contracts import (
    MAX_DESCRIPTOR_DIM,
    MAX_THUMBNAIL_BYTES,
    SCHEMA_VERSION,
    ContractError,
    Heartbeat,
    TrackletMessage,
)

__all__ = [
    "ACK_MAGIC", "ACK_OK", "MAX_ACK_BYTES", "MAX_HEADER_BYTES", "MAX_MESSAGE_BYTES", "WIRE_MAGIC", "Ack",
    "BadMagic", "InvalidField", "MalformedHeader", "NonFiniteDescriptor", "OversizedMessage",
    "TruncatedMessage", "UnsupportedSchemaVersion", "WireError", "decode", "decode_ack", "encode",
    "encode_ack", "peek_message_id",
]

WIRE_MAGIC = b"KRSW"
MAX_MESSAGE_BYTES = 1 << 20
MAX_HEADER_BYTES = 4096
DESCRIPTOR_DTYPE = "<f4"
_PREFIX = struct.Struct("<4sI")
_KIND_TRACKLET = "tracklet"
_KIND_HEARTBEAT = "heartbeat"


class WireError(ValueError):
    """A buffer could not be encoded or decoded; ``code`` is a stable name of the cause."""

    code = "wire_error"


class TruncatedMessage(WireError):
    code = "truncated"


class BadMagic(WireError):
    code = "bad_magic"


class OversizedMessage(WireError):
    code = "oversized"


class MalformedHeader(WireError):
    code = "malformed_header"


class UnsupportedSchemaVersion(WireError):
    code = "schema_version"


class InvalidField(WireError):
    code = "invalid_field"


class NonFiniteDescriptor(WireError):
    code = "non_finite"


# Header keys and their msgpack types; float fields also accept msgpack ints.
_Check = Callable[[object], bool]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: object) -> bool:
    return isinstance(value, float) or _is_int(value)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_shape(value: object) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


def _is_counters(value: object) -> bool:
    return isinstance(value, dict) and all(_is_str(k) and _is_int(v) for k, v in value.items())


_COMMON_KEYS: dict[str, _Check] = {
    "schema_version": _is_int, "kind": _is_str, "message_id": _is_str, "camera_id": _is_str,
}
_TRACKLET_KEYS: dict[str, _Check] = {
    **_COMMON_KEYS, "track_id": _is_int, "start_time": _is_float, "end_time": _is_float,
    "num_frames": _is_int, "model_name": _is_str, "model_version": _is_str,
    "descriptor_dtype": _is_str, "descriptor_shape": _is_shape, "descriptor_nbytes": _is_int,
    "thumbnail_nbytes": _is_int,
}
_HEARTBEAT_KEYS: dict[str, _Check] = {
    **_COMMON_KEYS, "timestamp": _is_float, "sequence": _is_int, "counters": _is_counters,
}
_KEYS = {_KIND_TRACKLET: _TRACKLET_KEYS, _KIND_HEARTBEAT: _HEARTBEAT_KEYS}
_MAX_HEADER_ENTRIES = 64


# ---------------------------------------------------------------------------------------- encode


def encode(message: TrackletMessage | Heartbeat) -> bytes:
    """Serialize one message; raises :class:`WireError` subclasses when it cannot be sent."""
    if isinstance(message, TrackletMessage):
        header, sections = _tracklet_header(message)
    elif isinstance(message, Heartbeat):
        header, sections = _heartbeat_header(message), []
    else:
        raise InvalidField(f"message: expected TrackletMessage or Heartbeat, got {type(message).__name__}")
    packed = msgpack.packb(header, use_bin_type=True)
    if len(packed) > MAX_HEADER_BYTES:
        raise OversizedMessage(f"header: {len(packed)} bytes > {MAX_HEADER_BYTES}")
    total = _PREFIX.size + len(packed) + sum(len(s) for s in sections)
    if total > MAX_MESSAGE_BYTES:
        raise OversizedMessage(f"message: {total} bytes > {MAX_MESSAGE_BYTES}")
    return b"".join([_PREFIX.pack(WIRE_MAGIC, len(packed)), packed, *sections])


def _tracklet_header(message: TrackletMessage) -> tuple[dict[str, Any], list[bytes]]:
    # Every field was validated at construction and is immutable, except the descriptor's values: the array is a
    # read-only view of a producer-owned buffer that may have changed since, so that one check runs again.
    if not np.isfinite(message.descriptor).all():
        raise NonFiniteDescriptor("descriptor: NaN or Inf")
    descriptor = message.descriptor.astype(DESCRIPTOR_DTYPE, copy=False).tobytes()
    thumbnail = message.thumbnail_jpeg or b""
    header = {
        "schema_version": message.schema_version, "kind": _KIND_TRACKLET,
        "message_id": message.message_id, "camera_id": message.camera_id, "track_id": message.track_id,
        "start_time": message.start_time, "end_time": message.end_time, "num_frames": message.num_frames,
        "model_name": message.model_name, "model_version": message.model_version,
        "descriptor_dtype": DESCRIPTOR_DTYPE, "descriptor_shape": [int(message.descriptor.shape[0])],
        "descriptor_nbytes": len(descriptor), "thumbnail_nbytes": len(thumbnail),
    }
    return header, [descriptor, thumbnail]


def _heartbeat_header(message: Heartbeat) -> dict[str, Any]:
    return {
        "schema_version": message.schema_version, "kind": _KIND_HEARTBEAT,
        "message_id": message.message_id, "camera_id": message.camera_id,
        "timestamp": message.timestamp, "sequence": message.sequence, "counters": dict(message.counters),
    }


# ---------------------------------------------------------------------------------------- decode


def decode(buffer: bytes | bytearray | memoryview) -> TrackletMessage | Heartbeat:
    """Parse and validate one message. Raises only :class:`WireError` subclasses, for any input."""
    try:
        return _decode(_as_bytes_view(buffer))
    except WireError:
        raise
    except ContractError as exc:
        raise InvalidField(str(exc)) from exc
    except (RecursionError, MemoryError) as exc:
        raise MalformedHeader(f"unparseable message: {type(exc).__name__}") from exc
    except Exception as exc:  # any other failure is a codec bug; still report it as a rejection
        raise InvalidField(f"unexpected {type(exc).__name__}: {exc}") from exc


def _as_bytes_view(buffer: object) -> memoryview:
    try:
        view = memoryview(buffer)  # type: ignore[arg-type]
    except TypeError as exc:
        got = type(buffer).__name__
        raise InvalidField(f"buffer: expected bytes, bytearray or memoryview, got {got}") from exc
    if view.nbytes > MAX_MESSAGE_BYTES:
        raise OversizedMessage(f"message: {view.nbytes} bytes > {MAX_MESSAGE_BYTES}")
    if view.format == "B" and view.ndim == 1 and view.contiguous:
        return view
    try:
        return view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    except (TypeError, ValueError) as exc:
        raise InvalidField(f"buffer: not a plain byte buffer ({exc})") from exc


def _decode(view: memoryview) -> TrackletMessage | Heartbeat:
    size = view.nbytes
    if bytes(view[:4]) != WIRE_MAGIC[: min(size, 4)]:
        raise BadMagic(f"magic: expected {WIRE_MAGIC!r}, got {bytes(view[:4])!r}")
    if size < _PREFIX.size:
        raise TruncatedMessage(f"message: {size} bytes < {_PREFIX.size}-byte prefix")
    header_len = _PREFIX.unpack_from(view)[1]
    if header_len > MAX_HEADER_BYTES:
        raise OversizedMessage(f"header length: {header_len} > {MAX_HEADER_BYTES}")
    if _PREFIX.size + header_len > size:
        raise TruncatedMessage(f"header: needs {header_len} bytes, {size - _PREFIX.size} left")
    header = _unpack_header(view[_PREFIX.size : _PREFIX.size + header_len])
    body = view[_PREFIX.size + header_len :]
    if header["kind"] == _KIND_TRACKLET:
        return _decode_tracklet(header, body)
    if body.nbytes:
        raise InvalidField(f"heartbeat: {body.nbytes} trailing bytes")
    return Heartbeat(
        camera_id=header["camera_id"], timestamp=float(header["timestamp"]), sequence=header["sequence"],
        counters=header["counters"], message_id=header["message_id"], schema_version=SCHEMA_VERSION,
    )


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedHeader("header: duplicate map key")
    return result


def _unpack_header(raw: memoryview) -> dict[str, Any]:
    if raw.nbytes == 0:
        raise MalformedHeader("header: empty")
    try:
        header = msgpack.unpackb(
            raw, raw=False, strict_map_key=True, use_list=True, object_pairs_hook=_pairs_to_dict,
            max_str_len=MAX_HEADER_BYTES, max_bin_len=0,
            max_array_len=8, max_map_len=_MAX_HEADER_ENTRIES, max_ext_len=0,
        )
    except WireError:
        raise
    except Exception as exc:  # msgpack raises ValueError subclasses, UnicodeDecodeError, TypeError, ...
        raise MalformedHeader(f"header: not valid msgpack ({type(exc).__name__}: {exc})") from exc
    if not isinstance(header, dict):
        raise MalformedHeader(f"header: expected a map, got {type(header).__name__}")
    _check_header(header)
    return header


def _check_header(header: dict[Any, Any]) -> None:
    version = header.get("schema_version")
    if not _is_int(version):
        _malformed("schema_version", "int", version)
    if version != SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(f"schema_version: expected {SCHEMA_VERSION}, got {version}")
    kind = header.get("kind")
    if not isinstance(kind, str) or kind not in _KEYS:
        _malformed("kind", f"one of {sorted(_KEYS)}", kind)
    expected = _KEYS[kind]
    missing = sorted(k for k in expected if k not in header)
    unknown = sorted(repr(k) for k in header if k not in expected)
    if missing or unknown:
        raise MalformedHeader(f"header ({kind}): missing keys {missing}, unknown keys {unknown}")
    for key, check in expected.items():
        if not check(header[key]):
            _malformed(key, check.__name__.removeprefix("_is_"), header[key])


def _malformed(key: str, expected: str, value: object) -> NoReturn:
    shown = repr(value)[:60]
    raise MalformedHeader(f"header.{key}: expected {expected}, got {type(value).__name__} {shown}")


def _section_sizes(header: Mapping[str, Any]) -> tuple[int, int, int]:
    """Validate the declared section sizes (before touching the body): (dim, descriptor, thumbnail)."""
    dtype = header["descriptor_dtype"]
    if dtype != DESCRIPTOR_DTYPE:
        raise InvalidField(f"descriptor_dtype: expected {DESCRIPTOR_DTYPE!r}, got {dtype!r}")
    shape = header["descriptor_shape"]
    if len(shape) != 1 or shape[0] < 1:
        raise InvalidField(f"descriptor_shape: expected [D] with D >= 1, got {shape}")
    dim, nbytes, thumb = shape[0], header["descriptor_nbytes"], header["thumbnail_nbytes"]
    if dim > MAX_DESCRIPTOR_DIM or nbytes > 4 * MAX_DESCRIPTOR_DIM:
        raise OversizedMessage(f"descriptor: {dim} values / {nbytes} bytes > {MAX_DESCRIPTOR_DIM} values")
    if nbytes != 4 * dim:
        raise InvalidField(f"descriptor_nbytes: expected {4 * dim} for shape {shape}, got {nbytes}")
    if thumb > MAX_THUMBNAIL_BYTES:
        raise OversizedMessage(f"thumbnail_nbytes: {thumb} > {MAX_THUMBNAIL_BYTES}")
    if thumb < 0:
        raise InvalidField(f"thumbnail_nbytes: expected >= 0, got {thumb}")
    return dim, nbytes, thumb


def _decode_tracklet(header: Mapping[str, Any], body: memoryview) -> TrackletMessage:
    _, nbytes, thumb = _section_sizes(header)
    if nbytes + thumb > body.nbytes:
        raise TruncatedMessage(f"body: needs {nbytes + thumb} bytes, got {body.nbytes}")
    if nbytes + thumb < body.nbytes:
        raise InvalidField(f"body: {body.nbytes - nbytes - thumb} trailing bytes")
    descriptor = np.frombuffer(body[:nbytes], dtype=DESCRIPTOR_DTYPE).astype(np.float32)  # a copy
    if not np.isfinite(descriptor).all():
        raise NonFiniteDescriptor("descriptor: NaN or Inf")
    return TrackletMessage(
        camera_id=header["camera_id"], track_id=header["track_id"],
        start_time=float(header["start_time"]), end_time=float(header["end_time"]),
        num_frames=header["num_frames"], descriptor=descriptor, model_name=header["model_name"],
        model_version=header["model_version"], message_id=header["message_id"],
        thumbnail_jpeg=bytes(body[nbytes:]) if thumb else None, schema_version=SCHEMA_VERSION,
    )


# ------------------------------------------------------------------------------------------ acks

ACK_MAGIC = b"KRSA"
ACK_OK = "ok"
_ACK_ID_BYTES = 32
_ACK_MAX_STATUS = 32
MAX_ACK_BYTES = len(ACK_MAGIC) + _ACK_ID_BYTES + _ACK_MAX_STATUS
_ACK_MIN_BYTES = len(ACK_MAGIC) + _ACK_ID_BYTES + 1
_ACK_ID_RE = re.compile(rb"[0-9a-fA-F]{32}")
_ACK_STATUS_RE = re.compile(rb"[a-z0-9_]{1,32}")


@dataclass(frozen=True)
class Ack:
    """The matcher's answer to one tracklet message: ``status`` "ok" = stored, anything else = rejected."""

    message_id: str
    status: str

    @property
    def ok(self) -> bool:
        return self.status == ACK_OK


def encode_ack(message_id: str, status: str = ACK_OK) -> bytes:
    """The ack frame for ``message_id``; raises :class:`InvalidField` for a bad id or status."""
    if not isinstance(message_id, str) or not _ACK_ID_RE.fullmatch(message_id.encode("utf-8", "replace")):
        raise InvalidField(f"ack message_id: expected 32 hex chars, got {message_id!r:.60}")
    if not isinstance(status, str) or not _ACK_STATUS_RE.fullmatch(status.encode("utf-8", "replace")):
        raise InvalidField(f"ack status: expected 1 to 32 chars of [a-z0-9_], got {status!r:.60}")
    return ACK_MAGIC + message_id.encode("ascii") + status.encode("ascii")


def decode_ack(buffer: bytes | bytearray | memoryview) -> Ack:
    """Parse one ack frame. Raises only :class:`WireError` subclasses, for any input."""
    try:
        return _decode_ack(_as_bytes_view(buffer))
    except WireError:
        raise
    except Exception as exc:  # a codec bug; still report it as a rejection
        raise InvalidField(f"ack: unexpected {type(exc).__name__}: {exc}") from exc


def _decode_ack(view: memoryview) -> Ack:
    size = view.nbytes
    if bytes(view[:4]) != ACK_MAGIC[: min(size, 4)]:
        raise BadMagic(f"ack magic: expected {ACK_MAGIC!r}, got {bytes(view[:4])!r}")
    if size < _ACK_MIN_BYTES:
        raise TruncatedMessage(f"ack: {size} bytes < {_ACK_MIN_BYTES}")
    if size > MAX_ACK_BYTES:
        raise OversizedMessage(f"ack: {size} bytes > {MAX_ACK_BYTES}")
    raw_id, raw_status = bytes(view[4 : 4 + _ACK_ID_BYTES]), bytes(view[4 + _ACK_ID_BYTES :])
    if not _ACK_ID_RE.fullmatch(raw_id):
        raise InvalidField(f"ack message_id: expected 32 hex chars, got {raw_id!r}")
    if not _ACK_STATUS_RE.fullmatch(raw_status):
        raise InvalidField(f"ack status: expected 1 to 32 chars of [a-z0-9_], got {raw_status!r}")
    return Ack(raw_id.decode("ascii"), raw_status.decode("ascii"))


def peek_message_id(buffer: bytes | bytearray | memoryview) -> str | None:
    """Best effort: the ``message_id`` in the header of a message that :func:`decode` rejected.

    The receiver uses it to reject the message by id (``encode_ack(id, error.code)``) so that the sender stops
    retransmitting it: any str of 32 hex digits, lowercase or not, exactly as sent. None when no such id can be
    found, and for a heartbeat (``kind`` "heartbeat": heartbeats are never acknowledged); never raises.
    """
    try:
        view = _as_bytes_view(buffer)
        if view.nbytes < _PREFIX.size or bytes(view[:4]) != WIRE_MAGIC:
            return None
        header_len = _PREFIX.unpack_from(view)[1]
        if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > view.nbytes:
            return None
        header = msgpack.unpackb(
            view[_PREFIX.size : _PREFIX.size + header_len], raw=False, max_str_len=MAX_HEADER_BYTES,
            max_bin_len=0, max_array_len=8, max_map_len=_MAX_HEADER_ENTRIES, max_ext_len=0,
        )
        if not isinstance(header, dict) or header.get("kind") == _KIND_HEARTBEAT:
            return None
        message_id = header.get("message_id")
    except Exception:
        return None
    if isinstance(message_id, str) and _ACK_ID_RE.fullmatch(message_id.encode("utf-8", "replace")):
        return message_id
    return None
