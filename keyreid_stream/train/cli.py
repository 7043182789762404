"""Command-line parts of the offline trainer: ``train``, ``eval`` and ``data`` (registered by the main CLI)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyreid_stream.config import ConfigError, load_config
from keyreid_stream.logs import setup_logging

if TYPE_CHECKING:
    from keyreid_stream.train.config import TrainingConfig

__all__ = ["TrainingInputError", "add_commands"]

logger = logging.getLogger("keyreid_stream.cli")
EXIT_STOPPED = 130  # like an interrupted command: the run is not finished


class TrainingInputError(Exception):
    """A configuration, dataset or checkpoint problem found by a training command (one readable line)."""


def _readable(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report the ValueErrors of the library (bad config values, data, splits) as one line; the traceback is
    logged at DEBUG level."""

    def run(args: argparse.Namespace) -> int:
        try:
            result: int = handler(args)
            return result
        except ConfigError:
            raise  # a configuration error: exit status 2, like every command
        except ValueError as exc:
            logger.debug("%s failed", handler.__name__, exc_info=True)
            raise TrainingInputError(str(exc)) from exc

    return run


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_train(commands)
    _add_eval(commands)
    _add_data(commands)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, required=True, help="training config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. optim.epochs=10 run.output=runs/try")


def _load(args: argparse.Namespace) -> TrainingConfig:
    from keyreid_stream.train.config import TrainingConfig

    config = load_config(TrainingConfig, args.config, args.overrides)
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    return config


def _splits(text: str | None, dataset: str) -> list[int] | None:
    if text is None:
        return None
    from keyreid_stream.data.datasets import split_count

    if text == "all":
        return list(range(split_count(dataset)))
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--splits must be 'all' or comma-separated split numbers, got {text!r}") from None


# --------------------------------------------------------------------------- train


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "train", help="train a re-ID model (KeyRe-ID, VID-Trans-ReID, ablations) on a video re-ID dataset",
        description="Train as the config says, select the model on held-out training identities, then evaluate "
                    "it once on the test split. Several GPUs: torchrun --nproc_per_node N -m keyreid_stream "
                    "train --config ...")
    _config_arguments(parser)
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="continue from a training state (last.pt); 'auto' uses the output folder's, if any")
    parser.add_argument("--splits", default=None, metavar="all|N[,N...]",
                        help="iLIDS-VID / PRID-2011: train one model per split into <output>/split-N and report "
                             "mean and std of the test results")
    parser.add_argument("--no-test", action="store_true", help="skip the final test evaluation")
    parser.set_defaults(handler=_readable(_train))


