"""The validation split carved from the training identities."""

from __future__ import annotations

import pytest

from keyreid_stream.data.datasets import VideoTracklet
from keyreid_stream.train.validation import carve_validation


def _tracklets(cameras_per_id: list[int]) -> list[VideoTracklet]:
    items = []
    for pid, cameras in enumerate(cameras_per_id):
        for cam in range(cameras):
            for n in range(2):
                items.append(VideoTracklet(f"{pid}/{cam}/{n}", (f"{pid}_{cam}_{n}.jpg",), pid, cam))
    return items


def test_held_out_identities_leave_training_and_can_be_queried() -> None:
    tracklets = _tracklets([3, 2, 1, 3, 2, 2, 3, 2, 2, 3])
    split = carve_validation(tracklets, 0.3, seed=1)
    held = set(split.held_out_ids)
    assert len(held) == 3 and not held & {t.person_id for t in split.train}
    assert 2 not in held  # seen by one camera only: never chosen
    assert len(split.train) + len(split.query) + len(split.gallery) == len(tracklets)
    for query in split.query:
        assert any(g.person_id == query.person_id and g.camera_id != query.camera_id for g in split.gallery)
    assert carve_validation(tracklets, 0.3, seed=1) == split
    assert carve_validation(tracklets, 0.3, seed=2) != split


def test_two_cameras_give_query_on_the_first_and_gallery_on_the_second() -> None:
    split = carve_validation(_tracklets([2] * 10), 0.2, seed=0)
    assert {t.camera_id for t in split.query} == {0} and {t.camera_id for t in split.gallery} == {0, 1}
    assert len(split.query) == 2


def test_no_validation() -> None:
    tracklets = _tracklets([2, 2])
    split = carve_validation(tracklets, 0.0, seed=0)
    assert split.train == tuple(tracklets) and not split.query and not split.gallery


@pytest.mark.parametrize("cameras, fraction, message", [
    ([1, 1, 1, 1, 2, 2], 0.45, "cannot hold out"),
    ([2, 2, 2], 0.3, "cannot hold out"),
    ([2] * 4, 0.6, r"fraction must be in \[0, 0.5\)"),
])
def test_impossible_requests(cameras: list[int], fraction: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        carve_validation(_tracklets(cameras), fraction, seed=0)
