"""The ``keyreid-stream`` command line: parse, set up logging once, call one typed function.

Each subcommand registers a parser and a handler ``(args) -> int``. Handlers load the configuration (a YAML file
plus ``key.sub=value`` overrides), unpack their own section into keyword arguments and call the library.
Expected failures (bad config, missing data, unreadable video) end with one readable line and a non-zero exit
status; unexpected ones are logged with their traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from keyreid_stream import __version__
from keyreid_stream.config import Config, ConfigError, dump_yaml, load_config
from keyreid_stream.logs import setup_logging

logger = logging.getLogger("keyreid_stream.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"keyreid-stream: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("keyreid-stream: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as exc:
        print(f"keyreid-stream: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyreid-stream",
        description="Multi-camera video person re-identification with KeyRe-ID.",
        epilog="Run 'keyreid-stream COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=None,
                        help="logging level (default: the config's logging.level, else INFO)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None, help="log line format")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_config_commands(commands)
    _add_sample_commands(commands)
    _add_demo_command(commands)
    return parser


# --------------------------------------------------------------------------- shared helpers


def _add_config_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    if required:
        parser.add_argument("config", type=Path, help="YAML config file (see configs/)")
    else:
        parser.add_argument("--config", "-c", type=Path, default=None, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. demo.max_frames=50")


def _load(args: argparse.Namespace) -> Config:
    """Load the config of a command and set up logging once from it and the global flags."""
    config = load_config(Config, args.config, args.overrides)
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    return config


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that carry a user-facing message; imported lazily so the CLI starts fast."""
    from keyreid_stream.contracts import ContractError
    from keyreid_stream.data.sample import SampleDataError
    from keyreid_stream.wire import WireError
    from keyreid_stream.workers.sources import SourceError

    return (ContractError, SampleDataError, SourceError, WireError, FileNotFoundError)


# --------------------------------------------------------------------------- config


def _add_config_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("config", help="inspect configuration files",
                                 description="Inspect configuration files.")
    sub = parser.add_subparsers(title="config commands", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="print the resolved config (defaults + file + overrides) as YAML",
                          description="Print the resolved configuration as YAML. Unknown keys and wrong "
                                      "types are an error naming the key and the file.")
    _add_config_arguments(show, required=True)
    show.set_defaults(handler=_config_show)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _config_show(args: argparse.Namespace) -> int:
    config = _load(args)
    sys.stdout.write(dump_yaml(config))
    return EXIT_OK


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


# --------------------------------------------------------------------------- sample data


def _add_sample_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sample", help="the project's sample video",
                                 description="Find or fetch the sample pedestrian video used by the demo.")
    sub = parser.add_subparsers(title="sample commands", metavar="SUBCOMMAND")
    fetch = sub.add_parser("fetch", help="fetch the sample video into the cache (if missing) and print its path",
                           description="Fetch the sample video (OpenCV's vtest.avi) into the cache when it is "
                                       "missing: from an installed opencv-doc, Debian's opencv-doc package, "
                                       "or OpenCV's repository. Prints the path.")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default: the user cache)")
    fetch.add_argument("--no-download", action="store_true", help="only look locally, never download")
    fetch.set_defaults(handler=_sample_fetch)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _sample_fetch(args: argparse.Namespace) -> int:
    from keyreid_stream.data.sample import fetch_sample

    setup_logging(args.log_level or "INFO", args.log_format or "text")
    path = fetch_sample(cache_dir=args.cache_dir, allow_download=not args.no_download)
    print(path)
    return EXIT_OK


# --------------------------------------------------------------------------- demo


def _add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="run the demo (currently the foundation slice: video -> people -> wire -> ZeroMQ)",
        description="Run the demo. This is the foundation slice of the system: the sample video (fetched "
                    "when missing) or your own file, OpenCV's HOG people detector, one wire message per "
                    "detection with a colour-histogram descriptor, published over ZeroMQ on 127.0.0.1 and "
                    "decoded on the other side. Tracking, KeyRe-ID embeddings and the Redis matcher are not "
                    "part of it yet.")
    _add_config_arguments(demo, required=False)
    demo.add_argument("--source", default=None, help="video file to use instead of the sample video")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from keyreid_stream.demo import format_report, resolve_source, run_demo

    config = _load(args)
    options = config.demo
    video = resolve_source(args.source or options.source)
    report = run_demo(
        video=video,
        camera_id=options.camera_id,
        max_frames=options.max_frames,
        stride=options.stride,
        hog_max_width=options.hog_max_width,
        min_score=options.min_score,
        histogram_bins=options.histogram_bins,
        thumbnails=options.thumbnails,
        endpoint=options.endpoint,
    )
    print(format_report(report))
    return EXIT_OK if report.rejected == 0 and report.received == report.published else EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
