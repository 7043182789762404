"""The matcher's HTTP query API (FastAPI, served by uvicorn in a background thread): identities, tracklets,
links, statistics, and search by descriptor or image crop. ``GET /docs`` shows the OpenAPI document.

Every answer is JSON shaped by a dataclass of :mod:`keyreid_stream.matcher.api.answers`. Every error is JSON too,
``{"error": "<code>", "detail": "<message>"}``, never a stack trace:

====  ==========================  ===============================================================================
400   ``bad_request``             a malformed id, parameter, JSON body or descriptor (FastAPI's validation errors
                                  included: this API answers 400, not 422, for every bad input)
401   ``unauthorized``            a token is configured and the request has no ``Authorization: Bearer <token>``
                                  or a wrong one (with ``WWW-Authenticate: Bearer``)
404   ``not_found``               no such identity, tracklet, thumbnail, path, or descriptor space to search in
413   ``payload_too_large``       the body is larger than ``max_body_bytes`` (declared or actually sent)
415   ``unsupported_media_type``  image search with a body that is not ``image/jpeg`` or ``image/png``
501   ``not_implemented``         image search on a matcher started without the re-ID model
503   ``redis_unavailable``       Redis does not answer (``/health`` answers 503 with its report when degraded)
500   ``internal_error``          anything unexpected (logged with its traceback)
====  ==========================  ===============================================================================

Every response carries ``X-Content-Type-Options: nosniff``; an error's ``detail`` quotes what was sent by a short
prefix only (at most :data:`MAX_DETAIL_CHARS` characters in all); a connection whose request head is not complete
within ``ApiServer(header_timeout_s=10)`` is closed. The OpenAPI description declares every rule the server checks
on ids, bounds and descriptors, and lists only the statuses it sends (400, never 422).

With a token, every endpoint but ``/health``, ``/openapi.json``, ``/docs`` and ``/redoc`` (with their files under
``/docs/assets/``, :mod:`keyreid_stream.matcher.api.apidocs`) requires it, checked before the request's body is read: a
request without it gets 401, whatever its body. The identity browser
(``/browser/``, static files of :data:`BROWSER_DIR`; ``/`` redirects there) needs no token to load: the page asks
for it and sends it with its API requests.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import fastapi
import redis
import uvicorn
from fastapi import Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyreid_stream import __version__
from keyreid_stream.contracts import (
    CAMERA_ID_PATTERN,
    MAX_DESCRIPTOR_DIM,
    MESSAGE_ID_PATTERN,
    shown,
)
from keyreid_stream.matcher.api.answers import (
    BadQuery,
    CameraView,
    Health,
    IdentityCount,
    IdentitySummary,
    IdentityView,
    LinkView,
    NotFound,
    SearchHit,
    Stats,
    TrackletView,
    Unavailable,
)
from keyreid_stream.matcher.api.apidocs import add_api_docs
from keyreid_stream.matcher.api.http_protocol import header_timeout_protocol
from keyreid_stream.matcher.api.queries import (
    IDENTITY_ID_PATTERN,
    MAX_OFFSET,
    SPACE_PATTERN,
    MatcherQueries,
)
from keyreid_stream.matcher.api.summaries import SUMMARY_TRACKLETS

__all__ = ["ApiServer", "DescriptorQuery", "ErrorBody", "create_app"]

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("image/jpeg", "image/png")
_TRACKLET_ID = "tracklet id (the id of the message that brought it: 32 lowercase hex digits)"
BROWSER_DIR = Path(__file__).resolve().with_name("browser")
BROWSER_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
}
DESCRIPTION = (
    "Identities, tracklets, appearance links and statistics of a keyreid-stream matcher, and search by descriptor "
    "or person crop. Times are seconds: unix seconds (UTC wall clock) for live cameras, files read in real time "
    "and every time the matcher records (ingest, decisions, heartbeats); media time (seconds from the start of "
    "the recording, below 1e9) for files read faster than real time. Errors are JSON "
    "`{\"error\": code, \"detail\": message}`: 400 bad_request (every invalid input, validation errors included), 401 unauthorized, 404 not_found, 413 "
    "payload_too_large, 415 unsupported_media_type, 501 not_implemented, 503 redis_unavailable, 500 internal_error."
)
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          413: "payload_too_large", 415: "unsupported_media_type", 500: "internal_error", 501: "not_implemented",
          503: "redis_unavailable"}


def _declared(pattern: str | None = None, *, at_most: int | None = None) -> dict[str, Any]:
    """The JSON Schema of a rule that :class:`MatcherQueries` enforces (with its own message): the OpenAPI
    description declares it, the server checks it once, in one place."""
    if pattern is not None:
        return {"pattern": f"^{pattern}$"}
    return {"minimum": 1, "maximum": at_most}


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="a stable code: bad_request, unauthorized, not_found, payload_too_large, ...")
    detail: str = Field(description="a readable message")


class DescriptorQuery(BaseModel):
    """A search by descriptor: the vector (any scale, it is L2-normalised), how many identities, and its space
    (needed only when several descriptor spaces have its dimension)."""

    model_config = ConfigDict(extra="forbid")
    descriptor: list[float] = Field(min_length=1, max_length=MAX_DESCRIPTOR_DIM, description="not all zeros",
                                    json_schema_extra={"contains": {"not": {"const": 0}}})
    k: int = Field(5, ge=1, description="how many identities to return (at most the API's max_results)")
    space: str | None = Field(None, description="descriptor space, e.g. keyreid_vit_base@sha256:0123abcd/768",
                              json_schema_extra=_declared(SPACE_PATTERN))


MAX_DETAIL_CHARS = 300  # error details quote input by short prefixes (contracts.shown); this caps the rest


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    detail = detail if len(detail) <= MAX_DETAIL_CHARS else detail[: MAX_DETAIL_CHARS - 3] + "..."
    return JSONResponse({"error": _CODES.get(status, "http_error"), "detail": detail}, status_code=status,
                        headers=headers)


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _CODES[code].replace("_", " ")} for code in codes}


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class _Guard:
    """ASGI middleware around the routes: marks every response ``X-Content-Type-Options: nosniff``, checks the
    bearer token of a protected route before anything reads the body, refuses bodies over the limit (by
    Content-Length, or counted while they arrive) and turns any exception the handlers did not map into a logged,
    generic 500."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, token: _Token | None = None) -> None:
        self.app, self.max_body_bytes, self.token = app, max_body_bytes, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"x-content-type-options" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        headers = dict(scope["headers"])
        refused = self.token.refusal(scope, headers.get(b"authorization")) if self.token else None
        if refused is not None:
            await refused(scope, receive, tracked_send)
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            status = 413 if declared.isdigit() else 400
            detail = str(_BodyTooLarge(self.max_body_bytes).detail) if status == 413 else "bad Content-Length"
            await _error(status, detail, {"Connection": "close"})(scope, receive, tracked_send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise _BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _BodyTooLarge as exc:
            if not started:
                await _error(413, str(exc.detail), {"Connection": "close"})(scope, receive, tracked_send)
        except Exception:
            logger.exception("query API: unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _error(500, "internal server error")(scope, receive, tracked_send)


def _install_error_handlers(app: fastapi.FastAPI) -> None:
    async def not_found(_request: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def bad_query(_request: Request, exc: Exception) -> JSONResponse:
        return _error(400, str(exc))

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return _error(501, str(exc))

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("query API: redis unavailable for %s %s: %s", request.method, request.url.path, exc)
        return _error(503, "the matcher's Redis does not answer; try again later")

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        problems = [f"{'.'.join(str(p)[:40] for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', 'invalid')}"
                    for e in exc.errors()[:5]]  # type: ignore[attr-defined]
        return _error(400, "; ".join(problems) or "invalid request")

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    for error, handler in ((NotFound, not_found), (BadQuery, bad_query), (Unavailable, unavailable),
                           (redis.ConnectionError, redis_down), (redis.TimeoutError, redis_down),
                           (RequestValidationError, invalid), (StarletteHTTPException, http_error)):
        app.add_exception_handler(error, handler)


class _Token:
    """The bearer token: :meth:`dependency` declares it in the OpenAPI description and checks it on the routes of
    the protected router; :meth:`refusal` checks it in :class:`_Guard`, before the body is read, for every request
    that one of those routes would serve (constant-time comparison)."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()
        self.routes: list[BaseRoute] = []  # the protected routes (set once the router is built)
        scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                            description="Authorization: Bearer <token>, the token the matcher was started with")

        def require_token(request: Request,
                          _credentials: HTTPAuthorizationCredentials | None = Depends(scheme),  # noqa: B008
                          ) -> None:
            problem = self.problem(request.headers.get("authorization", "").encode("latin-1"))
            if problem is not None:
                raise HTTPException(401, problem[0], headers={"WWW-Authenticate": problem[1]})

        self.dependency = require_token

    def problem(self, authorization: bytes | None) -> tuple[str, str] | None:
        """(detail, WWW-Authenticate) when ``authorization`` does not carry the token; None when it does."""
        scheme, _, credentials = (authorization or b"").strip().partition(b" ")
        if scheme.lower() != b"bearer" or not credentials.strip():
            return "this API needs 'Authorization: Bearer <token>'", "Bearer"
        if not hmac.compare_digest(credentials.strip(), self._expected):
            return "wrong bearer token", 'Bearer error="invalid_token"'
        return None

    def _protected(self, scope: Scope) -> bool:
        """Whether a protected route matches ``scope``'s path (its method too, or not: a 405 needs the token)."""
        return any(route.matches(scope)[0] is not Match.NONE for route in self.routes)

    def refusal(self, scope: Scope, authorization: bytes | None) -> JSONResponse | None:
        problem = self.problem(authorization) if self._protected(scope) else None
        return None if problem is None else _error(401, problem[0], {"WWW-Authenticate": problem[1]})


def create_app(queries: MatcherQueries, *, token: str | None = None, max_body_bytes: int = 4 << 20,
               title: str = "keyreid-stream matcher") -> fastapi.FastAPI:
    """The query API over ``queries``; ``token``: require ``Authorization: Bearer <token>`` (except /health)."""
    app = fastapi.FastAPI(title=title, version=__version__, description=DESCRIPTION, docs_url=None, redoc_url=None)
    add_api_docs(app)  # /docs and /redoc from local files, not a CDN
    bearer = _Token(token) if token else None
    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, token=bearer)
    _install_error_handlers(app)

    @app.get("/health", response_model=Health, summary="Liveness and readiness (no token needed)",
             description="Redis reachability and the service's own state. 200 when ok, 503 when degraded (the "
                         "body says why).", responses={503: {"model": Health, "description": "degraded"}})
    def health(response: Response) -> Health:
        report = queries.health()
        response.status_code = 200 if report.status == "ok" else 503
        return report

    _add_browser(app)
    router = fastapi.APIRouter(dependencies=[Depends(bearer.dependency)] if bearer else [],
                               responses=_responses(400, 401, 503) if token else _responses(400, 503))
    _add_state_routes(router, queries)
    _add_search_routes(router, queries)
    app.include_router(router)
    if bearer is not None:
        bearer.routes = list(router.routes)
    app.openapi = lambda: _openapi(app, queries.max_results)  # type: ignore[method-assign]
    return app


def _openapi(app: fastapi.FastAPI, max_results: int) -> dict[str, Any]:
    """FastAPI's OpenAPI description, without the 422 answers this API never sends (it answers 400) and with the
    bound of ``k`` in a descriptor search, which depends on ``max_results``."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                           description=app.description, routes=app.routes)
        for operations in spec["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = spec.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        schemas["DescriptorQuery"]["properties"]["k"]["maximum"] = max_results
        app.openapi_schema = spec
    return app.openapi_schema


class _BrowserFiles(StaticFiles):
    """The identity browser's files, with headers that keep the page to its own origin and scripts."""

    def file_response(self, full_path: Any, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(BROWSER_HEADERS)
        return response


def _add_browser(app: fastapi.FastAPI) -> None:
    """``/browser/``: the identity browser (static files, no token: the page asks for it and sends it with every
    request to the API); ``/`` redirects there."""
    if not (BROWSER_DIR / "index.html").is_file():
        logger.warning("query API: the identity browser's files are missing from %s; /browser/ is not served",
                       BROWSER_DIR)
        return
    app.mount("/browser", _BrowserFiles(directory=BROWSER_DIR, html=True), name="browser")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("browser/", status_code=307)


def _add_state_routes(router: fastapi.APIRouter, queries: MatcherQueries) -> None:
    @router.get("/stats", response_model=Stats, summary="Counters, sizes, association lag",
                description="Ingest counters shared by all matchers, stored tracklets, live identities, the vector "
                            "index size per descriptor space, association lag and the lease owner.")
    def stats() -> Stats:
        return queries.stats()

    @router.get("/cameras", response_model=list[CameraView], summary="Cameras and their last heartbeat",
                description="Every camera that sent tracklets or heartbeats, with its number of stored tracklets.")
    def cameras() -> list[CameraView]:
        return queries.cameras()

    @router.get("/identities", response_model=list[IdentitySummary], summary="Recent identities, a page at a time",
                description="Identities with a tracklet ending in [since, until] (seconds), on `camera` when "
                            "given, seen on at least `min_cameras` cameras, most recent first, from the `offset`-th "
                            "on (pages: offset 0, limit, 2 x limit, ...; `GET /identities/count` says how many "
                            "there are); each with its cameras and, per camera, a tracklet whose thumbnail shows it "
                            f"(read from its {SUMMARY_TRACKLETS} most recent tracklets).")
    def identities(camera: str | None = Query(None, description="only identities seen on this camera",
                                              json_schema_extra=_declared(CAMERA_ID_PATTERN)),
                   since: float | None = Query(None, description="seconds (unix or media time)"),
                   until: float | None = Query(None, description="seconds (unix or media time)"),
                   limit: int | None = Query(None, description="at most this many (default 100)",
                                             json_schema_extra=_declared(at_most=queries.max_results)),
                   min_cameras: int = Query(1, ge=1, description="only identities seen on this many cameras"),
                   offset: int = Query(0, ge=0, le=MAX_OFFSET, description="skip this many (paging)"),
                   ) -> list[IdentitySummary]:
        return queries.identities(camera=camera, since=since, until=until, limit=limit, min_cameras=min_cameras,
                                  offset=offset)

    @router.get("/identities/count", response_model=IdentityCount, summary="How many identities match a filter",
                description="The number of identities `GET /identities` lists with the same filters over all its "
                            "pages. `exact` is false when counting stopped at its budget (100 x api.max_results "
                            "candidates, 10 x with min_cameras above 1): `total` is then a lower bound; a time "
                            "range narrows it.")
    def count_identities(camera: str | None = Query(None, description="only identities seen on this camera",
                                                    json_schema_extra=_declared(CAMERA_ID_PATTERN)),
                         since: float | None = Query(None, description="seconds (unix or media time)"),
                         until: float | None = Query(None, description="seconds (unix or media time)"),
                         min_cameras: int = Query(1, ge=1, description="only identities seen on this many cameras"),
                         ) -> IdentityCount:
        return queries.count_identities(camera=camera, since=since, until=until, min_cameras=min_cameras)

    @router.get("/identities/{gid}", response_model=IdentityView, summary="One identity: tracklets and timeline",
                description="Its tracklets, cameras, per-camera visits and the ordered visits across cameras, and "
                            "its recent decision log. A merged identity answers the identity it was merged into "
                            "(`requested_id` vs `identity_id`).", responses=_responses(404))
    def identity(gid: str = PathParam(description="identity id, e.g. g42",
                                 json_schema_extra=_declared(IDENTITY_ID_PATTERN))) -> IdentityView:
        return queries.identity(gid)

    @router.get("/tracklets/{tid}", response_model=TrackletView, summary="One tracklet and its decision",
                description="Its metadata, identity, the decision explanation (candidates, rejected identities) "
                            "and its appearance link.", responses=_responses(404))
    def tracklet(tid: str = PathParam(description=_TRACKLET_ID, json_schema_extra=_declared(MESSAGE_ID_PATTERN)),
                 ) -> TrackletView:
        return queries.tracklet(tid)

    @router.get("/tracklets/{tid}/thumbnail", response_class=Response, summary="A tracklet's thumbnail (JPEG)",
                description="The person crop the worker sent with the tracklet.",
                responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG"}, **_responses(404)})
    def thumbnail(tid: str = PathParam(description=_TRACKLET_ID, json_schema_extra=_declared(MESSAGE_ID_PATTERN)),
                  ) -> Response:
        return Response(queries.thumbnail(tid), media_type="image/jpeg", headers={"Cache-Control": "private"})

    @router.get("/tracklets/{tid}/similar", response_model=list[SearchHit], summary="Look-alikes of a tracklet",
                description="The k identities nearest (cosine) to the tracklet's stored descriptor, searched in its "
                            "own descriptor space, best first. Its own identity comes first (through the tracklet "
                            "itself, score 1) unless `exclude_self` is true.", responses=_responses(404))
    def similar(tid: str = PathParam(description=_TRACKLET_ID, json_schema_extra=_declared(MESSAGE_ID_PATTERN)),
                k: int = Query(5, description="how many identities",
                               json_schema_extra=_declared(at_most=queries.max_results)),
                exclude_self: bool = Query(False, description="leave the tracklet itself out of the neighbours"),
                ) -> list[SearchHit]:
        return queries.search_tracklet(tid, k, exclude_self=exclude_self)

    @router.get("/links", response_model=list[LinkView], summary="Appearance links of a camera",
                description="Tracklets ending in [start, end] that were linked by appearance to or from `camera`, "
                            "oldest first.")
    def links(camera: str = Query(description="camera id", json_schema_extra=_declared(CAMERA_ID_PATTERN)),
              start: float | None = Query(None, description="unix s"),
              end: float | None = Query(None, description="unix seconds"),
              limit: int | None = Query(None, description="at most this many (default 1000)",
                                        json_schema_extra=_declared(at_most=queries.max_results)),
              ) -> list[LinkView]:
        return queries.links(camera, start, end, limit)


def _add_search_routes(router: fastapi.APIRouter, queries: MatcherQueries) -> None:
    @router.post("/search/descriptor", response_model=list[SearchHit], summary="Search identities by descriptor",
                 description="The k identities whose tracklets are nearest (cosine) to the descriptor, best first. "
                             "404 when no tracklet of its descriptor space is stored.",
                 responses=_responses(404, 413))
    def search_descriptor(query: DescriptorQuery) -> list[SearchHit]:
        return queries.search_descriptor(query.descriptor, query.k, query.space)

    image_body = {"required": True, "content": {kind: {"schema": {"type": "string", "format": "binary"}}
                                                for kind in IMAGE_TYPES}}

    @router.post("/search/image", response_model=list[SearchHit], summary="Search identities by person crop",
                 description="Send a person crop as the raw body (Content-Type image/jpeg or image/png); it is "
                             "embedded with the workers' re-ID model and searched like a descriptor.",
                 openapi_extra={"requestBody": image_body}, responses=_responses(404, 413, 415, 501))
    async def search_image(request: Request, k: int = Query(5, description="how many identities", json_schema_extra=
                                                            _declared(at_most=queries.max_results))) -> list[SearchHit]:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media not in IMAGE_TYPES:
            raise HTTPException(415, f"send the crop as {' or '.join(IMAGE_TYPES)}, not {shown(media or 'no type', 40)}")
        body = await request.body()
        return await run_in_threadpool(queries.search_image, body, k)


class ApiServer:
    """uvicorn serving ``app`` from a background thread; ``port`` 0 picks a free port (see :attr:`port`).

    A connection whose request head (request line and headers) is not complete within ``header_timeout_s`` is
    closed (:mod:`~keyreid_stream.matcher.api.http_protocol`); idle kept-alive connections close after 5 s."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "warning",
                 access_log: bool = False, graceful_timeout_s: float = 5.0, header_timeout_s: float = 10.0) -> None:
        self.app, self.host, self.requested_port = app, host, port
        self.log_level, self.access_log, self.graceful_timeout_s = log_level, access_log, graceful_timeout_s
        self.protocol = header_timeout_protocol(header_timeout_s)
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> ApiServer:
        """Bind, start serving, and return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the API server is already running")
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            error = OSError(f"cannot serve the query API on {self.host}:{self.requested_port} (api.http): "
                            f"{exc.strerror or exc}")
            error.errno = exc.errno
            raise error from None
        self._socket, self.port = sock, int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level=self.log_level, log_config=None,
                                access_log=self.access_log, lifespan="off",
                                timeout_graceful_shutdown=max(1, round(self.graceful_timeout_s)), http=self.protocol)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="query-api",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the query API did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        logger.info("query API on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, let running requests finish (up to ``graceful_timeout_s``), then return."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(self.graceful_timeout_s + 2.0)
            if thread.is_alive():
                server.force_exit = True
                thread.join(2.0)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> ApiServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
