"""Re-identification evaluation.

Exported here: ranking metrics (CMC, mAP, mINP; :mod:`.rank`), distances (:mod:`.distance`) and k-reciprocal
re-ranking (:mod:`.rerank`), all numpy/torch only. Import on demand: :mod:`.features` and :mod:`.runner` (a model
on a query/gallery split) and :mod:`.figures` (the PNG reports, with matplotlib).
"""

from keyreid_stream.eval.distance import pairwise_distances
from keyreid_stream.eval.rank import RankResult, aggregate_results, evaluate_rank, official_camera_ids
from keyreid_stream.eval.rerank import re_ranking

__all__ = ["RankResult", "aggregate_results", "evaluate_rank", "official_camera_ids", "pairwise_distances",
           "re_ranking"]
