"""The pose-backend factory: backends by name, their options, and unknown names explained."""

from __future__ import annotations

import pytest

from keyreid_stream.keypoints.backends import create_backend
from keyreid_stream.keypoints.pose import PoseError, PriorPose


@pytest.mark.parametrize(("name", "message"), [
    ("yolopose", "did you mean 'yolo-pose'"), ("openpose", "known: pifpaf, yolo-pose, blazepose, prior"),
    ("blaze-pose", "did you mean 'blazepose'"),
])
def test_unknown_backend_names_are_explained(name: str, message: str) -> None:
    with pytest.raises(PoseError, match=message):
        create_backend(name)


def test_create_backend_passes_options() -> None:
    backend = create_backend("prior", confidence=0.8)
    assert isinstance(backend, PriorPose) and backend.confidence == 0.8
