"""``keyreid-stream matcher``: the cross-camera matcher (ZeroMQ ingest, Redis state, association, HTTP API).

SIGTERM or Ctrl-C stops receiving, finishes the batch in hand (stored and acknowledged), releases the
association lease so that another matcher takes over at once, and exits 0; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path

from keyreid_stream.config import load_config
from keyreid_stream.config.loader import ConfigError
from keyreid_stream.logs import setup_logging
from keyreid_stream.signals import stop_on_signals

__all__ = ["MatcherInputError", "add_commands", "format_report"]

logger = logging.getLogger("keyreid_stream.cli")


class MatcherInputError(Exception):
    """A configuration, topology or Redis data problem found when starting the matcher (one readable line)."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "matcher", help="run the cross-camera matcher: tracklets in over ZeroMQ, identities in Redis, HTTP API",
        description="Receive tracklet descriptors from the camera workers, store them in Redis, link them across "
                    "cameras into global identities and answer queries over HTTP (OpenAPI at /docs). Several "
                    "matchers may share one Redis (see docs/matcher.md).",
    )
    parser.add_argument("--config", "-c", type=Path, default=None, help="matcher config (see configs/matcher.yaml)")
    parser.add_argument("--redis", help="Redis URL, e.g. redis://127.0.0.1:6379/0 (redis.url)")
    parser.add_argument("--listen", help="ZeroMQ endpoint the workers connect to, e.g. tcp://*:5555 (ingest.listen)")
    parser.add_argument("--http", help="query API address [HOST]:PORT, e.g. :8080; '' = no API (api.http)")
    parser.add_argument("--topology", help="camera topology YAML with transit times (association.topology)")
    parser.add_argument("--token-file", help="file holding the API bearer token (api.token_file)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. association.threshold=0.65 retention.max_age_s=86400")
    parser.set_defaults(handler=_matcher)


def _load(args: argparse.Namespace):  # noqa: ANN202 - MatcherConfig, imported lazily
    from keyreid_stream.matcher.config import MatcherConfig

    overrides = list(args.overrides)
    for flag, key in (("redis", "redis.url"), ("listen", "ingest.listen"), ("http", "api.http"),
                      ("topology", "association.topology"), ("token_file", "api.token_file")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # a quoted YAML string, whatever it holds
    config = load_config(MatcherConfig, args.config, overrides)
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    return config


def _matcher(args: argparse.Namespace) -> int:
    from keyreid_stream.matcher.service import run_matcher
    from keyreid_stream.matcher.store import StoreError

    try:
        config = _load(args)
    except ConfigError:
        raise
    except ValueError as exc:
        raise MatcherInputError(str(exc)) from exc
    try:
        with stop_on_signals(threading.Event(), "finishing the batch in hand") as stop:
            report = run_matcher(config, stop)
    except (ValueError, OSError, StoreError) as exc:
        logger.debug("matcher failed", exc_info=True)
        raise MatcherInputError(str(exc)) from exc
    print(format_report(report))
    return 0


def format_report(report: object) -> str:
    """The summary printed when the matcher stops."""
    ingest, association = report.ingest, report.association  # type: ignore[attr-defined]
    rejected = ", ".join(f"{code} {n}" for code, n in sorted(ingest.rejected.items())) or "none"
    return "\n".join([
        f"matcher ran {report.elapsed_s:.1f} s on {report.endpoint}",  # type: ignore[attr-defined]
        f"  ingest: {ingest.frames} frames, {ingest.stored} tracklets stored, {ingest.duplicates} duplicates, "
        f"{ingest.heartbeats} heartbeats, rejected: {rejected}",
        f"  association: {association.decided} decided ({association.new_identities} new identities, "
        f"{association.joined} joined, {association.continued} continued), {association.merges} merges, "
        f"{association.splits} splits, {association.expired} expired",
        f"  index: {report.index_size} tracklets",  # type: ignore[attr-defined]
    ])
