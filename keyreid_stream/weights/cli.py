"""``keyreid-stream weights list | fetch NAME...|demo|all | import NAME PATH``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from keyreid_stream.logs import setup_logging

__all__ = ["add_commands", "progress_bars"]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "weights", help="pretrained weights: list the catalogue, fetch into the cache, import offline",
        description="The catalogue of pretrained weights (KeyRe-ID, ImageNet backbones, YOLO, PifPaf, BlazePose): "
                    "what each is, its licence and sources, and whether it is cached. Every command that takes a "
                    "checkpoint path also takes a catalogue name once the weights are cached. See docs/weights.md.")
    sub = parser.add_subparsers(title="weights commands", metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="the catalogue and what is cached")
    listing.add_argument("--verbose", "-v", action="store_true", help="also licences, reported numbers, URLs")
    listing.set_defaults(handler=_list)
    fetch = sub.add_parser(
        "fetch", help="download catalogue entries into the cache (checked by size and sha256)",
        description="Download the named entries ('demo': what the demo's best pipeline needs; 'all': everything). "
                    "A partial download resumes; URLs are tried in order; nothing is installed before its size "
                    "and sha256 check. Without internet the error lists the URLs, the sha256 and the import command.")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="catalogue names, 'demo' or 'all'")
    fetch.add_argument("--timeout", type=float, default=60.0,
                       help="seconds without data before a download is given up (default 60)")
    fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    fetch.set_defaults(handler=_fetch)
    imported = sub.add_parser(
        "import", help="check a file fetched elsewhere and install it into the cache",
        description="Install a file downloaded on another machine: the entry's file itself, or one of its "
                    "downloads (an archive holding it, the authors' checkpoint, which is converted). Its size and "
                    "sha256 are checked first; the file is copied.")
    imported.add_argument("name", metavar="NAME")
    imported.add_argument("path", metavar="PATH")
    imported.set_defaults(handler=_import)
    # the tuple only orders the calls: print the help, then exit status 2
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])  # type: ignore[func-returns-value]


def _list(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "WARNING", args.log_format or "text")
    from keyreid_stream.weights.store import status, weights_dir

    rows = status()
    print(f"cache: {weights_dir()} (KEYREID_STREAM_CACHE moves it)")
    width = max(len(row.entry.name) for row in rows)
    for row in rows:
        entry = row.entry
        size = f"{entry.size / 1e6:.1f} MB" if entry.size else (
            f"{entry.sources[0].remote.size / 1e6:.0f} MB download" if entry.sources[0].remote.size else "")
        state = f"cached   {row.path}" if row.cached else "missing"
        print(f"{entry.name:<{width}}  {state}")
        print(f"{'':<{width}}  {entry.description}{f' [{size}]' if size else ''}")
        if args.verbose:
            print(f"{'':<{width}}  licence: {entry.licence}")
            if entry.reported:
                print(f"{'':<{width}}  reported: {entry.reported}")
            for source in entry.sources:
                print(f"{'':<{width}}  source: {source.describe()}")
            via = "" if entry.downloader == "keyreid" else f" (fetched by {entry.downloader}'s own downloader)"
            print(f"{'':<{width}}  installed as: {entry.filename}{via}"
                  + (f", sha256 {entry.sha256}" if entry.sha256 else ""))
    print("fetch: keyreid-stream weights fetch NAME... | demo | all;  offline: keyreid-stream weights import NAME PATH")
    return 0


def progress_bars(enabled: bool) -> Callable[[str, int | None, int], Callable[[int], object]] | None:
    """A tqdm bar per download (the fetcher's ``progress`` callback), or None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    def bar(label: str, total: int | None, initial: int) -> Callable[[int], object]:
        progress = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                        dynamic_ncols=True, leave=False)
        def update(n: int) -> None:
            progress.update(n)
            if total is not None and progress.n >= total:
                progress.close()
        return update

    return bar


def _fetch(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.weights.store import WeightsError, expand_names, fetch_weights

    failed = []
    for name in expand_names(args.names):
        try:
            path = fetch_weights(name, timeout=args.timeout, progress=progress_bars(not args.no_progress))
        except WeightsError as exc:
            print(f"keyreid-stream: error: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        print(f"{name}: {path}")
    if failed:
        print(f"keyreid-stream: not fetched: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _import(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.weights.store import import_weights

    print(f"{args.name}: {import_weights(args.name, args.path)}")
    return 0
