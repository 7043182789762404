"""What the worker tests share besides fixtures (on the import path through pytest's ``pythonpath`` setting)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import zmq

from keyreid_stream.contracts import Heartbeat, TrackletMessage
from keyreid_stream.wire import decode, encode_ack

__all__ = ["Matcher", "Policy", "Reply", "ack_all"]

Reply = bytes | tuple[bytes, ...]
Policy = Callable[[TrackletMessage, int], list[Reply]]


def ack_all(message: TrackletMessage, copy: int) -> list[Reply]:
    """The matcher's answer to every arrival: its acknowledgement."""
    return [encode_ack(message.message_id)]


class Matcher(threading.Thread):
    """The one stand-in matcher: a ROUTER socket on 127.0.0.1 that decodes what arrives and answers each tracklet
    message as ``policy(message, copy)`` says (copy = 1 for the first arrival of that id; a reply is a payload
    or a tuple of frames, for multipart garbage). By default it acknowledges everything, as the matcher does.

    ``messages``: each tracklet message once, in order of first arrival; ``arrivals``: the message ids of every
    arrival, duplicates kept; ``heartbeats``: every heartbeat. Binds a random port, ``port``, or ``endpoint``
    (retrying while a previous socket still holds it); call :meth:`start`, then :meth:`close`.
    """

    def __init__(self, context: zmq.Context, port: int | None = None, *, endpoint: str | None = None,
                 policy: Policy = ack_all) -> None:
        super().__init__(daemon=True)
        self.policy = policy
        self.socket = context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if endpoint is None and port is None:
            port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            self._bind(endpoint or f"tcp://127.0.0.1:{port}")
            port = int(self.socket.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.port = port
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.messages: list[TrackletMessage] = []
        self.arrivals: list[str] = []
        self.heartbeats: list[Heartbeat] = []
        self.halt = threading.Event()

    def _bind(self, endpoint: str) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                self.socket.bind(endpoint)
                return
            except zmq.ZMQError as exc:  # the previous socket's port may not be released yet
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    self.socket.close(linger=0)
                    raise
                time.sleep(0.02)

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.socket.poll(20):
                continue
            identity, payload = self.socket.recv_multipart()
            message = decode(payload)
            if isinstance(message, Heartbeat):
                self.heartbeats.append(message)
                continue
            self.arrivals.append(message.message_id)
            if all(m.message_id != message.message_id for m in self.messages):
                self.messages.append(message)
            for reply in self.policy(message, self.arrivals.count(message.message_id)):
                self.socket.send_multipart([identity, *(reply if isinstance(reply, tuple) else (reply,))])

    def close(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(5)
        self.socket.close(linger=0)
