"""Evaluating trained models: ``keyreid-stream eval --config ... --checkpoint ...``.

MARS has one test split. iLIDS-VID and PRID-2011 have ten; each split has its own training identities, so each
needs its own model (``--checkpoint runs/ilidsvid/split-{split}/best.pt``), and the numbers reported are the mean
and standard deviation over the splits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from keyreid_stream.data.datasets import ReIDSplit, VideoTracklet, read_split, split_count
from keyreid_stream.data.video import KeypointSource
from keyreid_stream.eval.rank import aggregate_results
from keyreid_stream.eval.runner import SplitEvaluation, dataset_title, evaluate_split, write_reports
from keyreid_stream.inference.device import resolve_amp
from keyreid_stream.model.checkpoint import CheckpointError, load_checkpoint
from keyreid_stream.model.registry import load_model
from keyreid_stream.train import setup
from keyreid_stream.train.config import TrainingConfig
from keyreid_stream.weights import resolve_weights

__all__ = ["EvaluationSummary", "evaluate_checkpoint", "evaluate_tracklets", "load_for_evaluation"]

logger = logging.getLogger(__name__)


def evaluate_tracklets(model: torch.nn.Module, query: Sequence[VideoTracklet], gallery: Sequence[VideoTracklet],
                       config: TrainingConfig, *, keypoints: KeypointSource, device: torch.device,
                       amp_dtype: torch.dtype | None = None, protocol: str | None = None, rerank: bool | None = None,
                       reports: Path | None = None, title: str = "") -> SplitEvaluation:
    """:func:`~keyreid_stream.eval.runner.evaluate_split` with the settings of ``config`` (protocol and
    re-ranking can be overridden), then the PNG reports into ``reports`` when given."""
    data, augment, settings = config.data, config.augment, config.eval
    common: dict[str, Any] = dict(root=data.root, keypoints=keypoints, image_size=data.image_size, clip_length=data.clip_length,
                  mean=augment.mean, std=augment.std)
    result = evaluate_split(model, query, gallery, max_clips=data.test_max_clips, device=device,
                            batch_clips=settings.batch_clips, workers=data.workers, metric=settings.metric,
                            rerank=settings.rerank if rerank is None else rerank,
                            protocol=protocol or settings.protocol, max_rank=settings.max_rank,
                            amp_dtype=amp_dtype, **common)
    if reports is not None:
        try:
            write_reports(result, query, gallery, out_dir=reports, model=model, queries=settings.report_queries,
                          device=device, title=title, **common)
        except (ValueError, OSError) as exc:  # the numbers matter more than the pictures: keep them
            logger.warning("could not write the reports into %s: %s", reports, exc)
    return result


@dataclass(frozen=True)
class EvaluationSummary:
    dataset: str
    splits: tuple[int, ...]
    per_split: tuple[dict[str, dict[str, float]], ...]  # protocol -> metric -> value, one per split
    mean_std: dict[str, dict[str, tuple[float, float]]]  # protocol -> metric -> (mean, std) over the splits
    title: str = ""  # the data it ran on, e.g. "synthetic (MARS layout)" (eval.runner.dataset_title)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "data": self.title, "splits": list(self.splits),
                "per_split": list(self.per_split),
                "mean_std": {p: {m: list(v) for m, v in metrics.items()} for p, metrics in self.mean_std.items()}}


def load_for_evaluation(path: Path, config: TrainingConfig, split: ReIDSplit, *,
                        allow_pickle: bool = False) -> torch.nn.Module:
    """Our checkpoints rebuild themselves; other kinds (the authors', converted weights) are loaded into the
    configured architecture, with as many classes as the split has training identities."""
    try:
        return load_model(path)
    except CheckpointError as exc:
        if "not a keyreid-stream checkpoint" not in str(exc):
            raise
    model_config = dataclasses.replace(config.model, pretrained="")
    model = setup.build_run_model(model_config, num_classes=len(setup.label_map(split.train)), split=split,
                                  image_size=config.data.image_size, clip_length=config.data.clip_length)
    report = load_checkpoint(model, path, "auto", allow_pickle=allow_pickle)
    logger.info("%s", report.summary())
    return model


def evaluate_checkpoint(config: TrainingConfig, checkpoint: str, *, splits: Sequence[int] | None = None,
                        output: str | os.PathLike[str] | None = None, protocol: str | None = None,
                        rerank: bool | None = None, allow_pickle: bool = False) -> EvaluationSummary:
    """Evaluate ``checkpoint`` (a file, ``{split}`` in its path replaced by the split number, or a weights catalogue
    name such as ``keyreid-mars``) on the test splits."""
    data = config.data
    chosen = tuple(splits) if splits is not None else tuple(range(split_count(data.dataset)))
    if len(chosen) > 1 and "{split}" not in checkpoint:
        raise ValueError(f"{data.dataset} has one model per split: put {{split}} in the checkpoint path "
                         f"(e.g. runs/{data.dataset}/split-{{split}}/best.pt) or choose one split with --split")
    processes = setup.init_processes(config.run.device)
    amp_dtype = resolve_amp(config.optim.amp, processes.device)
    per_split: list[dict[str, dict[str, float]]] = []
    results: dict[str, list[Any]] = {}
    out = Path(output) if output is not None else None
    for split_number in chosen:
        split = read_split(data.dataset, data.root, split_number)
        path = resolve_weights(checkpoint.replace("{split}", str(split_number)))  # a file or a catalogue name
        model = load_for_evaluation(path, config, split, allow_pickle=allow_pickle).to(processes.device)
        keypoints = setup.open_keypoints(data.keypoints, data.root, model, data.missing_keypoints)
        reports = None
        if out is not None and config.eval.reports:
            reports = out / (f"split-{split_number}" if len(chosen) > 1 else "") / "reports"
        result = evaluate_tracklets(model, split.query, split.gallery, config, keypoints=keypoints,
                                    device=processes.device, amp_dtype=amp_dtype, protocol=protocol,
                                    rerank=rerank, reports=reports, title=f"{path.name} on {dataset_title(data.dataset, data.root)}")
        per_split.append(result.as_dict())
        for name, value in (("standard", result.standard), ("official", result.official),
                            ("reranked", result.reranked)):
            if value is not None:
                results.setdefault(name, []).append(value)
        logger.info("split %d: %s", split_number, json.dumps(result.standard.as_dict()))
    summary = EvaluationSummary(data.dataset, chosen, tuple(per_split),
                                {name: aggregate_results(values) for name, values in results.items()},
                                dataset_title(data.dataset, data.root))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(summary.as_dict(), indent=2), encoding="utf-8")
    return summary
