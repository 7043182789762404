"""The clock rule (keyreid_stream.clock): media time below 1e9 s, UTC wall clock above, each time saying which."""

from __future__ import annotations

import pytest

from keyreid_stream.clock import MEDIA_TIME_LIMIT, clock_note, clock_of, format_time, is_media_time


@pytest.mark.parametrize(("seconds", "short", "expected"), [
    (0.0, False, "0:00:00.0 media"),
    (46.24, False, "0:00:46.2 media"),
    (46.25, False, "0:00:46.3 media"),  # half up, as the browser rounds
    (59.96, False, "0:01:00.0 media"),
    (3723.96, False, "1:02:04.0 media"),
    (3723.96, True, "1:02:04"),
    (-1.5, False, "-0:00:01.5 media"),
    (MEDIA_TIME_LIMIT - 1, False, "277777:46:39.0 media"),
    (MEDIA_TIME_LIMIT, False, "2001-09-09 01:46:40 UTC"),
    (1_700_000_000.9, False, "2023-11-14 22:13:20 UTC"),
    (1_700_000_000.9, True, "22:13:20"),
    (None, False, "-"),
    (float("nan"), False, "-"),
])
def test_format_time(seconds: float | None, short: bool, expected: str) -> None:
    assert format_time(seconds, short=short) == expected


def test_which_clock() -> None:
    assert [clock_of(t) for t in (0.0, 80.0, 999_999_999.9, 1e9, 1.7e9)] == ["media"] * 3 + ["wall"] * 2
    assert is_media_time(12.0) and not is_media_time(1.7e9)
    assert clock_note([]) == clock_note([None, float("inf")]) == ""
    assert clock_note([1.0, 80.0]).startswith("times are media time (h:mm:ss from the start of the video")
    assert clock_note([1.7e9]) == "times are UTC wall clock (live cameras, files read in real time)"
    assert "media time" in clock_note([1.0, 1.7e9]) and "UTC wall clock" in clock_note([1.0, 1.7e9])
