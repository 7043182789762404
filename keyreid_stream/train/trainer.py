"""The training loop: ``keyreid-stream train --config configs/keyreid_mars.yaml``.

The recipe of KeyRe-ID (Kim et al.), eqs. 9-11, with the settings of its Section "Implementation details": P x K
identity batches of restricted-random 4-frame clips, SGD with momentum, cosine decay after a linear warm-up, the
centre loss on its own SGD, mixed precision (bfloat16 on a GPU), optional gradient accumulation, and several
processes with ``torchrun`` (DistributedDataParallel). Model selection uses a validation split carved from the
training identities (:mod:`.validation`); the test split is evaluated once, at the end, on the selected model.

Output folder: ``last.pt`` (the full training state, for ``--resume``), ``best.pt`` / ``final.pt`` (model
checkpoints, loadable with :func:`keyreid_stream.model.registry.load_model`), ``metrics.csv``, ``tensorboard/``,
``config.yaml``, ``results.json`` and the PNG reports of the test evaluation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from keyreid_stream.config.loader import dump_yaml
from keyreid_stream.data.datasets import read_split
from keyreid_stream.data.sampling import IdentitySampler
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.data.video import TrainBatch, TrainClips, collate_train
from keyreid_stream.eval.runner import dataset_title, query_counts
from keyreid_stream.inference.device import resolve_amp
from keyreid_stream.model.checkpoint import save_checkpoint
from keyreid_stream.train import setup
from keyreid_stream.train.config import TrainingConfig
from keyreid_stream.train.evaluation import evaluate_tracklets
from keyreid_stream.train.metrics import MetricsLog
from keyreid_stream.train.state import RunPosition, load_training_state, save_training_state
from keyreid_stream.train.validation import carve_validation

__all__ = ["DivergedError", "TrainSummary", "train", "train_splits"]

logger = logging.getLogger(__name__)


class DivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainSummary:
    output: Path
    epochs_run: int
    optimiser_steps: int
    selected: Path  # the model checkpoint the test numbers belong to
    best: dict[str, Any]  # best validation result ({} without validation)
    test: dict[str, dict[str, float]] | None
    losses: list[float]  # total loss of every optimiser step run by this call (for checks)
    seconds: float
    completed: bool = True  # False: stopped early (resume to continue)


class _Run:
    """The objects of one run and the step function; built once, then :meth:`fit` loops over the epochs."""

    def __init__(self, config: TrainingConfig, processes: setup.Processes, *, load_pretrained: bool = True) -> None:
        self.config, self.processes = config, processes
        data, run = config.data, config.run
        self.output = Path(run.output)
        self.split = read_split(data.dataset, data.root, data.split)
        self.trainval = carve_validation(self.split.train, data.validation_ids, run.seed)
        self.labels = setup.label_map(self.trainval.train)
        torch.manual_seed(run.seed + processes.rank)
        # When resuming, the saved state replaces every weight: no ImageNet weights to fetch or read first.
        model_config = config.model if load_pretrained else dataclasses.replace(config.model, pretrained="")
        model = setup.build_run_model(model_config, num_classes=len(self.labels), split=self.split,
                                      image_size=data.image_size, clip_length=data.clip_length)
        self.model = model.to(processes.device)
        if run.sync_batchnorm and processes.world_size > 1:
            # torch leaves convert_sync_batchnorm unannotated
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # type: ignore[no-untyped-call]
        self.keypoints = setup.open_keypoints(data.keypoints, data.root, model, data.missing_keypoints)
        self.loss = setup.build_loss(model, len(self.labels), config).to(processes.device)
        self.optimizer, self.center_optimizer, self.scheduler = setup.build_optimizers(model, self.loss, config.optim)
        self.amp_dtype = resolve_amp(config.optim.amp, processes.device)
        use_scaler = self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(processes.device.type) if use_scaler else None
        self.fingerprint = setup.fingerprint(config)
        self.wrapped: torch.nn.Module = self.model
        if processes.world_size > 1:
            ids = [processes.device.index] if processes.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(self.model, device_ids=ids)
        self.sampler = IdentitySampler([self.labels[t.person_id] for t in self.trainval.train],
                                       config.sampler.ids_per_batch, config.sampler.tracklets_per_id,
                                       seed=run.seed, rank=processes.rank, world_size=processes.world_size)
        augment = config.augment
        transform = ClipTransform(data.image_size, train=True, mean=augment.mean, std=augment.std,
                                  flip=augment.flip, pad=augment.pad, erase=augment.erase,
                                  erase_area=augment.erase_area, erase_aspect=augment.erase_aspect)
        self.dataset = TrainClips(data.root, self.trainval.train, [self.labels[t.person_id] for t in
                                                                   self.trainval.train],
                                  self.keypoints, transform, data.clip_length)
        self.position = RunPosition()
        self.losses: list[float] = []
        self.loader = self._loader()

    # ------------------------------------------------------------------------------------------- steps

    def steps_per_epoch(self) -> int:
        count = len(self.sampler.epoch_batches())
        limit = self.config.run.max_steps_per_epoch
        return min(count, limit) if limit else count

    def _forward_loss(self, batch: TrainBatch) -> dict[str, torch.Tensor]:
        device_type = self.processes.device.type
        keypoints = batch.keypoints if self.model.needs_keypoints else None
        with torch.autocast(device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            output = self.wrapped(batch.frames, keypoints, batch.cameras)
        result: dict[str, torch.Tensor] = self.loss(output, batch.labels, batch.erased)
        return result

    def _optimiser_step(self) -> None:
        if self.processes.world_size > 1:  # the centres live outside DDP: average their gradients by hand
            for centre in self.loss.center_parameters():
                if centre.grad is not None:
                    torch.distributed.all_reduce(centre.grad)
                    centre.grad.div_(self.processes.world_size)
        self.loss.rescale_center_grads()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.config.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.center_optimizer is not None:
            self.center_optimizer.step()
            self.center_optimizer.zero_grad(set_to_none=True)
        self.optimizer.zero_grad(set_to_none=True)
        self.position.global_step += 1

    def _batch_step(self, batch: TrainBatch, step_in_epoch: int, totals: dict[str, float]) -> None:
        accumulate = self.config.optim.accumulate
        terms = self._forward_loss(batch.to(self.processes.device))
        total = terms["total"]
        if not torch.isfinite(total):
            saved = self.output / "last.pt"
            raise DivergedError(f"the loss is {total.item()} at epoch {self.position.epoch + 1}, batch "
                                f"{step_in_epoch + 1}; lower the learning rate or check the data ({saved} "
                                "holds the state of the last finished epoch)")
        scaled = total / accumulate
        # GradScaler.scale is unannotated in torch
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()  # type: ignore[no-untyped-call]
        for name, value in terms.items():
            totals[name] += float(value.detach())
        totals["batches"] += 1
        if (step_in_epoch + 1) % accumulate == 0:
            self._optimiser_step()
            self.losses.append(float(total.detach()))

    # ------------------------------------------------------------------------------------------- loop

    def fit(self, log: MetricsLog | None, stop_after_steps: int | None = None,
            stop_event: threading.Event | None = None) -> bool:
        """Run the remaining epochs; False when stopped early, after ``stop_after_steps`` optimiser steps or when
        ``stop_event`` is set (at the next optimiser step); the state is then saved, and ``resume`` continues
        exactly there."""
        epochs = self.config.optim.epochs
        self.stop_at = None if stop_after_steps is None else self.position.global_step + stop_after_steps
        self.stop_event = stop_event
        while self.position.epoch < epochs:
            epoch = self.position.epoch
            self.scheduler.step(epoch)
            if self._should_stop() or not self._run_epoch(log):
                if self.processes.is_main:
                    self._save_state()
                logger.info("stopped after %d optimiser steps, at epoch %d batch %d; resume to continue",
                            self.position.global_step, epoch + 1, self.position.step_in_epoch)
                return False
            self.position.epoch, self.position.step_in_epoch = epoch + 1, 0
            if self.processes.is_main:
                self._save_state()
            if (epoch + 1) % self.config.run.eval_every == 0 or epoch + 1 == epochs:
                self._validate(epoch, log)
        return True

    def _loader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        workers = self.config.data.workers
        # Built once: the batch sampler is iterated in this process at the start of every epoch (after set_epoch),
        # the workers only load items, and they persist across epochs.
        return DataLoader(self.dataset, batch_sampler=self.sampler, collate_fn=collate_train, num_workers=workers,
                          pin_memory=self.processes.device.type == "cuda", persistent_workers=workers > 0,
                          generator=torch.Generator(), prefetch_factor=4 if workers else None)

    def _run_epoch(self, log: MetricsLog | None) -> bool:
        """One epoch from the current position; False when the step budget ran out first."""
        epoch, skip = self.position.epoch, self.position.step_in_epoch
        self.sampler.set_epoch(epoch, skip=skip)
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        steps = self.steps_per_epoch()
        totals: dict[str, float] = defaultdict(float)
        window: dict[str, float] = defaultdict(float)
        started, bar = time.perf_counter(), self._progress(epoch, steps, skip)
        for step, batch in enumerate(self.loader, start=skip):
            if step >= steps:
                break
            self._batch_step(batch, step, window)
            self.position.step_in_epoch = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{window['total'] / max(window['batches'], 1):.3f}")
            if (step + 1) % self.config.run.log_every == 0:
                self._log_window(log, window, started)
                for key, value in window.items():
                    totals[key] += value
                window = defaultdict(float)
            every = self.config.run.checkpoint_every_steps
            if every and (step + 1) % every == 0 and self._at_step_boundary(step) and self.processes.is_main:
                self._save_state()
            if self._at_step_boundary(step) and step + 1 < steps and self._should_stop():
                if bar is not None:
                    bar.close()
                return False
        for key, value in window.items():
            totals[key] += value
        if bar is not None:
            bar.close()
        if log is not None and totals["batches"]:
            values = {k: v / totals["batches"] for k, v in totals.items() if k != "batches"}
            log.write("epoch", epoch + 1, self.position.global_step, {**values, "lr": self._lr()})
        return True

    def _should_stop(self) -> bool:
        """The step budget is spent or a stop was requested (on any process: they all stop at the same step)."""
        wanted = self.stop_at is not None and self.position.global_step >= self.stop_at
        wanted = wanted or (self.stop_event is not None and self.stop_event.is_set())
        if self.processes.world_size > 1:
            flag = torch.tensor([float(wanted)], device=self.processes.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            wanted = bool(flag.item())
        return wanted

    def _at_step_boundary(self, step: int) -> bool:
        return (step + 1) % self.config.optim.accumulate == 0

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _progress(self, epoch: int, steps: int, skip: int) -> Any:
        if not (self.config.run.progress and self.processes.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=steps, initial=skip, desc=f"epoch {epoch + 1}/{self.config.optim.epochs}",
                    unit="batch", dynamic_ncols=True, leave=False)

    def _log_window(self, log: MetricsLog | None, window: dict[str, float], started: float) -> None:
        if log is None or not window["batches"]:
            return
        values = {k: v / window["batches"] for k, v in window.items() if k != "batches"}
        clips = self.sampler.batch_size * self.processes.world_size * self.position.step_in_epoch
        values.update(lr=self._lr(), clips_per_second=clips / max(time.perf_counter() - started, 1e-9))
        log.write("train", self.position.epoch + 1, self.position.global_step, values)

    def _save_state(self) -> None:
        save_training_state(self.output / "last.pt", model=self.model, loss=self.loss, optimizer=self.optimizer,
                            center_optimizer=self.center_optimizer, scaler=self.scaler, position=self.position,
                            fingerprint=self.fingerprint)

    def resume(self, path: Path) -> None:
        self.position = load_training_state(path, model=self.model, loss=self.loss, optimizer=self.optimizer,
                                            center_optimizer=self.center_optimizer, scaler=self.scaler,
                                            fingerprint=self.fingerprint)

    def _validate(self, epoch: int, log: MetricsLog | None) -> None:
        if self.processes.is_main and self.trainval.query:
            result = evaluate_tracklets(self.model, self.trainval.query, self.trainval.gallery, self.config,
                                        keypoints=self.keypoints, device=self.processes.device,
                                        amp_dtype=self.amp_dtype, protocol="standard", rerank=False)
            metrics = result.standard.as_dict()
            if log is not None:
                log.write("validation", epoch + 1, self.position.global_step, metrics)
            logger.info("epoch %d validation: mAP %.2f%%, rank-1 %.2f%% (%d of %d queries)", epoch + 1,
                        100 * metrics["mAP"], 100 * metrics["rank1"], *query_counts(result.standard))
            if metrics["mAP"] > self.position.best.get("mAP", -math.inf):
                self.position.best = {"epoch": epoch + 1, **metrics}
                save_checkpoint(self.model, self.output / "best.pt",
                                extra={"epoch": epoch + 1, **metrics, **_input_normalisation(self.config)})
                self._save_state()
        self.processes.barrier()


def _resume_path(resume: str | os.PathLike[str] | None, output: Path) -> Path | None:
    if resume is None:
        return None
    if str(resume) == "auto":
        candidate = output / "last.pt"
        return candidate if candidate.exists() else None
    return Path(resume)


def train(config: TrainingConfig, *, resume: str | os.PathLike[str] | None = None, evaluate_test: bool = True,
          stop_after_steps: int | None = None, stop_event: threading.Event | None = None) -> TrainSummary:
    """Train as configured.

    ``resume``: a ``last.pt`` to continue from, or ``"auto"`` (the output folder's, if any). ``stop_after_steps``:
    stop after that many optimiser steps of this call, with the state saved (for time-limited jobs);
    ``stop_event``: set it (e.g. from a SIGTERM handler) to stop the same way at the next optimiser step. A
    stopped run's summary has ``completed`` False, ``selected`` = the training state and ``test`` None.
    """
    started = time.perf_counter()
    processes = setup.init_processes(config.run.device)
    resume_from = _resume_path(resume, Path(config.run.output))
    run = _Run(config, processes, load_pretrained=resume_from is None)
    if resume_from is not None:
        run.resume(resume_from)
    log = None
    if processes.is_main:
        run.output.mkdir(parents=True, exist_ok=True)
        (run.output / "config.yaml").write_text(dump_yaml(config), encoding="utf-8")
        log = MetricsLog(run.output, tensorboard=config.run.tensorboard)
        logger.info("training %s on %s: %d identities, %d tracklets, %d batches per epoch, %s",
                    config.model.arch, config.data.dataset, len(run.labels), len(run.trainval.train),
                    run.steps_per_epoch(), processes.device)
    start_epoch = run.position.epoch
    try:
        completed = run.fit(log, stop_after_steps, stop_event)
        selected, test = _finish(run, log, evaluate_test) if completed else (run.output / "last.pt", None)
    finally:
        if log is not None:
            log.close()
    return TrainSummary(run.output, run.position.epoch - start_epoch, run.position.global_step, selected,
                        dict(run.position.best), test, run.losses, time.perf_counter() - started, completed)


def _input_normalisation(config: TrainingConfig) -> dict[str, list[float]]:
    """Saved with the model: the worker and image search normalise crops as the model was trained."""
    return {"input_mean": list(config.augment.mean), "input_std": list(config.augment.std)}


def _finish(run: _Run, log: MetricsLog | None, evaluate_test: bool) -> tuple[Path, dict[str, Any] | None]:
    """Save the final model, reload the selected one and evaluate it once on the test split."""
    selected = run.output / "final.pt"
    test = None
    if run.processes.is_main:
        save_checkpoint(run.model, selected, extra={"epoch": run.position.epoch, **_input_normalisation(run.config)})
        if run.position.best:
            selected = run.output / "best.pt"
            from keyreid_stream.model.checkpoint import load_checkpoint

            load_checkpoint(run.model, selected, "native")
        if evaluate_test and run.split.query:
            config = run.config
            result = evaluate_tracklets(run.model, run.split.query, run.split.gallery, config,
                                        keypoints=run.keypoints, device=run.processes.device, amp_dtype=run.amp_dtype,
                                        reports=run.output / "reports" if config.eval.reports else None,
                                        title=f"{config.model.arch} on {dataset_title(config.data.dataset, config.data.root)}")
            test = result.as_dict()
            if log is not None:
                log.write("test", run.position.epoch, run.position.global_step, result.standard.as_dict())
            payload = {"selected": selected.name, "best_validation": run.position.best, "test": test,
                       "split": run.split.split, "dataset": run.config.data.dataset}
            (run.output / "results.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    run.processes.barrier()
    return selected, test


def train_splits(config: TrainingConfig, splits: list[int], *, resume: str | None = None,
                 stop_event: threading.Event | None = None) -> dict[str, Any]:
    """Train and test one model per split (iLIDS-VID, PRID-2011) into ``<output>/split-N``; returns and writes
    ``<output>/summary.json`` with each split's test numbers and their mean and standard deviation."""
    import numpy as np

    base = Path(config.run.output)
    per_split: dict[str, Any] = {}
    for number in splits:
        split_config = dataclasses.replace(
            config, data=dataclasses.replace(config.data, split=number),
            run=dataclasses.replace(config.run, output=str(base / f"split-{number}")))
        summary = train(split_config, resume=resume, stop_event=stop_event)
        if not summary.completed:
            break
        if summary.test is not None:
            per_split[str(number)] = summary.test["standard"]
    metrics = sorted({name for values in per_split.values() for name in values})
    mean_std = {name: (float(np.mean([v[name] for v in per_split.values()])),
                       float(np.std([v[name] for v in per_split.values()]))) for name in metrics}
    result = {"dataset": config.data.dataset, "splits": splits, "per_split": per_split, "mean_std": mean_std}
    if int(os.environ.get("RANK", "0")) == 0:
        base.mkdir(parents=True, exist_ok=True)
        (base / "summary.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
