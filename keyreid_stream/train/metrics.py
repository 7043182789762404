"""Training logs: one CSV row per logged step or evaluation, and the same scalars in TensorBoard.

``metrics.csv`` is in long format, one scalar per row: ``kind`` (``train``, ``epoch``, ``validation``, ``test``),
``epoch``, ``step`` (optimiser steps), ``name``, ``value``; rows of every kind share the file and a resumed run
appends to it. TensorBoard is optional: without the
``tensorboard`` package the scalars only go to the CSV file, and that is logged once.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["MetricsLog"]

logger = logging.getLogger(__name__)

COLUMNS = ("kind", "epoch", "step", "name", "value")


class MetricsLog:
    """Append scalars to ``folder/metrics.csv`` (long format: one row per scalar) and TensorBoard."""

    def __init__(self, folder: str | os.PathLike[str], *, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "metrics.csv"
        new = not self.path.exists()
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(COLUMNS)
        self._writer = self._tensorboard() if tensorboard else None

    def _tensorboard(self) -> object | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.warning("tensorboard is not installed; metrics go to %s only", self.path)
            return None
        return SummaryWriter(log_dir=str(self.folder / "tensorboard"))

    def write(self, kind: str, epoch: int, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            number = float(value)
            self._csv.writerow((kind, epoch, step, name, repr(number) if math.isfinite(number) else str(number)))
            if self._writer is not None:
                self._writer.add_scalar(f"{kind}/{name}", number, step)  # type: ignore[attr-defined]
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()  # type: ignore[attr-defined]

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
