"""The demo's printed summary: what ran, and the identities seen on more than one camera with their time spans."""

from __future__ import annotations

from keyreid_stream.clock import clock_note, format_time
from keyreid_stream.demo.geometry import METHOD
from keyreid_stream.demo.models import ModelChoice
from keyreid_stream.demo.run import DemoResult
from keyreid_stream.demo.summary import IdentityReport

__all__ = ["format_result", "upgrade_lines"]

MAX_ROWS = 30


def format_result(result: DemoResult, *, max_rows: int = MAX_ROWS) -> str:
    cameras = [camera.camera_id for camera in result.cameras]
    lines = [f"keyreid-stream demo: {len(cameras)} cameras -> {len(cameras)} camera workers -> matcher (Redis) "
             "-> identities", ""]
    lines += ["cameras:"]
    for camera in result.cameras:
        frames = result.frames_per_camera.get(camera.camera_id, 0)
        tracklets = result.tracklets_per_camera.get(camera.camera_id, 0)
        lines.append(f"  {camera.camera_id:<10} {camera.description}; {frames} frames, {tracklets} tracklets")
    lines += ["", "models:"] + [f"  {line}" for line in result.models.lines]
    lines += [f"  {line}" for line in upgrade_lines(result.models)]
    total_frames = sum(result.frames_per_camera.values())
    lines += ["", f"processing: {total_frames} frames in {result.processing_s:.1f} s "
                  f"({total_frames / max(result.processing_s, 1e-9):.1f} frames/s over all cameras); "
                  f"whole demo {result.elapsed_s:.1f} s"]
    cross = result.cross_camera
    note = clock_note(span.start for identity in cross for span in identity.spans)
    lines += ["", f"identities: {len(result.identities)}, of which {len(cross)} seen on more than one camera"
                  + (f"; {note}:" if note else ":")]
    lines += _table(cross[:max_rows], cameras)
    if len(cross) > max_rows:
        lines.append(f"  ... and {len(cross) - max_rows} more")
    quality = result.link_quality
    if quality is not None:
        lines += ["", f"links checked against the views' geometry ({METHOD}):", f"  {quality.describe()}"]
    if result.report_path is not None:
        lines += ["", f"report: {result.report_path} (open it in a web browser)"]
    return "\n".join(lines)


def upgrade_lines(models: ModelChoice) -> list[str]:
    """What would make the run better, as the exact commands."""
    if not models.upgrade:
        return []
    note = "re-ID quality is limited without trained weights; " if models.quality_limited else ""
    return [(f"NOTE: {note}'{models.upgrade_command}' (needs internet; offline: 'keyreid-stream weights import "
             "NAME PATH') fetches the better models, which the demo then uses; or run 'scripts/dev demo "
             "--fetch-models'")]


def _table(identities: tuple[IdentityReport, ...], cameras: list[str]) -> list[str]:
    """One row per identity, its first and last time per camera (the clock is stated above the table)."""
    if not identities:
        return ["  (none)"]
    header = f"  {'identity':<12}" + "".join(f"{camera:<22}" for camera in cameras) + "tracklets"
    rows = [header]
    for identity in identities:
        spans = {span.camera_id: span for span in identity.spans}
        cells = []
        for camera in cameras:
            span = spans.get(camera)
            cells.append(f"{format_time(span.start, short=True)} - {format_time(span.end, short=True)}"
                         if span else "-")
        rows.append(f"  {identity.identity_id:<12}" + "".join(f"{cell:<22}" for cell in cells)
                    + str(len(identity.tracklet_ids)))
    return rows
