"""The tracklet hash's schema: field names, encode and decode, ingest statuses, and the ingest script's arguments.

One module owns how a tracklet is stored (the key names are :class:`~keyreid_stream.matcher.state.keys.Keys`'s):
the store writes through :func:`encode_tracklet` and the ingest script, whose ``KEYS`` / ``ARGV`` positions are
generated from :data:`INGEST_KEYS` / :data:`INGEST_ARGS` (:func:`ingest_locals`), and every reader reads through
:func:`decode_tracklet`, :func:`decode_row` and :func:`text`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, cast, overload

import numpy as np

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.state.records import StoredTracklet, descriptor_space, normalize

__all__ = [
    "ASSOCIATION_FIELDS",
    "CONTENT_FIELDS",
    "INGEST_ARGS",
    "INGEST_KEYS",
    "STORED_FIELDS",
    "STREAM_ID",
    "VIEW_FIELDS",
    "Field",
    "IngestStatus",
    "decode_descriptor",
    "decode_row",
    "decode_tracklet",
    "encode_tracklet",
    "ingest_locals",
    "text",
    "texts",
]


class _TextEnum(str, Enum):
    """An enum of strings whose ``str()`` and ``format()`` are the value (``enum.StrEnum`` needs Python 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Field(_TextEnum):
    """The fields of a tracklet's hash (``Keys.tracklet``)."""

    CAMERA = "camera"
    TRACK = "track"
    START = "start"
    END = "end"
    FRAMES = "frames"
    MODEL = "model"
    VERSION = "version"
    SPACE = "space"
    DIM = "dim"
    DESC = "desc"  # the descriptor, little-endian float32
    INGESTED = "ingested"
    THUMB = "thumb"  # "1" when a thumbnail is stored (``Keys.thumbnail``), else "0"
    # written by association
    IDENTITY = "identity"
    DECISION = "decision"  # JSON: kind, score, matched, candidates, rejected, decided_at
    LINK_TO = "link_to"
    LINK_SCORE = "link_score"
    LINK_KIND = "link_kind"


class IngestStatus(_TextEnum):
    """What ingest did with one message; a rejection's value is also its ack code and its ``rejected:`` counter."""

    STORED = "stored"
    DUPLICATE = "duplicate"  # the same content under a stored id: counted, not stored again
    WRONG_DIM = "descriptor_dim"  # the descriptor's size differs from its model's
    ID_CONFLICT = "id_conflict"  # other content under a stored id: rejected, the first copy stays

    @property
    def accepted(self) -> bool:
        """Whether the sender may forget the message (it is stored)."""
        return self in (IngestStatus.STORED, IngestStatus.DUPLICATE)


# What makes two copies of a message the same (an id stored again with other content is an id_conflict).
CONTENT_FIELDS = (Field.CAMERA, Field.TRACK, Field.START, Field.END, Field.FRAMES, Field.MODEL, Field.VERSION,
                  Field.DESC)
# What association reads (StoredTracklet), in decode_tracklet's order.
STORED_FIELDS = (Field.CAMERA, Field.TRACK, Field.START, Field.END, Field.FRAMES, Field.SPACE, Field.DESC,
                 Field.IDENTITY, Field.INGESTED)
ASSOCIATION_FIELDS = (Field.IDENTITY, Field.DECISION, Field.LINK_TO, Field.LINK_SCORE, Field.LINK_KIND)
# What the query API shows (decode_row): everything but the descriptor.
VIEW_FIELDS = (Field.CAMERA, Field.TRACK, Field.START, Field.END, Field.FRAMES, Field.MODEL, Field.VERSION,
               Field.SPACE, Field.DIM, Field.INGESTED, Field.THUMB, *ASSOCIATION_FIELDS)

STREAM_ID = "id"  # the field of a stream entry (``Keys.stream``) that holds the stored tracklet's id

# The ingest script's arguments per message: its keys (Keys attribute or method names) and its values, the hash's
# fields as ingest writes them, with the message id first and the thumbnail's bytes last.
INGEST_KEYS = ("tracklet", "thumbnail", "by_end", "by_ingest", "camera_tracklets", "stream", "model_dim", "stats",
               "cameras")
INGEST_ARGS = ("id", Field.CAMERA.value, Field.TRACK.value, Field.START.value, Field.END.value, Field.FRAMES.value,
               Field.MODEL.value, Field.VERSION.value, Field.SPACE.value, Field.DIM.value, Field.DESC.value,
               Field.INGESTED.value, "thumbnail")


def ingest_locals(key_offset: str = "k", arg_offset: str = "a") -> str:
    """Lua ``local`` lines naming one message's keys (``key_<name>``) and values (``arg_<name>``), their
    ``KEYS`` / ``ARGV`` positions counted from the given offsets in the order of INGEST_KEYS / INGEST_ARGS."""
    lines = [f"local key_{name} = KEYS[{key_offset} + {n}]" for n, name in enumerate(INGEST_KEYS, 1)]
    lines += [f"local arg_{name} = ARGV[{arg_offset} + {n}]" for n, name in enumerate(INGEST_ARGS, 1)]
    return "\n".join(lines)


@overload
def text(value: None) -> None: ...
@overload
def text(value: bytes | str) -> str: ...
@overload
def text(value: object) -> str | None: ...
def text(value: object) -> str | None:
    """A Redis reply as text (redis-py returns bytes unless the client decodes)."""
    return value.decode() if isinstance(value, bytes) else cast("str | None", value)


def texts(values: Iterable[object]) -> list[str]:
    """Redis replies that are never nil (ids, members, stream entry ids) as text."""
    return [str(text(value)) for value in values]


def encode_tracklet(message: TrackletMessage, ingested_at: float, thumbnail: bytes) -> list[str | int | bytes]:
    """The ingest script's values for one message, in INGEST_ARGS order (``thumbnail``: b"" = none stored)."""
    dim = int(message.descriptor.shape[0])
    values: dict[str, str | int | bytes] = {
        "id": message.message_id, Field.CAMERA: message.camera_id, Field.TRACK: message.track_id,
        Field.START: repr(message.start_time), Field.END: repr(message.end_time), Field.FRAMES: message.num_frames,
        Field.MODEL: message.model_name, Field.VERSION: message.model_version,
        Field.SPACE: descriptor_space(message.model_name, message.model_version, dim), Field.DIM: dim,
        Field.DESC: message.descriptor.astype("<f4").tobytes(), Field.INGESTED: repr(ingested_at),
        "thumbnail": thumbnail}
    return [values[name] for name in INGEST_ARGS]


def decode_descriptor(raw: bytes) -> np.ndarray:
    """A stored descriptor, L2-normalised."""
    return normalize(np.frombuffer(raw, dtype="<f4"))


def decode_tracklet(tracklet_id: str, values: Sequence[Any]) -> StoredTracklet | None:
    """The reply to ``HMGET tracklet STORED_FIELDS`` as a StoredTracklet (None when the hash is gone)."""
    row = dict(zip(STORED_FIELDS, values))
    if row[Field.CAMERA] is None:
        return None
    return StoredTracklet(
        tracklet_id=tracklet_id, camera_id=str(text(row[Field.CAMERA])), track_id=int(row[Field.TRACK]),
        start_time=float(row[Field.START]), end_time=float(row[Field.END]), num_frames=int(row[Field.FRAMES]),
        space=str(text(row[Field.SPACE])), descriptor=decode_descriptor(row[Field.DESC]),
        identity=text(row[Field.IDENTITY]) or None, ingested_at=float(row[Field.INGESTED]))


def decode_row(fields: Sequence[str], values: Sequence[bytes | str | None]) -> dict[str, str | None] | None:
    """The reply to ``HMGET tracklet fields`` as text keyed by field name (None when the hash is gone)."""
    if not values or values[0] is None:
        return None
    return {str(name): text(value) for name, value in zip(fields, values)}
