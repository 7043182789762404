"""The workers' MOT files relabelled with global identities: the numbering rules, a populated matcher state behind a
secured API (merges, unlinked tracks, paging), and a real matcher fed over ZeroMQ, exported and evaluated with
``keyreid-stream export-mot`` and ``keyreid-stream eval-mtmc``."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
import redis
import zmq

from keyreid_stream.cli import main
from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.mot import MotTracks, read_mot, write_mot
from keyreid_stream.query.client import QueryClient
from keyreid_stream.query.motexport import UNLINKED_BASE, assign_tracks, export_global_ids, identity_numbers
from keyreid_stream.redis_server import free_port
from keyreid_stream.workers.publisher import Publisher

from matcher_harness import matcher_config, running_matcher, wait_until

API_TOKEN = "s3cret-token"  # conftest.API_TOKEN

# ------------------------------------------------------------------------------------------ numbering rules


@pytest.mark.parametrize(("identities", "expected"), [
    (["g42", "g7"], {"g42": 42, "g7": 7}),
    (["g1", "h1", "g2"], {"g2": 2, "g1": 3, "h1": 4}),  # 1 is ambiguous: numbered after the largest
    (["alice", "g5", "bob"], {"g5": 5, "alice": 6, "bob": 7}),
    (["2x", "x2y"], {"2x": 1, "x2y": 2}),  # digits not at the end: enumerated
    ([], {}),
])
def test_identity_numbers(identities: list[str], expected: dict[str, int]) -> None:
    assert identity_numbers(identities) == expected


def test_track_takes_the_identity_with_most_frames() -> None:
    found = {("a", 1): {"g3": 40, "g7": 10}, ("a", 2): {"g9": 10, "g4": 10}, ("b", 5): {"g7": 30}}
    tracks = [("b", 6), ("a", 2), ("b", 5), ("a", 1), ("a", 3)]
    result = {(t.camera, t.track_id): (t.number, t.identity) for t in assign_tracks(tracks, found)}
    assert result == {("a", 1): (3, "g3"), ("a", 2): (4, "g4"),  # a tie goes to the smaller number
                      ("b", 5): (7, "g7"), ("a", 3): (UNLINKED_BASE, None), ("b", 6): (UNLINKED_BASE + 1, None)}
    big = assign_tracks([("a", 1), ("a", 2)], {("a", 1): {f"g{UNLINKED_BASE + 5}": 3}})
    assert [t.number for t in big] == [UNLINKED_BASE + 5, UNLINKED_BASE + 6]  # unlinked ids stay distinct


# ------------------------------------------------------------------------------------------ populated state

# (camera, track) -> identity in the populated scenario (tests/matcher/conftest.py): g5 was merged into g4 and
# p11's tracklet was never associated.
SCENARIO_IDENTITIES = {
    ("cam-a", 1): "g1", ("cam-a", 3): "g1", ("cam-a", 9): "g3", ("cam-a", 11): "g4", ("cam-a", 20): "g6",
    ("cam-a", 23): "g9", ("cam-b", 7): "g1", ("cam-b", 2): "g2", ("cam-b", 12): "g4", ("cam-b", 21): "g7",
    ("cam-b", 24): "g10", ("cam-c", 4): "g2", ("cam-c", 5): "g2", ("cam-c", 6): "g3", ("cam-c", 13): "g4",
    ("cam-c", 14): "g4", ("cam-c", 22): "g8", ("cam-c", 25): "g11",
}


def _worker_files(folder: Path, tracks: dict[str, list[int]], frames: int = 3) -> None:
    """Worker-style MOT files: each track on ``frames`` frames, in its own place."""
    for camera, ids in tracks.items():
        rows = [(f, t, 50.0 * k, 10.0, 40.0, 80.0) for k, t in enumerate(ids) for f in range(1, frames + 1)]
        array = np.asarray(rows, dtype=np.float64)
        write_mot(folder / f"{camera}.txt", MotTracks(array[:, 0], array[:, 1], array[:, 2:6], np.full(len(rows), .9)))


def test_export_follows_merges_and_pages(secured_server, tmp_path: Path) -> None:
    tracks: dict[str, list[int]] = {"cam-a": [26], "cam-b": [999], "cam-c": []}  # p11's track; a track never published
    for camera, track in SCENARIO_IDENTITIES:
        tracks[camera].append(track)
    _worker_files(tmp_path / "tracks", tracks)
    client = QueryClient(secured_server.url, token=API_TOKEN)
    report = export_global_ids(tmp_path / "tracks", client, tmp_path / "out", page_size=2)
    with (tmp_path / "out" / "tracks.csv").open() as handle:
        rows = {(r["camera"], int(r["track_id"])): r for r in csv.DictReader(handle)}
    assert {key: r["identity"] for key, r in rows.items() if r["identity"]} == SCENARIO_IDENTITIES
    assert {key: int(r["number"]) for key, r in rows.items() if not r["identity"]} == {
        ("cam-a", 26): UNLINKED_BASE, ("cam-b", 999): UNLINKED_BASE + 1}
    assert rows[("cam-a", 1)]["segments"] == "g1:21"  # its two tracklets: 10 + 11 frames
    assert (report.tracks, report.linked_tracks, report.unlinked_tracks, report.identities) == (20, 18, 2, 10)
    relabelled = read_mot(tmp_path / "out" / "cam-c.txt")
    assert sorted(set(relabelled.ids.tolist())) == [2, 3, 4, 8, 11]
    with (tmp_path / "out" / "identities.csv").open() as handle:
        assert next(csv.reader(handle)) == ["number", "identity"]


def test_export_needs_the_token(secured_server, tmp_path: Path, capsys) -> None:
    _worker_files(tmp_path / "tracks", {"cam-a": [1]})
    base = ["export-mot", "--url", secured_server.url, "--tracks", str(tmp_path / "tracks"), "--out",
            str(tmp_path / "out"), "--page-size", "50"]  # the scenario's API answers at most 50 per page
    assert main([*base, "--token-env", "NO_SUCH_TOKEN_VARIABLE"]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    (tmp_path / "token").write_text(API_TOKEN + "\n")
    assert main([*base, "--token-file", str(tmp_path / "token")]) == 0
    assert "1 linked to 1 identities" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ a real matcher

T0 = 1_700_000_000.0
FPS = 10.0


def _message(camera: str, track: int, first: int, last: int, axis: int) -> TrackletMessage:
    descriptor = np.zeros(16, np.float32)
    descriptor[axis] = 1.0
    return TrackletMessage(camera, track, T0 + first / FPS, T0 + last / FPS, last - first + 1, descriptor,
                           "testnet", "1")


def _decided(client: redis.Redis, keys: Keys, count: int) -> bool:
    last = client.xrevrange(keys.stream, count=1)
    return client.zcard(keys.by_ingest) >= count and bool(last) and client.get(keys.cursor) == last[0][0]


def _mot(path: Path, rows: list[tuple[int, int, int]]) -> None:
    """(frame, id, place) rows; places are 100 px apart."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f},{i},{100 * p},10,40,80,1,1,1\n" for f, i, p in rows))


