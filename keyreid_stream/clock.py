"""Which clock a time is on, and how every output shows it: the one rule for times in keyreid-stream.

Frame, tracklet and identity times are seconds on one of two clocks:

* **wall clock**: unix seconds, shown in UTC. Live sources (cameras, streams, webcams) stamp each frame with the
  time it was captured, and files replayed in real time (``pace``) with the time each frame was due, so that they
  behave like a camera. The matcher's own times (when a tracklet was ingested, when it was decided, when a
  heartbeat arrived, when a report was written) are always wall clock.
* **media time**: seconds from the start of the recording, ``start_time + index / fps`` with ``start_time`` 0 by
  default. Files and image folders read as fast as possible use it: reading faster than real time must not stamp
  frames with moments that have not happened yet. Give ``start_time`` (the recording's real start, unix seconds)
  to put a recording on the wall clock.

A time below :data:`MEDIA_TIME_LIMIT` (10^9 s: 31 years of video, or 2001-09-09 as a unix time) is media time,
anything else wall clock. :func:`format_time` writes either so that it says which it is
(``0:01:04.6 media`` / ``2026-12-04 20:33:46 UTC``), and :func:`clock_note` is the sentence an output prints to
say which clock its times are on. The identity browser (``matcher/api/browser/common.js``) follows the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Literal

__all__ = ["MEDIA_TIME_LIMIT", "Clock", "clock_note", "clock_of", "format_time", "is_media_time"]

MEDIA_TIME_LIMIT = 1e9

Clock = Literal["media", "wall"]

_NOTES = {
    frozenset(): "",
    frozenset({"media"}): "times are media time (h:mm:ss from the start of the video: files read faster than real "
                          "time)",
    frozenset({"wall"}): "times are UTC wall clock (live cameras, files read in real time)",
    frozenset({"media", "wall"}): "times are media time (h:mm:ss from the start of the video, files read faster "
                                  "than real time) or UTC wall clock (live cameras, files read in real time), as "
                                  "each says",
}


def is_media_time(seconds: float) -> bool:
    """Whether ``seconds`` is media time (below :data:`MEDIA_TIME_LIMIT`) rather than unix seconds."""
    return seconds < MEDIA_TIME_LIMIT


def clock_of(seconds: float) -> Clock:
    return "media" if is_media_time(seconds) else "wall"


def _media(seconds: float, decimals: int) -> str:
    sign = "-" if seconds < 0 else ""
    scale = 10 ** decimals
    total = math.floor(abs(seconds) * scale + 0.5)  # half up, as the browser's Math.round
    hours, rest = divmod(total, 3600 * scale)
    minutes, rest = divmod(rest, 60 * scale)
    whole, fraction = divmod(rest, scale)
    return f"{sign}{hours}:{minutes:02d}:{whole:02d}" + (f".{fraction:0{decimals}d}" if decimals else "")


def format_time(seconds: float | None, *, short: bool = False) -> str:
    """``0:01:04.6 media`` or ``2026-12-04 20:33:46 UTC``; ``short``: ``0:01:04`` or ``20:33:46`` (for places
    where the output already states the clock); ``-`` for None or a non-finite value."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if is_media_time(seconds):
        return _media(seconds, 0) if short else f"{_media(seconds, 1)} media"
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.strftime("%H:%M:%S") if short else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def clock_note(times: Iterable[float | None]) -> str:
    """The sentence that says which clock ``times`` are on ("" when there is none)."""
    clocks = frozenset(clock_of(t) for t in times if t is not None and math.isfinite(t))
    return _NOTES[clocks]
