"""Every command line written in README.md and docs/ parses with the real command-line parser.

The command lines are taken from the Markdown itself: the lines of fenced code blocks and the inline code spans
that start with ``keyreid-stream`` or ``scripts/dev`` (continuation lines joined). Each is split like a shell
would and dry-parsed by ``keyreid-stream``'s argparse parser (nothing runs, no ``--help``); ``scripts/dev`` lines
are checked against what the script accepts (its tasks; ``run keyreid-stream ...`` and ``demo ...`` parse as
the command they start; ``test ...`` names only test paths that exist and declared markers). ``KEY=VALUE``
overrides are loaded into the command's configuration schema: the keys exist, the values have the right type.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

from keyreid_stream.cli import build_parser, parse_arguments

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
PROGRAMS = ("keyreid-stream", "scripts/dev")
DEV_TASKS = tuple(re.findall(r"^ {4}([a-z][a-z-]*)\)$", (REPO / "scripts" / "dev").read_text(), re.M))  # its cases


@dataclass(frozen=True)
class DocumentedCommand:
    where: str  # file:line
    line: str
    inline: bool = False  # an inline code span in prose (it may only name a command)

    def __str__(self) -> str:
        return f"{self.where}: {self.line}"


def _strip_comment(line: str) -> str:
    """A shell line without its trailing ``# comment`` (a ``#`` outside quotes, after a blank)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _split_commands(line: str) -> list[str]:
    """The program invocations in one shell line (``a && b``, ``a; b``, ``a | b``; operators inside quotes are
    text), those of our programs only."""
    parts, current, quote, i = [], "", "", 0
    while i < len(line):
        char = line[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif line.startswith(("&&", "||"), i) or char in ";|":
            parts.append(current)
            current, i = "", i + (2 if line.startswith(("&&", "||"), i) else 1)
            continue
        current += char
        i += 1
    parts.append(current)
    return [part.strip() for part in parts if re.match(_PROGRAM, part.strip())]


_PROGRAM = re.compile(r"(?:keyreid-stream|scripts/dev)(?:\s|$)")  # not "keyreid-stream: error: ..." (output)


def extract_commands(path: Path) -> list[DocumentedCommand]:
    """The documented command lines of one Markdown file: code block lines and inline code spans."""
    commands: list[DocumentedCommand] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    in_block, pending, start = False, "", 0
    for number, raw in enumerate(lines, 1):
        if raw.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            text = _strip_comment(raw)
            if pending:
                text, start = pending + " " + text.strip(), start
            else:
                text, start = text.strip(), number
            if text.endswith("\\"):
                pending = text[:-1].rstrip()
                continue
            pending = ""
            for command in _split_commands(text):
                commands.append(DocumentedCommand(f"{path.name}:{start}", command))
        else:
            for span in re.findall(r"`([^`]+)`", raw):
                for command in _split_commands(span):
                    commands.append(DocumentedCommand(f"{path.name}:{number}", command, inline=True))
    return commands


ALL_COMMANDS = [command for document in DOCUMENTS for command in extract_commands(document)]


class _ParseError(Exception):
    pass


def _strict(parser: argparse.ArgumentParser) -> None:
    """Make a parser and its subparsers raise instead of printing usage and exiting."""

    def error(message: str) -> None:
        raise _ParseError(message)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _strict(sub)


def _names_a_command(parser: argparse.ArgumentParser, argv: list[str]) -> bool:
    """True when ``argv`` is only a (sub)command's name, as prose names one (`keyreid-stream eval-mtmc`)."""
    for word in argv:
        commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not commands or word not in commands[0].choices:
            return False
        parser = commands[0].choices[word]
    return True


def parse_keyreid(argv: list[str], *, inline: bool = False) -> argparse.Namespace:
    parser = build_parser()
    _strict(parser)
    if any(arg in ("-h", "--help", "--version") for arg in argv):
        return argparse.Namespace()  # a help line documents itself; parsing it would print and exit
    if inline and argv and _names_a_command(parser, argv):
        return argparse.Namespace()
    return parse_arguments(parser, argv)


def _declared_markers() -> set[str]:
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {marker.split(":")[0].strip() for marker in pytest_options["markers"]}


def check_dev(argv: list[str]) -> None:
    """``scripts/dev TASK ...`` other than ``demo`` and ``run keyreid-stream`` (those parse as the command)."""
    if not argv:
        return
    task, rest = argv[0], argv[1:]
    if task not in DEV_TASKS:
        raise _ParseError(f"scripts/dev has no task {task!r} (it has {', '.join(DEV_TASKS)})")
    if task == "install" and rest:
        raise _ParseError("scripts/dev install takes no arguments")
    elif task == "lint" and (len(rest) > 1 or rest and rest[0] not in ("ruff", "mypy")):
        raise _ParseError("scripts/dev lint takes at most one of ruff, mypy")
    elif task == "test":
        markers, words = _declared_markers(), iter(rest)
        for word in words:
            if word == "-m":
                expression = next(words, "")
                names = set(re.findall(r"[A-Za-z_]\w*", expression)) - {"and", "or", "not"}
                if names - markers:
                    raise _ParseError(f"undeclared pytest marker(s) {sorted(names - markers)}")
            elif not word.startswith("-") and not (REPO / word.split("::")[0]).exists():
                raise _ParseError(f"no test path {word}")


def _schemas() -> dict[str, type]:
    from keyreid_stream.config import Config
    from keyreid_stream.matcher.config import MatcherConfig
    from keyreid_stream.train.config import TrainingConfig
    from keyreid_stream.workers.config import WorkerConfig

    return {"demo": Config, "config": Config, "worker": WorkerConfig, "matcher": MatcherConfig,
            "train": TrainingConfig, "eval": TrainingConfig}


def check_overrides(argv: list[str], args: argparse.Namespace) -> None:
    """The KEY=VALUE overrides of a documented command name real keys with values of the right type (loaded on
    the documented config file when the repository has it, else on the defaults)."""
    from keyreid_stream.config import ConfigError, load_config

    overrides = getattr(args, "overrides", None)
    if not overrides or not argv:
        return
    schema = _schemas().get(argv[0])
    if schema is None:
        return
    config = getattr(args, "config", None)
    path = REPO / config if config is not None and (REPO / config).is_file() else None
    try:
        load_config(schema, path, overrides)
    except ConfigError as exc:
        raise _ParseError(f"config error: {exc}") from None


def check(command: DocumentedCommand) -> None:
    argv = shlex.split(command.line)
    if argv[0] == "keyreid-stream":
        check_overrides(argv[1:], parse_keyreid(argv[1:], inline=command.inline))
    elif argv[1:2] == ["demo"]:
        check_overrides(argv[1:], parse_keyreid(argv[1:], inline=command.inline))
    elif argv[1:3] == ["run", "keyreid-stream"]:
        check_overrides(argv[3:], parse_keyreid(argv[3:], inline=command.inline))
    else:
        check_dev(argv[1:])


def test_the_documents_hold_commands_to_check() -> None:
    """The extraction finds the commands (a broken extractor would make the parse test vacuous)."""
    lines = {command.line for command in ALL_COMMANDS}
    assert len(ALL_COMMANDS) > 60
    assert "keyreid-stream query identities --url http://127.0.0.1:8080" in lines
    assert "scripts/dev demo" in lines and any(line.startswith("scripts/dev test") for line in lines)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=str)
def test_documented_command_parses(command: DocumentedCommand) -> None:
    try:
        check(command)
    except _ParseError as exc:
        pytest.fail(f"{command}\n  does not parse: {exc}")


@pytest.mark.parametrize("line", ["keyreid-stream query --nope", "keyreid-stream frobnicate", "scripts/dev tset",
                                  "scripts/dev test -m sloww", "keyreid-stream worker --camera-id a b c --zz",
                                  "keyreid-stream model info/export", "keyreid-stream sample fetch x=1",
                                  "scripts/dev demo demo.max_frame=200", "keyreid-stream worker detector.kind=yolov9"])
def test_a_wrong_command_is_caught(line: str) -> None:
    with pytest.raises(_ParseError):
        check(DocumentedCommand("here", line))
