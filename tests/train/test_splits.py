"""Multi-split datasets (iLIDS-VID layout): one model per split, mean and std over the splits, eval with {split}."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from keyreid_stream.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PEOPLE = 12


def _ilidsvid(holder: Path) -> None:
    """A small iLIDS-VID tree with real images (one colour per person, noise per frame) and its splits .mat."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 255, size=(PEOPLE, 3))
    for camera in ("cam1", "cam2"):
        for person in range(PEOPLE):
            folder = holder / "i-LIDS-VID" / "sequences" / camera / f"person{person + 1:03d}"
            folder.mkdir(parents=True)
            for frame in range(4):
                image = np.clip(colours[person] + rng.normal(0, 25, size=(64, 32, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f"{camera}_person{person + 1:03d}_{frame:05d}.png"), image)
    splits = holder / "train-test people splits"
    splits.mkdir()
    ls_set = np.stack([rng.permutation(PEOPLE) + 1 for _ in range(10)]).astype(np.float64)
    scipy.io.savemat(str(splits / "train_test_splits_ilidsvid.mat"), {"ls_set": ls_set})


@pytest.mark.slow
def test_train_every_split_then_evaluate_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _ilidsvid(tmp_path / "ilids")
    out = tmp_path / "runs"
    common = ["--config", str(CONFIGS / "keyreid_synthetic.yaml"), "data.dataset=ilidsvid",
              f"data.root={tmp_path / 'ilids'}", "data.keypoints=prior", "data.workers=0", "optim.epochs=1",
              "sampler.ids_per_batch=2", "data.validation_ids=0.3", "run.progress=false", "run.tensorboard=false",
              "eval.reports=false", "eval.protocol=standard"]
    assert main(["train", *common, f"run.output={out}", "--splits", "0,1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == [0, 1] and set(summary["per_split"]) == {"0", "1"}
    maps = [summary["per_split"][s]["mAP"] for s in ("0", "1")]
    assert summary["mean_std"]["mAP"] == pytest.approx([np.mean(maps), np.std(maps)])
    capsys.readouterr()
    assert main(["eval", *common, "eval.reports=true", "--checkpoint", str(out / "split-{split}" / "best.pt"),
                 "--splits", "0,1", "--output", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert [s["standard"]["mAP"] for s in evaluated["per_split"]] == pytest.approx(maps)
    assert "±" in capsys.readouterr().out
    # a gallery of 6 tracklets: the ranked lists show 6, not 10
    for split in (0, 1):
        assert (tmp_path / "eval" / f"split-{split}" / "reports" / "ranked_lists.png").exists()
