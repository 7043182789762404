"""The shared test fixtures themselves: ZeroMQ sockets on 127.0.0.1 carrying real wire messages."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.wire import WireError, decode, encode


def message(track_id: int) -> TrackletMessage:
    return TrackletMessage(camera_id="cam1", track_id=track_id, start_time=10.0, end_time=12.5, num_frames=25,
                           descriptor=np.linspace(-1, 1, 32, dtype=np.float32), model_name="test",
                           model_version="0")


def test_push_pull_is_loopback_tcp(zmq_push_pull) -> None:
    _push, _pull, endpoint = zmq_push_pull
    assert endpoint.startswith("tcp://127.0.0.1:")


def test_wire_messages_cross_real_sockets(zmq_push_pull) -> None:
    push, pull, _ = zmq_push_pull
    sent = [message(i) for i in range(20)] + [Heartbeat(camera_id="cam1", timestamp=1.0, sequence=3)]
    for item in sent:
        push.send(encode(item))
    received = [decode(pull.recv()) for _ in sent]
    assert received == sent


def test_garbage_between_messages_is_rejected_and_the_rest_still_arrives(zmq_push_pull) -> None:
    push, pull, _ = zmq_push_pull
    good = message(1)
    push.send(b"\x80\x04\x95garbage")  # a pickle-looking payload
    push.send(encode(good)[:-3])  # truncated
    push.send(encode(good))
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(decode(pull.recv()))
        except WireError as exc:
            outcomes.append(exc.code)
    assert outcomes == ["bad_magic", "truncated", good]


def test_receive_times_out_instead_of_hanging(zmq_push_pull) -> None:
    _push, pull, _ = zmq_push_pull
    pull.setsockopt(zmq.RCVTIMEO, 50)
    with pytest.raises(zmq.Again):
        pull.recv()


def test_context_fixture_closes_its_sockets(zmq_context) -> None:
    sock = zmq_context.socket(zmq.PUB)
    sock.bind("tcp://127.0.0.1:*")
    assert not sock.closed  # destroyed by the fixture at teardown (linger 0), even if the test fails
