"""A real HTTP server on 127.0.0.1 serving bytes the test makes, with the misbehaviours a fetcher must survive.

Routes: ``file`` (honours ``Range``), ``drop`` (the first reply stops half way and the connection closes; later
replies are whole), ``no-range`` (ignores ``Range``), ``stall`` (headers, a few bytes, then silence), ``redirect``
(302 to another route) and anything unknown: 404. ``requests`` logs (path, Range header) of every request.
"""

from __future__ import annotations

import http.server
import threading
from dataclasses import dataclass, field


@dataclass
class Route:
    mode: str
    body: bytes = b""
    location: str = ""
    served: int = 0


@dataclass
class FileServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    base: str = ""

    def add(self, path: str, body: bytes = b"", mode: str = "file", location: str = "") -> str:
        self.routes[path] = Route(mode, body, location)
        return self.base + path


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        files = self.server.files
        files.requests.append((self.path, self.headers.get("Range")))
        route = files.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        route.served += 1
        if route.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", files.base + route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, start = route.body, 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and route.mode != "no-range":
            start = int(wanted[6:].split("-")[0])
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        rest = body[start:]
        if route.mode == "drop" and route.served == 1:
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if route.mode == "stall":
            self.wfile.write(rest[:10])
            self.wfile.flush()
            files.stop.wait(30)
            return
        self.wfile.write(rest)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    files: FileServer


def start_file_server() -> tuple[FileServer, _Server, threading.Thread]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.files = FileServer(base=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-files", daemon=True)
    thread.start()
    return server.files, server, thread


def stop_file_server(server: _Server, thread: threading.Thread) -> None:
    server.files.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(5)
