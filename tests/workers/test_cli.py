"""``keyreid-stream worker``: bad input gives one readable line and the right exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyreid_stream.cli import main


@pytest.mark.parametrize(("arguments", "status", "expected"), [
    ([], 1, "no camera"),
    (["--camera-id", "cam1"], 1, "--camera-id and --source go together"),
    (["--camera-id", "cam1", "--source", "{missing}"], 1, "no such file or directory"),
    (["--camera-id", "cam1", "--source", "{video}", "detector.colour=red"], 2, "detector.colour"),
    (["--camera-id", "cam1", "--source", "{video}", "tracklets.min_frames=0"], 2, "min_frames must be >= 1"),
    (["--camera-id", "cam1", "--source", "{video}", "--matcher", "http://x"], 1, "ZeroMQ endpoint"),
    (["--camera-id", "bad id!", "--source", "{video}", "embedding.arch=keyreid_test",
      "embedding.device=cpu"], 1, "camera_id"),
    (["--camera-id", "cam1", "--source", "{video}", "--detections", "{missing}", "embedding.arch=keyreid_test",
      "embedding.device=cpu"], 1, "missing.txt"),
    (["--camera-id", "cam1", "--source", "{video}"], 1, "not on this machine"),  # offline: no YOLO weights
    (["--camera-id", "cam1", "--source", "{video}", "detector.kind=hog", "embedding.arch=keyreid_tset"], 1,
     "did you mean"),
])
def test_worker_input_errors(arguments: list[str], status: int, expected: str, tmp_path: Path, mjpg_clip: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    values = {"missing": str(tmp_path / "missing.txt"), "video": str(mjpg_clip)}
    assert main(["worker", *(a.format(**values) for a in arguments)]) == status
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("keyreid-stream:")]
    assert len(errors) == 1 and expected in errors[0], errors
