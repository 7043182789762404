"""The tracklet hash's schema against a real redis-server: what ingest writes is what the readers decode, and the
ingest script's keys and values sit where the schema's tuples say."""

from __future__ import annotations

import numpy as np
import pytest

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.schema import (
    ASSOCIATION_FIELDS,
    INGEST_ARGS,
    INGEST_KEYS,
    STORED_FIELDS,
    VIEW_FIELDS,
    Field,
    IngestStatus,
    decode_row,
    decode_tracklet,
    text,
)
from keyreid_stream.matcher.state.store import TrackletStore

KEYS = Keys("schema")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"


def message(camera: str = "cam1", track: int = 3, dim: int = 6) -> TrackletMessage:
    vector = np.random.default_rng(track).normal(size=dim).astype(np.float32)
    return TrackletMessage(camera_id=camera, track_id=track, start_time=10.25, end_time=14.5, num_frames=9,
                           descriptor=vector, model_name="m", model_version="2", thumbnail_jpeg=JPEG)


@pytest.fixture
def store(redis_client) -> TrackletStore:
    store = TrackletStore(redis_client, KEYS)
    store.check_layout()
    return store


@pytest.mark.parametrize(("status", "accepted"), [
    (IngestStatus.STORED, True), (IngestStatus.DUPLICATE, True),
    (IngestStatus.WRONG_DIM, False), (IngestStatus.ID_CONFLICT, False),
])
def test_ingest_statuses(status: IngestStatus, accepted: bool) -> None:
    assert status.accepted is accepted
    assert IngestStatus(str(status)) is status  # the script's replies and the ack codes are the values


@pytest.mark.parametrize(("value", "expected"), [(b"cam", "cam"), ("cam", "cam"), (None, None), (b"", "")])
def test_text(value: bytes | str | None, expected: str | None) -> None:
    assert text(value) == expected


def test_script_arguments_sit_where_the_tuples_say(store: TrackletStore) -> None:
    item = message()
    keys, args = store._ingest_keys(item), store._ingest_args(item, now=77.5)
    assert len(keys) == len(INGEST_KEYS) and len(args) == len(INGEST_ARGS)
    named_keys, named_args = dict(zip(INGEST_KEYS, keys)), dict(zip(INGEST_ARGS, args))
    assert named_keys["tracklet"] == KEYS.tracklet(item.message_id)
    assert named_keys["camera_tracklets"] == KEYS.camera_tracklets("cam1")
    assert named_keys["model_dim"] == KEYS.model_dim("m", "2")
    assert named_args["id"] == item.message_id and named_args[Field.CAMERA] == "cam1"
    assert named_args[Field.END] == "14.5" and named_args[Field.INGESTED] == "77.5"
    assert named_args[Field.SPACE] == "m@2/6" and named_args["thumbnail"] == JPEG
    script = store._ingest_script.script
    assert f"#KEYS / {len(INGEST_KEYS)}" in script and f"i * {len(INGEST_ARGS)}" in script


def test_what_ingest_writes_the_readers_decode(store: TrackletStore, redis_client) -> None:
    item = message()
    assert store.ingest([item], now=50.0) == [IngestStatus.STORED]
    stored = {k.decode() for k in redis_client.hkeys(KEYS.tracklet(item.message_id))}
    assert stored == {str(f) for f in Field} - {str(f) for f in ASSOCIATION_FIELDS}
    record = decode_tracklet(item.message_id, redis_client.hmget(KEYS.tracklet(item.message_id), STORED_FIELDS))
    assert record is not None and record.tracklet_id == item.message_id
    assert (record.camera_id, record.track_id, record.start_time, record.end_time, record.num_frames) == \
        ("cam1", 3, 10.25, 14.5, 9)
    assert record.space == "m@2/6" and record.identity is None and record.ingested_at == 50.0
    assert np.allclose(record.descriptor, item.descriptor / np.linalg.norm(item.descriptor))
    row = decode_row(VIEW_FIELDS, redis_client.hmget(KEYS.tracklet(item.message_id), VIEW_FIELDS))
    assert row is not None and set(row) == {str(f) for f in VIEW_FIELDS}
    assert row["thumb"] == "1" and row["dim"] == "6" and row["identity"] is None


def test_a_missing_hash_decodes_to_none(redis_client) -> None:
    assert decode_tracklet("gone", redis_client.hmget(KEYS.tracklet("gone"), STORED_FIELDS)) is None
    assert decode_row(VIEW_FIELDS, redis_client.hmget(KEYS.tracklet("gone"), VIEW_FIELDS)) is None
