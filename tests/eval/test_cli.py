"""``keyreid-stream eval-mtmc`` in-process: the table, the JSON file, and user errors as one readable line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyreid_stream.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _write(path: Path, rows: list[tuple[int, int, int]]) -> None:
    """(frame, id, slot) rows; slots are 100 px apart and never overlap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f},{i},{100 * s},10,40,80,1,1,1\n" for f, i, s in rows))


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Person 1 on cam1 (frames 1-6) and cam2 (frames 1-4, MOTChallenge layout); predicted with ids 5 and 6."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt / "cam1.txt", [(f, 1, 0) for f in range(1, 7)])
    _write(gt / "cam2" / "gt" / "gt.txt", [(f, 1, 1) for f in range(1, 5)])
    _write(pred / "cam1.txt", [(f, 5, 0) for f in range(1, 7)])
    _write(pred / "cam2.txt", [(f, 6, 1) for f in range(1, 5)])
    return gt, pred


def test_prints_the_table_and_writes_json(capsys, folders: tuple[Path, Path], tmp_path: Path) -> None:
    gt, pred = folders
    report = tmp_path / "out" / "scores.json"
    code, out, err = run_cli(capsys, "eval-mtmc", "--gt", str(gt), "--pred", str(pred), "--json", str(report))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["camera", "IDF1"]
    assert lines[1].split()[:2] == ["cam1", "100.0"] and lines[2].split()[:2] == ["cam2", "100.0"]
    assert "MTMC" in lines[-2] and "IDF1 60.0" in lines[-2]  # ids 5 and 6 are one person: IDTP 6 of 10
    assert "MTMC HOTA" in lines[-1] and "AssA 52.0" in lines[-1]  # (6 x 6/10 + 4 x 4/10) / 10
    data = json.loads(report.read_text())
    assert [c["camera"] for c in data["cameras"]] == ["cam1", "cam2"]
    assert data["mtmc"] == {"idf1": pytest.approx(0.6), "idp": pytest.approx(0.6), "idr": pytest.approx(0.6),
                            "idtp": 6, "idfp": 4, "idfn": 4}


def test_iou_option(capsys, folders: tuple[Path, Path], tmp_path: Path) -> None:
    gt, pred = folders
    _write(pred / "cam1.txt", [(f, 5, 0) for f in range(1, 7)])
    (pred / "cam1.txt").write_text((pred / "cam1.txt").read_text().replace(",0,10,", ",10,10,"))  # IoU 0.6
    report = tmp_path / "s.json"
    assert run_cli(capsys, "eval-mtmc", "--gt", str(gt), "--pred", str(pred), "--iou", "0.7",
                   "--json", str(report))[0] == 0
    assert json.loads(report.read_text())["cameras"][0]["clear"]["matched"] == 0


@pytest.mark.parametrize(("change", "message"), [
    (lambda gt, pred: (pred / "cam3.txt").write_text("1,1,0,0,1,1\n"),
     "camera(s) cam3 of the predictions are not in the ground truth (cameras: cam1, cam2)"),
    (lambda gt, pred: (pred / "cam1.txt").write_text("1,5,0,10,40,80\n2,5,0,10\n"), "cam1.txt:2: expected 6 to 10"),
    (lambda gt, pred: (gt / "cam1.txt").write_text("1,1,0,10,forty,80\n"), "cam1.txt:1: not a number"),
    (lambda gt, pred: [p.unlink() for p in pred.iterdir()], "no MOT files"),
])
def test_user_errors_are_one_line(capsys, folders: tuple[Path, Path], change, message: str) -> None:
    gt, pred = folders
    change(gt, pred)
    code, out, err = run_cli(capsys, "eval-mtmc", "--gt", str(gt), "--pred", str(pred))
    assert code == 1 and out == ""
    assert err.startswith("keyreid-stream: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_missing_folder(capsys, folders: tuple[Path, Path], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "eval-mtmc", "--gt", str(tmp_path / "nothing"), "--pred", str(folders[1]))
    assert code == 1 and "nothing: no such folder" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--iou", "0"], ["--iou", "1.5"], ["--iou", "x"], []])
def test_usage_errors(capsys, folders: tuple[Path, Path], argv: list[str]) -> None:
    gt, pred = folders
    base = ["eval-mtmc", "--gt", str(gt)] + ([] if not argv else ["--pred", str(pred)])
    code, _, err = run_cli(capsys, *base, *argv)
    assert code == 2 and "eval-mtmc" in err
