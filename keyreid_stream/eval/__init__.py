"""Evaluation.

Exported here: ranking metrics (CMC, mAP, mINP; :mod:`.rank`), distances (:mod:`.distance`) and k-reciprocal
re-ranking (:mod:`.rerank`), numpy/torch, imported when first used, so that the torch-free modules load without
torch: MOTChallenge files (:mod:`.mot`) and multi-camera tracking metrics (:mod:`.mtmc`, numpy/scipy). Import on
demand: :mod:`.features` and :mod:`.runner` (a model on a query/gallery split) and :mod:`.figures` (the PNG
reports, with matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RankResult", "aggregate_results", "evaluate_rank", "official_camera_ids", "pairwise_distances",
           "re_ranking"]

_SOURCES = {
    "RankResult": "rank", "aggregate_results": "rank", "evaluate_rank": "rank", "official_camera_ids": "rank",
    "pairwise_distances": "distance", "re_ranking": "rerank",
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
