"""What the worker tests share besides fixtures (importable: conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import threading

import zmq

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.wire import decode, encode_ack

__all__ = ["Matcher"]


class Matcher(threading.Thread):
    """A ROUTER socket that decodes what arrives and acknowledges every tracklet message (the wire protocol)."""

    def __init__(self, context: zmq.Context, port: int | None = None) -> None:
        super().__init__(daemon=True)
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if port is None:
            port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.socket.bind(f"tcp://127.0.0.1:{port}")
        self.port = port
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.messages: list[TrackletMessage] = []
        self.heartbeats: list[Heartbeat] = []
        self.halt = threading.Event()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self.halt.is_set():
            if not poller.poll(50):
                continue
            identity, payload = self.socket.recv_multipart()
            message = decode(payload)
            if isinstance(message, Heartbeat):
                self.heartbeats.append(message)
                continue
            if all(m.message_id != message.message_id for m in self.messages):
                self.messages.append(message)
            self.socket.send_multipart([identity, encode_ack(message.message_id)])

    def close(self) -> None:
        self.halt.set()
        self.join(5)
        self.socket.close(linger=0)
