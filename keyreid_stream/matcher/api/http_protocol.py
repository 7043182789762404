"""uvicorn's HTTP/1.1 protocol (h11) with a header-read timeout, so that half-sent requests cannot hold connections.

uvicorn times out idle keep-alive connections, but not a request whose head (request line and headers) is still
arriving: a client that sends half a request and then nothing, or one byte a minute, keeps its connection (and a
slot of the server) for as long as it likes. :func:`header_timeout_protocol` returns the protocol class that
closes a connection whose request head is not complete ``seconds`` after the connection opened or after its
first byte arrived (for a later request on a kept-alive connection). Its own answer to a request that is not
HTTP (400, sent before any application code runs) also says ``X-Content-Type-Options: nosniff``, like every answer
of the API.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import STATUS_PHRASES, H11Protocol

__all__ = ["header_timeout_protocol"]

logger = logging.getLogger(__name__)


class _HeaderTimeoutProtocol(H11Protocol):
    header_timeout_s = 10.0

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head is complete (or the connection failed)
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"x-content-type-options", b"nosniff"),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=STATUS_PHRASES[400]),
                      h11.Data(data=msg.encode("ascii")), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            logger.debug("query API: closing a connection from %s whose request head took over %.1f s",
                         self.client, self.header_timeout_s)
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request head is not complete within ``seconds``."""
    if not seconds > 0:
        raise ValueError(f"the header timeout must be > 0 seconds, got {seconds}")
    return type("HeaderTimeoutH11Protocol", (_HeaderTimeoutProtocol,), {"header_timeout_s": float(seconds)})