def _stop_on_signals() -> threading.Event:
    """SIGTERM (a scheduler preempting the job) or Ctrl-C: finish the current step, save the state, stop."""
    stop = threading.Event()

    def request(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        logger.warning("%s: stopping after the current step and saving the state (again to stop at once)",
                       signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request)
    return stop


def _train(args: argparse.Namespace) -> int:
    from keyreid_stream.train.trainer import train, train_splits

    config = _load(args)
    splits = _splits(args.splits, config.data.dataset)
    stop = _stop_on_signals()
    if splits is not None:
        result = train_splits(config, splits, resume=args.resume, stop_event=stop)
        if stop.is_set():
            print("stopped; run the same command with --resume auto to continue")
            return EXIT_STOPPED
        print(json.dumps(result["mean_std"], indent=2))
        return 0
    summary = train(config, resume=args.resume, evaluate_test=not args.no_test, stop_event=stop)
    if not summary.completed:
        print(f"stopped after {summary.optimiser_steps} optimiser steps; state saved in {summary.selected}; "
              "run the same command with --resume auto to continue")
        return EXIT_STOPPED
    print(f"trained {summary.epochs_run} epochs ({summary.optimiser_steps} steps, {summary.seconds:.0f} s); "
          f"model: {summary.selected}")
    if summary.best:
        print(f"best validation (epoch {summary.best['epoch']}): mAP {100 * summary.best['mAP']:.2f}% "
              f"({_queries(summary.best)})")
    for protocol, metrics in (summary.test or {}).items():
        shown = [("mAP", "mAP"), ("rank-1", "rank1"), ("rank-5", "rank5"), ("mINP", "mINP")]
        print(f"test ({protocol}, {_queries(metrics)}): "
              + "  ".join(f"{label} {100 * metrics[key]:.2f}%" for label, key in shown if key in metrics))
    return 0


# --------------------------------------------------------------------------- eval


def _add_eval(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "eval", help="evaluate a trained model on the test split(s): CMC, mAP, mINP and PNG reports",
        description="Evaluate a checkpoint with the standard protocol (and, with --protocol both, the authors' "
                    "per-frame camera ids). iLIDS-VID / PRID-2011: put {split} in the checkpoint path to "
                    "evaluate each split's model and report mean and std.")
    _config_arguments(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="model file ({split} is replaced by the split number) or a weights catalogue name "
                             "(keyreid-stream weights list)")
    parser.add_argument("--splits", default=None, metavar="all|N[,N...]", help="which test splits (default: all)")
    parser.add_argument("--protocol", choices=("standard", "official", "both"), default=None)
    parser.add_argument("--rerank", action="store_true", default=None, help="add k-reciprocal re-ranking")
    parser.add_argument("--output", type=Path, default=None, help="folder for evaluation.json and the reports")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow a checkpoint that needs arbitrary unpickling (only for files you trust)")
    parser.set_defaults(handler=_readable(_eval))


def _eval(args: argparse.Namespace) -> int:
    from keyreid_stream.train.evaluation import evaluate_checkpoint

    config = _load(args)
    summary = evaluate_checkpoint(config, args.checkpoint, splits=_splits(args.splits, config.data.dataset),
                                  output=args.output, protocol=args.protocol, rerank=args.rerank,
                                  allow_pickle=args.allow_pickle)
    print(format_evaluation(summary))
    return 0


def format_evaluation(summary: Any) -> str:
    """The ``eval`` table: per protocol its valid queries (a protocol may skip queries without a true match)
    beside its numbers in %; mean ± std over several splits, the plain numbers of a single one."""
    several = len(summary.splits) > 1
    names = [n for n in ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")
             if all(n in metrics for metrics in summary.mean_std.values())]
    width = 14 if several else 7
    lines = [f"{summary.title or summary.dataset}, {len(summary.splits)} split(s); "
             + ("mean ± std over splits, in %" if several else "in %"),
             f"{'protocol':<10} {'valid queries':>16} " + " ".join(f"{name:>{width}}" for name in names)]
    for protocol, metrics in summary.mean_std.items():
        queries = _queries({name: mean for name, (mean, _) in metrics.items()}).removesuffix(" queries")
        if several:
            cells = [f"{100 * metrics[name][0]:6.2f} ± {100 * metrics[name][1]:5.2f}" for name in names]
        else:
            cells = [f"{100 * metrics[name][0]:6.2f}" for name in names]
        lines.append(f"{protocol:<10} {queries:>16} " + " ".join(f"{cell:>{width}}" for cell in cells))
    return "\n".join(lines)


def _queries(metrics: dict[str, Any]) -> str:
    """``V of Q queries`` from a RankResult.as_dict() (queries without a true match are skipped)."""
    valid, skipped = metrics.get("valid_queries", 0), metrics.get("skipped_queries", 0)
    return f"{_count(valid)} of {_count(valid + skipped)} queries"


def _count(value: float) -> str:
    """A query count (a mean over splits may not be whole)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


# --------------------------------------------------------------------------- data


def _add_data(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("data", help="inspect datasets; write the synthetic dataset",
                                 description="Inspect re-ID datasets and write the synthetic one.")
    sub = parser.add_subparsers(title="data commands", metavar="SUBCOMMAND")
    info = sub.add_parser("info", help="identities, tracklets and frames of a dataset split")
    info.add_argument("--dataset", required=True, choices=("mars", "ilidsvid", "prid", "folder"))
    info.add_argument("--root", type=Path, required=True)
    info.add_argument("--split", type=int, default=0)
    info.set_defaults(handler=_readable(_data_info))
    synth = sub.add_parser("synth", help="write a synthetic dataset in the MARS layout, with its keypoint store",
                           description="Write a small synthetic dataset (MARS layout, .mat files and keypoints) "
                                       "for trying the trainer without the real data.")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--train-ids", type=int, default=None)
    synth.add_argument("--test-ids", type=int, default=None)
    synth.add_argument("--seed", type=int, default=None)
    synth.set_defaults(handler=_readable(_data_synth))
    # the tuple only orders the calls: print the help, then exit status 2
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])  # type: ignore[func-returns-value]


def _data_info(args: argparse.Namespace) -> int:
    from keyreid_stream.data.datasets import read_split

    setup_logging(args.log_level or "INFO", args.log_format or "text")
    split = read_split(args.dataset, args.root, args.split)
    print(json.dumps(split.summary(), indent=2))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    import dataclasses

    from keyreid_stream.data.synthetic import SyntheticSpec, write_synthetic_mars

    setup_logging(args.log_level or "INFO", args.log_format or "text")
    chosen = {"train_ids": args.train_ids, "test_ids": args.test_ids, "seed": args.seed}
    spec = dataclasses.replace(SyntheticSpec(), **{k: v for k, v in chosen.items() if v is not None})
    summary = write_synthetic_mars(args.out, spec)
    print(f"wrote {summary.frames} frames ({summary.train_tracklets} train / {summary.query_tracklets} query / "
          f"{summary.gallery_tracklets} gallery tracklets) to {summary.root} in {summary.seconds:.1f} s; "
          f"keypoints: {summary.keypoint_store}")
    return 0
