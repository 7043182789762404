"""Shared by the benchmarks: describe the machine and update one section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from pathlib import Path

HEADER = "# Benchmarks\n\nEach section is written by a script in `bench/`.\n"


def machine() -> str:
    """CPU model, core count, Python and numpy versions (and the GPU when torch sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores", f"Python {platform.python_version()}"]
    try:
        import numpy

        parts.append(f"numpy {numpy.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def write_section(path: Path, title: str, body: str) -> None:
    """Replace (or append) the section ``## title`` of a markdown file, leaving the other sections alone."""
    text = path.read_text() if path.exists() else HEADER
    marker = f"\n## {title}\n"
    if marker in text:
        before, rest = text.split(marker, 1)
        after = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = before + marker + body + after
    else:
        text = text.rstrip("\n") + "\n" + marker + body
    path.write_text(text.rstrip("\n") + "\n")


def rate(value: float) -> str:
    """A count or rate for a table cell: thousands separators from 100 up, 3 significant digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def milliseconds(seconds: float) -> str:
    """Seconds as milliseconds for a table cell, formatted like :func:`rate`."""
    return rate(seconds * 1e3)
