"""Clip sampling and the P x K identity sampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from keyreid_stream.data.sampling import IdentitySampler, clip_batches, dense_clips, restricted_random_clip


@pytest.mark.parametrize("frames, length", [(1, 4), (3, 4), (4, 4), (5, 4), (17, 4), (100, 8), (9, 1)])
def test_restricted_random_takes_one_frame_per_chunk(frames: int, length: int) -> None:
    rng = np.random.default_rng(0)
    bounds = np.arange(length + 1) * frames // length
    for _ in range(50):
        clip = restricted_random_clip(frames, length, rng)
        assert clip.shape == (length,)
        assert np.all(np.diff(clip) >= 0) and clip.min() >= 0 and clip.max() < frames
        for chunk, index in enumerate(clip):
            low, high = bounds[chunk], max(bounds[chunk + 1], bounds[chunk] + 1)
            assert min(low, frames - 1) <= index < max(high, 1) + (low >= frames)


def test_restricted_random_covers_every_frame_of_a_chunk() -> None:
    rng = np.random.default_rng(1)
    seen = Counter(int(restricted_random_clip(8, 4, rng)[0]) for _ in range(400))
    assert set(seen) == {0, 1}


@pytest.mark.parametrize("frames, length, cap, expected", [
    (1, 4, None, [[0, 0, 0, 0]]),
    (4, 4, None, [[0, 1, 2, 3]]),
    (6, 4, None, [[0, 1, 2, 3], [4, 5, 5, 5]]),
    (8, 2, 2, [[0, 1], [6, 7]]),
    (12, 2, 3, [[0, 1], [4, 5], [10, 11]]),
])
def test_dense_clips(frames: int, length: int, cap: int | None, expected: list[list[int]]) -> None:
    assert dense_clips(frames, length, cap).tolist() == expected


@pytest.mark.parametrize("call, message", [
    (lambda: dense_clips(0, 4), "at least one frame"),
    (lambda: dense_clips(4, 0), "clip_length"),
    (lambda: dense_clips(4, 4, 0), "max_clips"),
    (lambda: restricted_random_clip(0, 4, np.random.default_rng()), "at least one frame"),
    (lambda: clip_batches([1], 0), "max_clips"),
    (lambda: IdentitySampler([0, 1], 4, 2), "needs 4 identities"),
    (lambda: IdentitySampler([0, 1, 2, 3], 3, 2, world_size=2), "multiple of the number of processes"),
    (lambda: IdentitySampler([0, 1], 2, 2, rank=2, world_size=2), "rank must be"),
])
def test_bad_arguments(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_clip_batches_group_up_to_the_limit() -> None:
    assert clip_batches([3, 3, 2, 10, 1], 8) == [[0, 1, 2], [3], [4]]


def _labels() -> list[int]:
    rng = np.random.default_rng(3)
    return [int(label) for label in rng.integers(0, 12, size=80)] + list(range(12))


def test_identity_batches_have_p_ids_with_k_tracklets_each() -> None:
    labels = _labels()
    sampler = IdentitySampler(labels, 4, 3, seed=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 3
    for batch in batches:
        counts = Counter(labels[item.index] for item in batch)
        assert len(batch) == 12 and len(counts) == 4 and set(counts.values()) == {3}


def test_epochs_are_reproducible_and_differ() -> None:
    labels = _labels()
    first, again = IdentitySampler(labels, 4, 2, seed=1), IdentitySampler(labels, 4, 2, seed=1)
    again.set_epoch(0)
    assert list(first) == list(again)
    again.set_epoch(1)
    assert list(again) != list(first)


def test_skip_resumes_mid_epoch() -> None:
    sampler = IdentitySampler(_labels(), 4, 2, seed=2)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, skip=2)
    assert list(sampler) == full[2:] and len(sampler) == len(full) - 2


def test_ranks_split_each_batch_into_whole_identities() -> None:
    labels = _labels()
    whole = list(IdentitySampler(labels, 4, 2, seed=9))
    parts = [list(IdentitySampler(labels, 4, 2, seed=9, rank=r, world_size=2)) for r in range(2)]
    for batch, first, second in zip(whole, *parts, strict=True):
        assert first + second == batch
        assert not {labels[i.index] for i in first} & {labels[i.index] for i in second}
