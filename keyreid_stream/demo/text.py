"""The demo's printed summary: what ran, and the identities seen on more than one camera with their time spans."""

from __future__ import annotations

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
    lines += ["", f"identities: {len(result.identities)}, of which {len(cross)} seen on more than one camera"
                  " (times: seconds from the start of the videos):"]
    lines += _table(cross[:max_rows], cameras, result.time_origin)
    if len(cross) > max_rows:
        lines.append(f"  ... and {len(cross) - max_rows} more")
    quality = result.link_quality
    if quality is not None:
        lines += ["", "links checked against the views' geometry (both views are crops of one video, so which tracks "
                      "show the same person is known from their boxes):",
                  f"  {quality.correct_pairs} of {quality.predicted_pairs} linked track pairs are right (precision "
                  f"{quality.precision:.2f}); {quality.correct_pairs} of the {quality.true_pairs} true pairs were "
                  f"found (recall {quality.recall:.2f})"]
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


def _table(identities: tuple[IdentityReport, ...], cameras: list[str], origin: float) -> list[str]:
    if not identities:
        return ["  (none)"]
    header = f"  {'identity':<12}" + "".join(f"{camera:<20}" for camera in cameras) + "tracklets"
    rows = [header]
    for identity in identities:
        spans = {span.camera_id: span for span in identity.spans}
        cells = []
        for camera in cameras:
            span = spans.get(camera)
            cells.append(f"{span.start - origin:6.1f} - {span.end - origin:6.1f} s" if span else "-")
        rows.append(f"  {identity.identity_id:<12}" + "".join(f"{cell:<20}" for cell in cells)
                    + str(len(identity.tracklet_ids)))
    return rows
