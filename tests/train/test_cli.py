"""``keyreid-stream train``, ``eval`` and ``data`` end to end on the small synthetic dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest

from keyreid_stream.cli import main
from keyreid_stream.config import load_config
from keyreid_stream.model.registry import load_model
from keyreid_stream.train.config import TrainingConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

QUICK = ["data.workers=0", "optim.epochs=2", "run.eval_every=1", "run.progress=false", "run.tensorboard=false",
         "sampler.ids_per_batch=4", "data.validation_ids=0.2"]


@pytest.mark.parametrize("config_name", ["keyreid_synthetic.yaml", "rapa_synthetic.yaml"])
def test_train_then_eval_with_reports(config_name: str, small_dataset: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    config = str(CONFIGS / config_name)
    out = tmp_path / "run"
    assert main(["train", "--config", config, f"data.root={small_dataset}", f"run.output={out}", *QUICK]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"test \(standard, (\d+) of \1 queries\): mAP", printed), printed
    official = re.search(r"test \(official, \d+ of \d+ queries\): mAP", printed)
    assert bool(official) == config_name.startswith("keyreid")  # RAPA: standard protocol only
    assert re.search(r"best validation \(epoch \d+\): mAP [\d.]+% \(\d+ of \d+ queries\)", printed), printed
    for name in ("cmc.png", "ranked_lists.png", "part_weights.png", "attention.png"):
        image = cv2.imread(str(out / "reports" / name))
        assert image is not None and image.size > 0, name
    trained_with = load_config(TrainingConfig, config).augment
    extra = load_model(out / "best.pt").checkpoint_extra  # the worker normalises crops the same way
    assert (extra["input_mean"], extra["input_std"]) == (list(trained_with.mean), list(trained_with.std))
    code = main(["eval", "--config", config, f"data.root={small_dataset}", "data.workers=0", "--checkpoint",
                 str(out / "best.pt"), "--protocol", "both", "--rerank", "--output", str(tmp_path / "eval")])
    assert code == 0
    table = capsys.readouterr().out
    assert "standard" in table and "official" in table and "reranked" in table
    # one split: plain numbers, each protocol's valid queries beside them, and the data named as it is
    assert "±" not in table and table.startswith("synthetic (MARS layout), 1 split(s); in %"), table
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    assert all(re.match(r"\w+\s+\d+ of \d+\s+[\d.]+", row) for row in rows.values()), table
    summary = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert summary["per_split"][0]["standard"]["mAP"] == pytest.approx(results["test"]["standard"]["mAP"])


def test_eval_table_with_skipped_queries_and_several_splits() -> None:
    """The table puts each protocol's valid queries beside its numbers (the official protocol may skip many);
    several splits show mean ± std, one split the plain numbers."""
    import numpy as np

    from keyreid_stream.eval.rank import aggregate_results, evaluate_rank
    from keyreid_stream.train.cli import format_evaluation
    from keyreid_stream.train.evaluation import EvaluationSummary

    dist = np.array([[0.1, 0.5, 0.9], [0.4, 0.2, 0.6], [0.3, 0.8, 0.1]])
    pids, gallery_pids = np.array([1, 2, 3]), np.array([1, 2, 3])
    standard = evaluate_rank(dist, pids, gallery_pids, np.zeros(3, int), np.ones(3, int))
    official = evaluate_rank(dist, pids, gallery_pids, np.zeros(3, int), np.array([0, 0, 1]))  # 2 skipped
    one = EvaluationSummary("mars", (0,), ({},), {"standard": aggregate_results([standard]),
                                                   "official": aggregate_results([official])}, "MARS")
    lines = format_evaluation(one).splitlines()
    assert lines[0] == "MARS, 1 split(s); in %" and "±" not in "\n".join(lines)
    assert lines[2].split()[:4] == ["standard", "3", "of", "3"] and lines[3].split()[:4] == ["official", "1", "of", "3"]
    several = EvaluationSummary("prid", (0, 1), ({}, {}), {"official": aggregate_results([official, standard])},
                                "PRID-2011")
    table = format_evaluation(several)
    assert "mean ± std over splits" in table and "±" in table.splitlines()[2]
    assert table.splitlines()[2].split()[:4] == ["official", "2", "of", "3"]


def test_data_commands(small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", "--dataset", "mars", "--root", str(small_dataset)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["train_ids"] == 10 and info["query_tracklets"] > 0
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--train-ids", "3", "--test-ids", "2"]) == 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["train", "--config", str(CONFIGS / "keyreid_synthetic.yaml"), "data.root=/nonexistent/data"],
     "is not an existing directory"),
    (["eval", "--config", str(CONFIGS / "keyreid_synthetic.yaml"), "--checkpoint", "/nonexistent/best.pt"],
     "error"),
    (["eval", "--config", str(CONFIGS / "keyreid_ilidsvid.yaml"), "--checkpoint", "best.pt"], "{split}"),
    (["train", "--config", str(CONFIGS / "keyreid_synthetic.yaml"), "--splits", "x"], "--splits"),
])
def test_errors_are_one_line(arguments: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(arguments) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("keyreid-stream:")


def test_eval_the_authors_weights(small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A state dict with the authors' key names is evaluated in the configured architecture (official mode)."""
    import torch

    import authors_reference as authors

    reference = authors.AuthorsKeyReID(num_classes=10, num_cameras=3, **authors.tiny_kwargs())
    torch.save(reference.state_dict(), tmp_path / "authors.pth")
    code = main(["eval", "--config", str(CONFIGS / "keyreid_synthetic.yaml"), f"data.root={small_dataset}",
                 "data.workers=0", "model.options.compat=official", "eval.reports=false",
                 "--checkpoint", str(tmp_path / "authors.pth")])
    assert code == 0 and "standard" in capsys.readouterr().out