def test_real_matcher_export_and_mtmc_evaluation(redis_client, zmq_context: zmq.Context, tmp_path: Path,
                                                 capsys) -> None:
    """Person 1 crosses from north (track 11) to south (track 21) with the same look: linked. Person 2 (north 12,
    south 22) looks different on south: two identities. Person 3 (north 13) was too short to be published.
    MTMC: IDTP = 20 (person 1) + 10 (person 2's best id) + 3 (person 3) = 33 of 43 -> IDF1 66/86."""
    kwargs = redis_client.connection_pool.connection_kwargs
    port = free_port()
    config = matcher_config(f"redis://{kwargs['host']}:{kwargs['port']}/0", http=f"127.0.0.1:{port}")
    frames = {"north": {11: (1, 10), 12: (1, 10), 13: (3, 5)}, "south": {21: (21, 30), 22: (21, 30)}}
    messages = [_message("north", 11, 1, 10, 0), _message("north", 12, 1, 10, 1),
                _message("south", 21, 21, 30, 0), _message("south", 22, 21, 30, 2)]
    with running_matcher(config) as matcher:
        publisher = Publisher(zmq_context, matcher.endpoint, ack_timeout_s=1.0, heartbeat_interval_s=0.5).start()
        for message in messages:
            publisher.publish(message)
        wait_until(lambda: publisher.stats().acked == len(messages), 30, "acks")
        publisher.close(1.0)
        wait_until(lambda: _decided(redis_client, Keys(), len(messages)), 30, "association")
        for camera, tracks in frames.items():
            _mot(tmp_path / "tracks" / f"{camera}.txt",
                 [(f, t, t % 10) for t, (a, b) in tracks.items() for f in range(a, b + 1)])
        started = time.monotonic()
        code = main(["export-mot", "--url", f"http://127.0.0.1:{port}", "--tracks", str(tmp_path / "tracks"),
                     "--out", str(tmp_path / "pred")])
        assert code == 0 and time.monotonic() - started < 10
    out = capsys.readouterr().out
    assert "4 linked to 3 identities, 1 unlinked" in out
    people = {"north": {11: 1, 12: 2, 13: 3}, "south": {21: 1, 22: 2}}
    for camera, tracks in frames.items():
        _mot(tmp_path / "gt" / f"{camera}.txt",
             [(f, people[camera][t], t % 10) for t, (a, b) in tracks.items() for f in range(a, b + 1)])
    north, south = read_mot(tmp_path / "pred" / "north.txt"), read_mot(tmp_path / "pred" / "south.txt")
    assert set(north.ids[north.frames == 1].tolist()) & set(south.ids.tolist())  # person 1: one id on both
    assert main(["eval-mtmc", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"),
                 "--json", str(tmp_path / "scores.json")]) == 0
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert [c["identity"]["idf1"] for c in scores["cameras"]] == [1.0, 1.0]
    assert scores["mtmc"] == {"idf1": pytest.approx(66 / 86), "idp": pytest.approx(33 / 43),
                              "idr": pytest.approx(33 / 43), "idtp": 33, "idfp": 10, "idfn": 10}
