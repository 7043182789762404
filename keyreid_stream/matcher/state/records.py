"""The matcher's data contracts: what it stores per tracklet, what it decides, and what it answers.

* :class:`StoredTracklet` -- one ingested tracklet as the matcher keeps it (Redis hash <-> this), with its
  L2-normalised descriptor and, once associated, its global identity.
* :class:`Decision` -- why a tracklet got its identity: the kind, the score and the runner-up candidates.
* :class:`Change` -- a correction by the re-clustering pass (merge two identities, split a tracklet off).

Descriptors from different models are never compared: :attr:`StoredTracklet.space` names the descriptor space
(model name, version and dimension).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["EPOCH_PATTERN", "IDENTITY_ID_PATTERN", "Change", "Decision", "DecisionKind", "StoredTracklet",
           "descriptor_space", "identity_id", "next_epoch", "normalize"]

DecisionKind = Literal["new", "appearance", "continuation"]

# A store epoch names one life of the matcher's Redis data: a new one is made when the data is created, and again
# when the matcher finds that Redis lost it (a restart without persistence, an old snapshot). It is the unix second
# of its creation in base 36 (6 characters until 2038), always above the epoch it replaces.
EPOCH_PATTERN = r"[0-9a-z]{1,13}"
# Identity ids: ``g<n>-<epoch>`` (``g42-tbx2kq``), n from the store's counter; ``g<n>`` without an epoch is what
# matchers before epochs wrote, still read. The epoch keeps an id from being reused when the counter starts over.
IDENTITY_ID_PATTERN = rf"g[0-9]{{1,19}}(?:-{EPOCH_PATTERN})?"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def identity_id(number: int, epoch: str) -> str:
    """The id of identity ``number`` of store epoch ``epoch``."""
    return f"g{number}-{epoch}"


def next_epoch(now: float, after: str | None = None) -> str:
    """A new store epoch at unix time ``now``: base 36 of the second, and above ``after`` (the epoch replaced)."""
    value = max(int(now), int(after, 36) + 1 if after else 0)
    text = ""
    while True:
        value, digit = divmod(value, 36)
        text = _DIGITS[digit] + text
        if not value:
            return text


def descriptor_space(model_name: str, model_version: str, dim: int) -> str:
    """The name of a descriptor space: descriptors are comparable only within one space."""
    return f"{model_name}@{model_version}/{dim}"


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32 (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    normalized: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalized


@dataclass(frozen=True, eq=False)
class StoredTracklet:
    """One tracklet in the matcher. ``tracklet_id`` is the worker's message id (unique, 32 hex chars);
    ``descriptor`` is L2-normalised float32 (D,); ``identity`` is None until association has run."""

    tracklet_id: str
    camera_id: str
    track_id: int
    start_time: float
    end_time: float
    num_frames: int
    space: str
    descriptor: np.ndarray = field(repr=False)
    identity: str | None = None
    ingested_at: float = 0.0

    def overlaps(self, other: StoredTracklet, margin_s: float = 0.0) -> bool:
        """True when the two time spans intersect (closed intervals, widened by ``margin_s``)."""
        return self.start_time <= other.end_time + margin_s and other.start_time <= self.end_time + margin_s


@dataclass(frozen=True)
class Decision:
    """The association of one new tracklet.

    ``kind``: "new" (no candidate identity reached the threshold: ``identity`` was created for it),
    "appearance" (joined ``identity`` because of its best link to ``matched_tracklet`` with ``score``) or
    "continuation" (a later segment of a track already assigned: same camera, same track id, score 1).
    ``candidates``: the best identities considered (the chosen one included), as (identity, score, tracklet_id),
    best first, so a decision can be explained; ``rejected``: identities excluded by a constraint, as
    (identity, reason), the best-scoring ones first (at most a few).
    """

    tracklet_id: str
    identity: str
    kind: DecisionKind
    score: float
    matched_tracklet: str | None = None
    candidates: tuple[tuple[str, float, str], ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Change:
    """A correction by the re-clustering pass.

    ``kind`` "merge": every tracklet of ``source`` moves into ``target`` (``score``: the linkage between them);
    "split": ``tracklets`` leave ``source`` for the new identity ``target`` (``score``: their similarity to the
    rest of ``source``, below the split threshold).
    """

    kind: Literal["merge", "split"]
    source: str
    target: str
    score: float
    tracklets: tuple[str, ...] = ()
