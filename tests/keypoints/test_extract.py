"""Dataset keypoint extraction on a MARS-layout tree of real JPEGs: summary, bad frames, resume, the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from keyreid_stream.cli import main
from keyreid_stream.data.layouts import list_tracklets
from keyreid_stream.keypoints.extract import extract_dataset, extract_keypoints
from keyreid_stream.keypoints.pose import PriorPose
from keyreid_stream.keypoints.store import KeypointStore

# (person, camera, tracklet, frames)
TRACKLETS = [("0001", 1, 1, 5), ("0001", 2, 1, 3), ("0002", 1, 1, 4), ("0003", 3, 2, 6)]


def _write_mars(root: Path, corrupt: tuple[str, ...] = ()) -> list[str]:
    rng = np.random.default_rng(0)
    written = []
    for person, camera, tracklet, frames in TRACKLETS:
        folder = root / "bbox_train" / person
        folder.mkdir(parents=True, exist_ok=True)
        for frame in range(1, frames + 1):
            path = folder / f"{person}C{camera}T{tracklet:04d}F{frame:03d}.jpg"
            cv2.imwrite(str(path), rng.integers(0, 255, size=(64, 32, 3), dtype=np.uint8))
            written.append(path.relative_to(root).as_posix())
    for name in corrupt:
        (root / name).write_bytes(b"\xff\xd8 not really a jpeg")
    return written


class CountingPrior(PriorPose):
    """The prior backend, counting the images it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.images_seen = 0

    def _detect_batch(self, images):  # type: ignore[no-untyped-def]
        self.images_seen += len(images)
        return super()._detect_batch(images)


def test_extraction_stores_every_frame_and_reports_bad_ones(tmp_path: Path) -> None:
    corrupt = "bbox_train/0002/0002C1T0001F002.jpg"
    paths = _write_mars(tmp_path / "mars", corrupt=(corrupt,))
    store = KeypointStore.create(tmp_path / "kp", dataset="mars", backend="prior")
    summary = extract_keypoints(list_tracklets("mars", tmp_path / "mars"), tmp_path / "mars", store,
                                PriorPose(), batch_size=4)
    assert (summary.tracklets_done, summary.frames, summary.frames_unreadable) == (4, 18, 1)
    assert summary.unreadable == [corrupt] and summary.mean_confidence == pytest.approx(0.5)
    stored = KeypointStore.open(tmp_path / "kp")
    assert len(stored) == 18 and stored.status_of(corrupt) == "unreadable" and not stored[corrupt].any()
    expected = PriorPose().estimate_crops([np.zeros((64, 32, 3), np.uint8)])[0]
    np.testing.assert_allclose(stored[paths[0]], expected, atol=0.02)


def test_interrupted_extraction_resumes_without_redoing_finished_tracklets(tmp_path: Path) -> None:
    _write_mars(tmp_path / "mars")
    tracklets = list_tracklets("mars", tmp_path / "mars")
    store = KeypointStore.create(tmp_path / "kp", dataset="mars", backend="prior")
    batches = []

    def stop_after_two_batches(frames: int) -> None:
        batches.append(frames)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_keypoints(tracklets, tmp_path / "mars", store, PriorPose(), batch_size=4, flush_frames=1,
                          progress=stop_after_two_batches)
    stored_keys = KeypointStore.open(tmp_path / "kp").tracklet_keys()
    # 8 frames seen: the 5-frame tracklet and the 3-frame one are complete and stored; nothing else is.
    assert stored_keys == {"bbox_train/0001C1T0001", "bbox_train/0001C2T0001"}

    backend = CountingPrior()
    resumed = extract_keypoints(tracklets, tmp_path / "mars", KeypointStore.open(tmp_path / "kp"), backend,
                                batch_size=4, flush_frames=1)
    assert resumed.tracklets_skipped == 2 and resumed.tracklets_done == 2
    assert backend.images_seen == 4 + 6  # only the frames of the two unfinished tracklets

    reference = KeypointStore.create(tmp_path / "ref", dataset="mars", backend="prior")
    extract_keypoints(tracklets, tmp_path / "mars", reference, PriorPose())
    final = KeypointStore.open(tmp_path / "kp")
    every_path = [path for tracklet in tracklets for path in tracklet.paths]
    np.testing.assert_array_equal(final.get_many(every_path), reference.get_many(every_path))
    assert final.tracklet_keys() == {t.key for t in tracklets} and len(final) == len(every_path)


def test_a_finished_extraction_does_not_load_the_backend_again(tmp_path: Path) -> None:
    _write_mars(tmp_path / "mars")
    first, store = extract_dataset("mars", tmp_path / "mars", "prior")
    again, _ = extract_dataset("mars", tmp_path / "mars", "prior")
    assert store.folder == tmp_path / "mars" / "keypoints-prior"
    assert (first.frames, again.frames, again.tracklets_skipped) == (18, 0, 4)
    assert len((store.folder / "runs.jsonl").read_text().splitlines()) == 2


def test_cli_extracts_reports_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_mars(tmp_path / "mars", corrupt=("bbox_train/0003/0003C3T0002F001.jpg",))
    argv = ["keypoints", "extract", "--dataset", "mars", "--root", str(tmp_path / "mars"), "--backend", "prior",
            "--out", str(tmp_path / "kp"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "frames: 18" in out and "frames_unreadable: 1" in out and "unreadable: bbox_train/0003/" in out
    assert main(argv) == 0
    assert "tracklets_skipped: 4" in capsys.readouterr().out
    assert main(["keypoints", "info", str(tmp_path / "kp")]) == 0
    info = capsys.readouterr().out
    assert "frames: 18" in info and "unreadable: 1" in info and "backend: prior" in info


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "mars", "--root", "{tmp}/absent", "--backend", "prior"], "does not exist"),
    (["--dataset", "prid", "--root", "{tmp}/mars", "--backend", "prior"], "no prid tracklets"),
])
def test_cli_explains_bad_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                   message: str) -> None:
    _write_mars(tmp_path / "mars")
    code = main(["keypoints", "extract", "--no-progress", *(a.format(tmp=tmp_path) for a in argv)])
    assert code == 1
    err = capsys.readouterr().err
    assert "keyreid-stream: error:" in err and message in err


@pytest.mark.slow
def test_yolo_pose_extraction_with_a_real_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    _write_mars(tmp_path / "mars")
    options = {"model": "yolo11n-pose.yaml", "device": "cpu", "image_size": 64, "confidence": 0.0}
    summary, store = extract_dataset("mars", tmp_path / "mars", "yolo-pose", backend_options=options,
                                     batch_size=8)
    assert summary.frames == 18 and len(store) == 18
    keypoints = store.get_many([p for t in list_tracklets("mars", tmp_path / "mars") for p in t.paths])
    assert keypoints.shape == (18, 17, 3) and np.isfinite(keypoints).all()
    assert ((keypoints[..., 2] >= 0) & (keypoints[..., 2] <= 1)).all()
