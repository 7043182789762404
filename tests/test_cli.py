"""The keyreid-stream command line: help, version, config show, errors with a readable line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from keyreid_stream import __version__
from keyreid_stream.cli import main

REPO = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ("config", "sample", "demo", "model")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse exits for --help / --version / usage errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("argv", [["config", "--help"], ["config", "show", "--help"], ["sample", "--help"],
                                  ["sample", "fetch", "--help"], ["demo", "--help"], ["model", "--help"],
                                  ["model", "convert", "--help"], ["model", "export", "--help"]])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "usage: keyreid-stream" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"keyreid-stream {__version__}"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 2 and "commands" in out


def test_config_show_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "config", "show", str(REPO / "configs" / "demo.yaml"), "demo.max_frames=7",
                           "logging.level=WARNING")
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["demo"]["max_frames"] == 7 and shown["demo"]["sources"] == ["sample"]
    assert shown["logging"] == {"level": "WARNING", "format": "text"}


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("demo:\n  max_frame: 3\n", [], "demo.max_frame: unknown key 'max_frame' (did you mean 'max_frames'?)"),
        ("demo:\n  stride: two\n", [], "demo.stride: must be an integer, got str 'two'"),
        ("demo:\n  stride: 0\n", [], "demo: stride must be >= 1"),
        ("logging:\n  level: LOUD\n", [], "logging.level: must be one of"),
        ("", ["demo.nope=1"], "override 'demo.nope=1': demo.nope: unknown key 'nope'"),
    ],
)
def test_config_errors_are_one_readable_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, overrides: list[str], expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, out, err = run_cli(capsys, "config", "show", str(path), *overrides)
    assert code == 2 and out == ""
    assert err.startswith("keyreid-stream: config error: ") and expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("sources", [["missing.avi", "other.avi"], ["one.avi"]])
def test_demo_with_bad_cameras_is_a_readable_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   sources: list[str]) -> None:
    arguments = [part for source in sources for part in ("--source", str(tmp_path / source))]
    code, _, err = run_cli(capsys, "demo", "--models", "classical", *arguments)
    assert code == 1 and "Traceback" not in err
    assert "camera source not found" in err or "at least two cameras" in err


def test_console_script_is_declared() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == {"keyreid-stream": "keyreid_stream.cli:main"}


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "keyreid_stream", "--version"], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == f"keyreid-stream {__version__}"


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "keyreid-stream"
    if not script.exists():
        pytest.skip("package not installed in this interpreter's environment")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and all(name in result.stdout for name in SUBCOMMANDS)


def test_building_the_parser_imports_no_heavy_library() -> None:
    """Every command (``query``, ``matcher``, ...) builds the whole parser first: it must not pay for torch."""
    code = ("import sys, keyreid_stream.cli as cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'timm', 'cv2', 'faiss', 'fastapi', 'ultralytics') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("argv", [
    ["config", "show", str(REPO / "configs" / "demo.yaml"), "demo.nope=1"],
    ["demo", "demo.nope=1"],
    ["worker", "detector.nope=1"],
    ["matcher", "association.nope=1"],
    ["train", "--config", str(REPO / "configs" / "keyreid_synthetic.yaml"), "optim.nope=1"],
    ["train", "--config", str(REPO / "configs" / "keyreid_synthetic.yaml"), "optim.epochs=-1"],
    ["eval", "--config", str(REPO / "configs" / "keyreid_synthetic.yaml"), "--checkpoint", "x.pt", "data.nope=1"],
])
def test_a_config_error_exits_2_from_every_command(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """One rule (README): 2 for a bad command line or configuration (nothing ran), 1 for a run that failed."""
    code, _, err = run_cli(capsys, *argv)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("keyreid-stream: config error: ") and "override '" in last, err


def test_overrides_may_follow_options(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse takes the KEY=VALUE list in one piece; overrides after an option are overrides all the same."""
    from keyreid_stream.cli import build_parser, parse_arguments

    args = parse_arguments(build_parser(), ["demo", "demo.stride=4", "--report", "", "demo.max_frames=9",
                                            "--source", "a", "logging.level=DEBUG"])
    assert args.overrides == ["demo.stride=4", "demo.max_frames=9", "logging.level=DEBUG"] and args.report == ""
    args = parse_arguments(build_parser(), ["matcher", "association.threshold=0.7", "--http", ":9", "redis.prefix=x"])
    assert args.overrides == ["association.threshold=0.7", "redis.prefix=x"] and args.http == ":9"
    code, _, err = run_cli(capsys, "sample", "fetch", "demo.stride=4")  # a command without overrides
    assert code == 2 and "unrecognized arguments: demo.stride=4" in err
