"""The demo's printed summary states which clock its times are on, and shows them as the report and the identity
browser do (keyreid_stream.clock): media time for files read faster than real time, UTC wall clock otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from keyreid_stream.demo.geometry import LinkQuality
from keyreid_stream.demo.models import ModelChoice
from keyreid_stream.demo.run import DemoCamera, DemoResult
from keyreid_stream.demo.summary import CameraSpan, IdentityReport, Member
from keyreid_stream.demo.text import format_result

CAMERAS = (DemoCamera("cam-left", "left.avi", "sample video, left"), DemoCamera("cam-right", "right.avi", "right"))


def _result(t0: float) -> DemoResult:
    both = IdentityReport("g3", (CameraSpan("cam-left", t0 + 4.6, t0 + 12.0, 1), CameraSpan("cam-right", t0 + 6.2,
                                                                                             t0 + 75.8, 2)),
                          (Member("a" * 32, "cam-left", 7), Member("b" * 32, "cam-right", 9)))
    alone = IdentityReport("g1", (CameraSpan("cam-left", t0, t0 + 3.0, 1),), (Member("c" * 32, "cam-left", 1),))
    models = ModelChoice({}, {}, {}, {"threshold": 0.6}, True, ("people: HOG",))
    return DemoResult(CAMERAS, models, 1_764_880_000.0, (both, alone), {"cam-left": 2, "cam-right": 2},
                      {"cam-left": 400, "cam-right": 400}, 12.0, 30.0, "http://127.0.0.1:1", "redis://x",
                      Path("."), link_quality=LinkQuality(10, 8, 6))


@pytest.mark.parametrize(("t0", "note", "row"), [
    (0.0, "times are media time (h:mm:ss from the start of the video", ["0:00:05 - 0:00:12", "0:00:06 - 0:01:16"]),
    (1_764_880_000.0, "times are UTC wall clock", ["20:26:44 - 20:26:52", "20:26:46 - 20:27:55"]),
])
def test_the_summary_says_which_clock(t0: float, note: str, row: list[str]) -> None:
    text = format_result(_result(t0))
    assert f"identities: 2, of which 1 seen on more than one camera; {note}" in text
    line = next(line for line in text.splitlines() if line.strip().startswith("g3 "))
    assert re.split(r"\s{2,}", line.strip()) == ["g3", *row, "2"]
    assert "6 of 8 linked track pairs are right (precision 0.75); 6 of the 10 true pairs were found (recall 0.60)" \
        in text
