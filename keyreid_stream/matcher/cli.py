"""``keyreid-stream matcher``: the cross-camera matcher (ZeroMQ ingest, Redis state, association, HTTP API), and
``keyreid-stream query``: ask a running matcher (:mod:`keyreid_stream.query.client`).

SIGTERM or Ctrl-C stops receiving, finishes the batch in hand (stored and acknowledged), releases the
association lease so that another matcher takes over at once, and exits 0; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyreid_stream.argtypes import positive_int

if TYPE_CHECKING:
    from keyreid_stream.matcher.config import MatcherConfig
    from keyreid_stream.matcher.service import MatcherReport
from keyreid_stream.config import load_config
from keyreid_stream.logs import setup_logging
from keyreid_stream.query.client import (
    DEFAULT_URL,
    TOKEN_ENV,
    QueryClient,
    format_cameras,
    format_health,
    format_identities,
    format_identity,
    format_links,
    format_search,
    format_stats,
    format_tracklet,
    load_descriptor,
    load_image,
    parse_time,
)
from keyreid_stream.signals import run_until_stopped

__all__ = ["MatcherInputError", "add_commands", "format_report", "run_query"]

logger = logging.getLogger("keyreid_stream.cli")


class MatcherInputError(Exception):
    """A configuration, topology or Redis data problem found when starting the matcher (one readable line)."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_matcher_command(commands)
    _add_query_command(commands)


def _add_matcher_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "matcher", help="run the cross-camera matcher: tracklets in over ZeroMQ, identities in Redis, HTTP API",
        description="Receive tracklet descriptors from the camera workers, store them in Redis, link them across "
                    "cameras into global identities and answer queries over HTTP (OpenAPI at /docs). Several "
                    "matchers may share one Redis (see docs/matcher.md).",
    )
    parser.add_argument("--config", "-c", type=Path, default=None, help="matcher config (see configs/matcher.yaml)")
    parser.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0 (redis.url)")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--listen", help="ZeroMQ endpoint the workers connect to, e.g. tcp://*:5555 (ingest.listen)")
    role.add_argument("--api-only", action="store_true",
                      help="a query-only matcher (API replicas, the identity browser): no ZeroMQ socket, no "
                           "association; it answers from the Redis that other matchers fill "
                           "(ingest.enabled=false association.enabled=false; needs --http)")
    parser.add_argument("--http", help="query API address [HOST]:PORT, e.g. :8080; '' = no API (api.http)")
    parser.add_argument("--topology", help="camera topology YAML with transit times (association.topology)")
    parser.add_argument("--token-file", help="file holding the API bearer token (api.token_file)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. association.threshold=0.65 retention.max_age_s=86400")
    parser.set_defaults(handler=_matcher)


def _load(args: argparse.Namespace) -> MatcherConfig:
    from keyreid_stream.matcher.config import MatcherConfig

    overrides = list(args.overrides)
    for flag, key in (("redis", "redis.url"), ("listen", "ingest.listen"), ("http", "api.http"),
                      ("topology", "association.topology"), ("token_file", "api.token_file")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # a quoted YAML string, whatever it holds
    if args.api_only:
        overrides += ["ingest.enabled=false", "association.enabled=false"]
    config = load_config(MatcherConfig, args.config, overrides)
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    if args.api_only and not config.api.http:
        raise MatcherInputError("--api-only serves only the query API: give it an address (--http [HOST]:PORT)")
    return config


def _matcher(args: argparse.Namespace) -> int:
    from keyreid_stream.matcher.service import run_matcher
    from keyreid_stream.matcher.state.store import StoreError

    _, report = run_until_stopped(lambda: _load(args), run_matcher, stopping="finishing the batch in hand",
                                  input_error=MatcherInputError, run_errors=(ValueError, OSError, StoreError))
    print(format_report(report))
    return 0


def format_report(report: MatcherReport) -> str:
    """The summary printed when the matcher stops."""
    ingest, association = report.ingest, report.association
    rejected = ", ".join(f"{code} {n}" for code, n in sorted(ingest.rejected.items())) or "none"
    where = report.endpoint or "no ingest socket (query only)"
    return "\n".join([
        f"matcher ran {report.elapsed_s:.1f} s on {where}",
        (f"  ingest: {ingest.frames} frames, {ingest.stored} tracklets stored, {ingest.duplicates} duplicates, "
         f"{ingest.heartbeats} heartbeats, rejected: {rejected}"),
        (f"  association: {association.decided} decided ({association.new_identities} new identities, "
         f"{association.joined} joined, {association.continued} continued), {association.merges} merges, "
         f"{association.splits} splits, {association.expired} expired"),
        f"  index: {report.index_size} tracklets",
    ])


# ------------------------------------------------------------------------------------------ query


def _ask(client: QueryClient, args: argparse.Namespace) -> tuple[Any, Callable[[Any], str]]:
    """Send the subcommand's request: (the answer, its formatter)."""
    command = args.query_command
    if command == "health":
        return client.get("/health", accept=(503,)), format_health
    if command in ("stats", "cameras"):
        return client.get(f"/{command}"), format_stats if command == "stats" else format_cameras
    if command == "identities":
        params = {"camera": args.camera, "since": args.since, "until": args.until, "limit": args.limit,
                  "min_cameras": args.min_cameras}
        return client.get("/identities", params), format_identities
    if command == "identity":
        return client.get(f"/identities/{urllib.parse.quote(args.gid, safe='')}"), format_identity
    if command == "tracklet":
        return client.get(f"/tracklets/{urllib.parse.quote(args.tid, safe='')}"), format_tracklet
    if command == "similar":
        return client.similar(args.tid, args.k), format_search
    if command == "links":
        params = {"camera": args.camera, "start": args.start, "end": args.end, "limit": args.limit}
        return client.get("/links", params), format_links
    if args.image is not None:
        data, content_type = load_image(args.image)
        return client.post("/search/image", data, content_type, {"k": args.k}), format_search
    body = json.dumps({"descriptor": load_descriptor(args.descriptor), "k": args.k, "space": args.space})
    return client.post("/search/descriptor", body.encode(), "application/json"), format_search


def run_query(args: argparse.Namespace) -> int:
    """The ``query`` handler: 0, or 1 when ``health`` reports a degraded matcher."""
    if not getattr(args, "query_command", None):
        args.query_parser.print_help()
        return 2
    token = os.environ.get(args.token_env) or None
    answer, formatter = _ask(QueryClient(args.url, token=token, timeout=args.timeout), args)
    print(json.dumps(answer, indent=2) if args.json else formatter(answer))
    degraded = args.query_command == "health" and answer.get("status") != "ok"
    return 1 if degraded else 0


def _add_query_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "query", help="ask a running matcher: identities, tracklets, links, search",
        description="Query a running matcher's HTTP API. The token, when the API needs one, is read from the "
                    f"environment variable named by --token-env (default {TOKEN_ENV}).")
    _add_query_options(parser)
    parser.set_defaults(handler=run_query, query_parser=parser, query_command=None)
    sub = parser.add_subparsers(title="query commands", metavar="SUBCOMMAND", dest="query_command")
    _add_query_subcommands(sub)


