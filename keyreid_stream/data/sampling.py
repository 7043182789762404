"""Which tracklets go into a batch and which frames go into a clip.

* :class:`IdentitySampler` -- P x K batches (P identities, K tracklets each), the batch layout that the batch-hard
  triplet loss needs (Hermans et al. 2017). Every epoch is a pure function of ``(seed, epoch)``, and every item
  carries its own augmentation seed, so a run resumed from a checkpoint sees exactly the batches and the
  augmentations an uninterrupted run would have seen, whatever the number of loader workers. With several
  processes (DistributedDataParallel) each rank takes a contiguous slice of every batch: whole identities, so each
  rank's slice is itself a P/world x K batch.
* :func:`restricted_random_clip` -- the training clip: the tracklet cut into T equal chunks, one random frame from
  each (Li et al. 2018, "Diversity Regularized Spatiotemporal Attention for Video-based Person Re-identification").
* :func:`dense_clips` -- the test clips: the whole tracklet as consecutive T-frame clips, the descriptor being the
  mean over clips. The camera worker samples its tracklets with the same function.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["IdentitySampler", "SampledItem", "clip_batches", "dense_clips", "restricted_random_clip"]

logger = logging.getLogger(__name__)


def restricted_random_clip(num_frames: int, clip_length: int, rng: np.random.Generator) -> np.ndarray:
    """``clip_length`` frame indices in temporal order, one drawn from each of ``clip_length`` equal chunks.

    A tracklet shorter than the clip repeats frames (each chunk still holds at least one frame).
    """
    _check_lengths(num_frames, clip_length)
    bounds = np.arange(clip_length + 1) * num_frames // clip_length
    starts = bounds[:-1]
    ends = np.maximum(bounds[1:], starts + 1)
    starts = np.minimum(starts, num_frames - 1)
    return (starts + rng.integers(0, 1 << 30, size=clip_length) % (ends - starts)).astype(np.int64)


def dense_clips(num_frames: int, clip_length: int, max_clips: int | None = None) -> np.ndarray:
    """``(num_clips, clip_length)`` frame indices: consecutive clips covering the tracklet.

    The last clip is filled up by repeating the tracklet's last frame. With more than ``max_clips`` clips, that
    many are kept, spread evenly over the tracklet (first and last included), so a long tracklet is still seen
    from start to end.
    """
    _check_lengths(num_frames, clip_length)
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be >= 1 or None, got {max_clips}")
    count = -(-num_frames // clip_length)
    indices = np.minimum(np.arange(count * clip_length), num_frames - 1).reshape(count, clip_length)
    if max_clips is not None and count > max_clips:
        keep = np.unique(np.linspace(0, count - 1, max_clips).round().astype(np.int64))
        indices = indices[keep]
    return indices


def _check_lengths(num_frames: int, clip_length: int) -> None:
    if num_frames < 1:
        raise ValueError(f"a tracklet needs at least one frame, got {num_frames}")
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1, got {clip_length}")


def clip_batches(clip_counts: Sequence[int], max_clips: int) -> list[list[int]]:
    """Group consecutive tracklets (by index) so that each group holds at most ``max_clips`` clips.

    A tracklet with more clips than ``max_clips`` forms a group of its own (the model then runs it in chunks).
    """
    if max_clips < 1:
        raise ValueError(f"max_clips must be >= 1, got {max_clips}")
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, count in enumerate(clip_counts):
        if current and total + count > max_clips:
            groups.append(current)
            current, total = [], 0
        current.append(index)
        total += count
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class SampledItem:
    """One training item: the tracklet's index in the dataset and the seed of its clip sampling and augmentation."""

    index: int
    seed: int


class IdentitySampler:
    """P x K batches over tracklets labelled with identities; iterate it for one epoch of batches.

    Per epoch each identity's tracklets are shuffled and cut into groups of K (the last group filled up by
    re-drawing from that identity, as is an identity with fewer than K tracklets); batches then take P identities
    at random among those with groups left, until fewer than P remain. ``skip`` batches at the start of the epoch
    are passed over (resuming mid-epoch).
    """

    def __init__(self, labels: Sequence[int], ids_per_batch: int, tracklets_per_id: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if ids_per_batch < 1 or tracklets_per_id < 1:
            raise ValueError(f"ids_per_batch and tracklets_per_id must be >= 1, got {ids_per_batch}, "
                             f"{tracklets_per_id}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
        if ids_per_batch % world_size:
            raise ValueError(f"ids_per_batch ({ids_per_batch}) must be a multiple of the number of processes "
                             f"({world_size}) so that every process gets whole identities")
        by_id: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_id[int(label)].append(index)
        if len(by_id) < ids_per_batch:
            raise ValueError(f"a batch needs {ids_per_batch} identities, the training set has {len(by_id)}")
        self.by_id = {label: np.array(indices) for label, indices in sorted(by_id.items())}
        self.ids_per_batch, self.tracklets_per_id = ids_per_batch, tracklets_per_id
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.skip = 0, 0
        self._cached: tuple[int, list[list[SampledItem]]] | None = None

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    @property
    def batch_size(self) -> int:
        """Items per batch on this process."""
        return self.ids_per_batch * self.tracklets_per_id // self.world_size

    def _groups(self, rng: np.random.Generator) -> dict[int, list[np.ndarray]]:
        k = self.tracklets_per_id
        groups: dict[int, list[np.ndarray]] = {}
        for label, indices in self.by_id.items():
            order = rng.permutation(indices)
            missing = -len(order) % k
            if missing:
                order = np.concatenate([order, rng.choice(indices, size=missing, replace=True)])
            groups[label] = [order[start:start + k] for start in range(0, len(order), k)]
        return groups

    def epoch_batches(self) -> list[list[SampledItem]]:
        """All batches of the current epoch on this process (before ``skip``)."""
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self._draw_epoch())
        return self._cached[1]

    def _draw_epoch(self) -> list[list[SampledItem]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = self._groups(rng)
        batches: list[list[SampledItem]] = []
        while True:
            available = [label for label, left in groups.items() if left]
            if len(available) < self.ids_per_batch:
                break
            chosen = rng.choice(available, size=self.ids_per_batch, replace=False)
            indices = np.concatenate([groups[int(label)].pop(0) for label in chosen])
            seeds = rng.integers(0, 2**63 - 1, size=len(indices))
            batch = [SampledItem(int(i), int(s)) for i, s in zip(indices, seeds)]
            share = self.batch_size
            batches.append(batch[self.rank * share:(self.rank + 1) * share])
        return batches

    def __iter__(self) -> Iterator[list[SampledItem]]:
        yield from self.epoch_batches()[self.skip:]

    def __len__(self) -> int:
        return max(len(self.epoch_batches()) - self.skip, 0)
