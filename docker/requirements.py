"""Print the requirements of keyreid-stream's core and of the given extras, one per line, from pyproject.toml.

The images install these first (``pip install -c constraints.txt -r``), in their own layer, and the package itself
afterwards with ``--no-deps``: a change of the source then rebuilds seconds of work, not the multi-gigabyte layer
of torch and CUDA. An unknown extra is an error, so a misspelt build argument fails the build.

    python docker/requirements.py stream,pifpaf [pyproject.toml]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PROJECT = "keyreid-stream"


def requirements(extras: list[str], pyproject: Path) -> list[str]:
    """The core dependencies plus those of ``extras`` (self-references such as ``keyreid-stream[a,b]`` expanded)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    result: list[str] = list(project["dependencies"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise ValueError(f"unknown extra {extra!r}; pyproject.toml has: {', '.join(sorted(optional))}")
        seen.add(extra)
        for requirement in optional[extra]:
            nested = re.fullmatch(rf"{re.escape(PROJECT)}\[([^\]]+)\]", requirement.strip())
            if nested:
                pending += [name.strip() for name in nested.group(1).split(",")]
            elif requirement not in result:
                result.append(requirement)
    return result


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        sys.stderr.write(__doc__ or "")
        return 2
    extras = [name.strip() for name in argv[0].split(",") if name.strip()]
    try:
        lines = requirements(extras, Path(argv[1] if len(argv) > 1 else "pyproject.toml"))
    except ValueError as error:
        sys.stderr.write(f"requirements.py: {error}\n")
        return 1
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
