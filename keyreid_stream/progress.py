"""Progress estimates for long runs (a worker reading files, the demo): how much is left, at the rate so far."""

from __future__ import annotations

__all__ = ["format_time_left", "time_left"]


def time_left(done: float, total: float, elapsed_s: float) -> float | None:
    """Seconds until ``total`` at the average rate so far; None while there is no rate yet."""
    if done <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, total - done) * elapsed_s / done


def format_time_left(seconds: float | None) -> str:
    """``about 40 s left``, ``about 3 min left`` ... (``time left: estimating`` without an estimate)."""
    if seconds is None:
        return "time left: estimating"
    if seconds < 90:
        return f"about {max(1, round(seconds / 5) * 5) if seconds >= 5 else max(1, round(seconds))} s left"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min left"
    return f"about {seconds / 3600:.1f} h left"