def _add_query_options(parser: argparse.ArgumentParser, *, on_subcommand: bool = False) -> None:
    """The options every query takes, accepted before the subcommand (``query --url U identities``) and after
    it (``query identities --url U``); on a subcommand they default to nothing, so that one given before it
    is kept."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if on_subcommand else value

    group = parser.add_argument_group("matcher options (before or after the query command)")
    group.add_argument("--url", default=default(DEFAULT_URL), help=f"the matcher's API (default {DEFAULT_URL})")
    group.add_argument("--token-env", default=default(TOKEN_ENV), metavar="NAME",
                       help=f"environment variable holding the API token (default {TOKEN_ENV})")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print the API's JSON instead of a summary")
    group.add_argument("--timeout", type=float, default=default(10.0),
                       help="seconds to wait for an answer (default 10)")


def _add_query_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def add(name: str, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        _add_query_options(parser, on_subcommand=True)
        return parser

    add("health", help="is the matcher healthy (exit status 1 when degraded)")
    add("stats", help="counters, sizes, association lag")
    add("cameras", help="cameras, their tracklets and last heartbeat")
    when = "unix seconds or ISO-8601"
    identities = add("identities", help="recent identities, most recent first")
    identities.add_argument("--camera", help="only identities seen on this camera")
    identities.add_argument("--since", type=parse_time, help=f"seen at or after ({when})")
    identities.add_argument("--until", type=parse_time, help=f"seen at or before ({when})")
    identities.add_argument("--limit", type=positive_int, help="at most this many (default: the server's, 100)")
    identities.add_argument("--min-cameras", type=positive_int, help="only identities seen on this many cameras")
    add("identity", help="one identity: timeline and tracklets").add_argument("gid", help="e.g. g42")
    add("tracklet", help="one tracklet and its decision").add_argument("tid", help="32 hex characters")
    similar = add("similar", help="the identities that look most like a stored tracklet")
    similar.add_argument("tid", help="32 hex characters")
    similar.add_argument("--k", type=positive_int, default=5, help="how many identities (default 5)")
    links = add("links", help="appearance links to or from a camera")
    links.add_argument("--camera", required=True)
    links.add_argument("--start", type=parse_time, help=f"tracklets ending at or after ({when})")
    links.add_argument("--end", type=parse_time, help=f"tracklets ending at or before ({when})")
    links.add_argument("--limit", type=positive_int, help="at most this many (default: the server's, 1000)")
    search = add("search", help="the identities nearest to a descriptor or a person crop")
    source = search.add_mutually_exclusive_group(required=True)
    source.add_argument("--descriptor", type=Path, metavar="FILE", help="a .npy or .json descriptor")
    source.add_argument("--image", type=Path, metavar="FILE", help="a JPEG or PNG person crop")
    search.add_argument("--k", type=positive_int, default=5, help="how many identities (default 5)")
    search.add_argument("--space", help="descriptor space, when several have the descriptor's dimension")
