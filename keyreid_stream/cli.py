"""The ``keyreid-stream`` command line: parse, set up logging once, call one typed function.

Each subcommand registers a parser and a handler ``(args) -> int``. Handlers load the configuration (a YAML file
plus ``key.sub=value`` overrides), unpack their own section into keyword arguments and call the library.
Expected failures (bad config, missing data, unreadable video) end with one readable line and a non-zero exit
status; unexpected ones are logged with their traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keyreid_stream import __version__
from keyreid_stream.config import Config, ConfigError, dump_yaml, load_config
from keyreid_stream.logs import setup_logging

logger = logging.getLogger("keyreid_stream.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        result: int = args.handler(args)
        return result
    except ConfigError as exc:
        print(f"keyreid-stream: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("keyreid-stream: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as exc:
        print(f"keyreid-stream: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


_OVERRIDE_RE = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*=.*", re.DOTALL)


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args``, except that ``key.sub=value`` overrides may also come after options
    (``demo --source a --source b demo.stride=4 --report '' demo.workdir=w``): argparse takes a positional list
    only in one piece, so the pieces after it are added to the command's overrides, in order."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(_OVERRIDE_RE.fullmatch(a) for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyreid-stream",
        description="Multi-camera video person re-identification with KeyRe-ID.",
        epilog="Run 'keyreid-stream COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default=None,
                        help="logging level (default: the config's logging.level, else INFO)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None, help="log line format")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_config_commands(commands)
    _add_sample_commands(commands)
    _add_demo_command(commands)
    _add_model_commands(commands)
    _add_keypoints_commands(commands)
    from keyreid_stream.weights.cli import add_commands as add_weights_commands

    add_weights_commands(commands)
    from keyreid_stream.train.cli import add_commands as add_training_commands

    add_training_commands(commands)
    from keyreid_stream.workers.cli import add_commands as add_worker_commands

    add_worker_commands(commands)
    from keyreid_stream.matcher.cli import add_commands as add_matcher_commands

    add_matcher_commands(commands)
    from keyreid_stream.eval.cli import add_commands as add_mtmc_commands

    add_mtmc_commands(commands)
    return parser


# --------------------------------------------------------------------------- shared helpers


def _add_config_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    if required:
        parser.add_argument("config", type=Path, help="YAML config file (see configs/)")
    else:
        parser.add_argument("--config", "-c", type=Path, default=None, help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. demo.max_frames=50")


def _load(args: argparse.Namespace) -> Config:
    """Load the config of a command and set up logging once from it and the global flags."""
    config = load_config(Config, args.config, args.overrides)
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    return config


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that carry a user-facing message; imported lazily so the CLI starts fast."""
    from keyreid_stream.contracts import ContractError
    from keyreid_stream.data.sample import SampleDataError
    from keyreid_stream.wire import WireError
    from keyreid_stream.workers.sources import SourceError

    errors: tuple[type[BaseException], ...] = (ContractError, SampleDataError, SourceError, WireError,
                                               FileNotFoundError)
    for module_name, error_name in _LAZY_ERRORS:  # modules loaded only by some commands
        module = sys.modules.get(module_name)
        if module is not None:
            errors += (getattr(module, error_name),)
    return errors


_LAZY_ERRORS = (
    ("keyreid_stream.model.checkpoint", "CheckpointError"),
    ("keyreid_stream.keypoints.pose", "PoseError"),
    ("keyreid_stream.keypoints.store", "StoreError"),
    ("keyreid_stream.keypoints.pifpaf_build", "PifPafBuildError"),
    ("keyreid_stream.data.layouts", "DatasetLayoutError"),
    ("keyreid_stream.train.state", "StateError"),
    ("keyreid_stream.train.cli", "TrainingInputError"),
    ("keyreid_stream.train.trainer", "DivergedError"),
    ("keyreid_stream.data.video", "FrameReadError"),
    ("keyreid_stream.workers.cli", "WorkerInputError"),
    ("keyreid_stream.workers.detection", "DetectorError"),
    ("keyreid_stream.matcher.cli", "MatcherInputError"),
    ("keyreid_stream.matcher.state.store", "StoreError"),
    ("keyreid_stream.query.client", "QueryError"),
    ("keyreid_stream.mot", "MotDataError"),
    ("keyreid_stream.demo.processes", "DemoProcessError"),
    ("keyreid_stream.demo.run", "DemoTimeout"),
    ("keyreid_stream.demo.run", "DemoInputError"),
    ("keyreid_stream.redis_server", "RedisServerError"),
    ("keyreid_stream.fetch", "FetchError"),
    ("keyreid_stream.weights.store", "WeightsError"),
    ("keyreid_stream.weights.catalogue", "CatalogueError"),
)


# --------------------------------------------------------------------------- config


def _add_config_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("config", help="inspect configuration files",
                                 description="Inspect configuration files.")
    sub = parser.add_subparsers(title="config commands", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="print the resolved config (defaults + file + overrides) as YAML",
                          description="Print the resolved configuration as YAML. Unknown keys and wrong "
                                      "types are an error naming the key and the file.")
    _add_config_arguments(show, required=True)
    show.set_defaults(handler=_config_show)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _config_show(args: argparse.Namespace) -> int:
    config = _load(args)
    sys.stdout.write(dump_yaml(config))
    return EXIT_OK


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


# --------------------------------------------------------------------------- sample data


def _add_sample_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("sample", help="the project's sample video",
                                 description="Find or fetch the sample pedestrian video used by the demo.")
    sub = parser.add_subparsers(title="sample commands", metavar="SUBCOMMAND")
    fetch = sub.add_parser("fetch", help="fetch the sample video into the cache (if missing) and print its path",
                           description="Fetch the sample video (OpenCV's vtest.avi) into the cache when it is "
                                       "missing: from an installed opencv-doc, Debian's opencv-doc package, "
                                       "or OpenCV's repository. Prints the path.")
    fetch.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default: the user cache)")
    fetch.add_argument("--no-download", action="store_true", help="only look locally, never download")
    fetch.set_defaults(handler=_sample_fetch)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _sample_fetch(args: argparse.Namespace) -> int:
    from keyreid_stream.data.sample import fetch_sample

    setup_logging(args.log_level or "INFO", args.log_format or "text")
    path = fetch_sample(cache_dir=args.cache_dir, allow_download=not args.no_download)
    print(path)
    return EXIT_OK


# --------------------------------------------------------------------------- demo


def _add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="run the end-to-end demo: cameras -> workers -> matcher (Redis) -> cross-camera identities",
        description="Run the whole system on this machine: a Redis server (a private one unless demo.redis is "
                    "set), the matcher and one camera worker per camera, each in its own process. By default the "
                    "cameras are two overlapping views cut from the sample video (fetched when missing). Prints "
                    "the identities seen on more than one camera with their time spans, then writes a static "
                    "HTML report (--report) or keeps the identity browser serving (--browse) until Ctrl-C. Uses "
                    "YOLO-pose and KeyRe-ID when their weights are available, else HOG, the keypoint prior and "
                    "part colour/texture histograms (and says that re-ID quality is then limited).")
    _add_config_arguments(demo, required=False)
    demo.add_argument("--source", action="append", default=None, metavar="SOURCE",
                      help="a camera: video file, stream URL (rtsp://...) or webcam index; repeat for each camera "
                           "(default: demo.sources, i.e. two overlapping views of the sample video)")
    demo.add_argument("--models", choices=("auto", "classical", "trained"), default=None,
                      help="auto (best available, default), classical (no weights) or trained (YOLO-pose + KeyRe-ID)")
    demo.add_argument("--fetch-models", action="store_true",
                      help="first fetch the catalogue's demo models (YOLO-pose, the authors' KeyRe-ID: "
                           "'keyreid-stream weights fetch demo'; needs internet once)")
    demo.add_argument("--report", default=None, metavar="FILE", help="write the HTML report here ('' for none)")
    demo.add_argument("--browse", action="store_true", help="keep the identity browser serving until Ctrl-C")
    demo.add_argument("--http", default=None, metavar="[HOST]:PORT", help="where the matcher's API and browser listen")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    import threading

    from keyreid_stream.data.sample import default_cache_dir
    from keyreid_stream.demo import choose_models, format_result, prepare_cameras, run_demo
    from keyreid_stream.demo.progress import format_progress
    from keyreid_stream.demo.text import upgrade_lines
    from keyreid_stream.signals import stop_on_signals

    options = _load(args).demo
    if args.fetch_models:
        _fetch_demo_models()
    browse = args.browse or options.browse
    report = options.report if args.report is None else args.report
    models = choose_models(args.models or options.models, detector_model=options.detector_model,
                           reid_checkpoint=options.reid_checkpoint, reid_arch=options.reid_arch,
                           reid_checkpoint_kind=options.reid_checkpoint_kind, reid_num_cameras=options.reid_num_cameras,
                           allow_pickle=options.allow_pickle, threshold=options.threshold)
    print("models:\n" + "\n".join(f"  {line}" for line in (*models.lines, *upgrade_lines(models))), flush=True)
    cameras = prepare_cameras(tuple(args.source) if args.source else options.sources, cache_dir=default_cache_dir(),
                              view_width=options.view_width, max_frames=options.max_frames)

    def show(result: object) -> None:
        print(format_result(result), flush=True)  # type: ignore[arg-type]
        if browse:
            print(f"\nidentity browser: {result.api_url}/browser/ (Ctrl-C to stop)", flush=True)  # type: ignore[attr-defined]

    with stop_on_signals(threading.Event(), "stopping the demo's processes") as stop:
        run_demo(cameras, models, stride=options.stride, max_frames=options.max_frames, pace=options.pace,
                 redis_url=options.redis, http=args.http or options.http, report=Path(report) if report else None,
                 browse=browse, workdir=Path(options.workdir) if options.workdir else None,
                 timeout_s=options.timeout_s, stop=stop, on_result=show,
                 on_progress=lambda progress: print(format_progress(progress), flush=True))
    return EXIT_OK


def _fetch_demo_models() -> None:
    """``--fetch-models``: what cannot be fetched is reported, and the demo runs with what it has."""
    from keyreid_stream.weights import WeightsError, expand_names, fetch_weights
    from keyreid_stream.weights.cli import progress_bars

    for name in expand_names(["demo"]):
        try:
            fetch_weights(name, progress=progress_bars(sys.stderr.isatty()))
        except WeightsError as exc:
            print(f"keyreid-stream: could not fetch {name}; the demo runs without it:\n{exc}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


# --------------------------------------------------------------------------- model


def _add_model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("model", help="list, convert, inspect and export re-ID models",
                                 description="List architectures, convert checkpoints, inspect and export models.")
    sub = parser.add_subparsers(title="model commands", metavar="SUBCOMMAND")
    sub.add_parser("list", help="the registered architectures").set_defaults(handler=_model_list)
    convert = sub.add_parser(
        "convert", help="read a checkpoint (the authors', ImageNet, ours) and save it in our format",
        description="Read a checkpoint into an architecture and save it as a keyreid-stream checkpoint, e.g. "
                    "the authors' MARS weights: model convert Marsbest.pth keyreid_mars.pt --arch "
                    "keyreid_vit_base --num-classes 625 --num-cameras 6 --compat official")
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=Path)
    convert.add_argument("--arch", required=True, help="architecture name (see 'model list')")
    convert.add_argument("--num-classes", type=int, required=True, help="training identities (0: no classifiers)")
    convert.add_argument("--num-cameras", type=int, required=True, help="camera embedding size (0: none)")
    convert.add_argument("--kind", choices=("auto", "native", "official", "imagenet"), default="auto")
    convert.add_argument("--compat", choices=("paper", "official"), default=None,
                         help="KeyRe-ID / VID-Trans-ReID only: official = the authors' forward, needed to "
                              "reproduce their outputs (default: paper)")
    convert.add_argument("--allow-pickle", action="store_true",
                         help="also read arbitrary pickled objects (only for files you trust)")
    convert.set_defaults(handler=_model_convert)
    info = sub.add_parser("info", help="what a keyreid-stream checkpoint holds")
    info.add_argument("checkpoint", help="checkpoint file or cached weights catalogue name (e.g. keyreid-mars)")
    info.set_defaults(handler=_model_info)
    export = sub.add_parser("export", help="export a keyreid-stream checkpoint's inference path to ONNX")
    export.add_argument("checkpoint", help="checkpoint file or cached weights catalogue name")
    export.add_argument("output", type=Path)
    export.add_argument("--opset", type=int, default=18)
    export.set_defaults(handler=_model_export)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _model_list(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.model.registry import get_spec, list_models

    for name in list_models():
        print(f"{name:20s} {get_spec(name).description}")
    return EXIT_OK


def _model_convert(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.model.registry import convert_checkpoint

    options = {} if args.compat is None else {"compat": args.compat}
    report = convert_checkpoint(args.source, args.destination, arch=args.arch, num_classes=args.num_classes,
                                num_cameras=args.num_cameras, kind=args.kind, allow_pickle=args.allow_pickle,
                                **options)
    print(f"{report.summary()}; wrote {args.destination}")
    return EXIT_OK


def _model_info(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "WARNING", args.log_format or "text")
    from keyreid_stream.model.registry import load_model
    from keyreid_stream.weights import resolve_weights

    model: Any = load_model(resolve_weights(args.checkpoint))  # a registry model: arch, build_kwargs, ...
    params = sum(p.numel() for p in model.parameters())
    print(f"architecture: {model.arch}\nparameters: {params:,}\ndescriptor: {model.descriptor_dim} dims")
    for key, value in sorted(model.build_kwargs.items()):
        print(f"  {key}: {value}")
    return EXIT_OK


def _model_export(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.model.export import export_onnx
    from keyreid_stream.model.registry import load_model
    from keyreid_stream.weights import resolve_weights

    path = export_onnx(load_model(resolve_weights(args.checkpoint)), args.output, opset=args.opset)
    print(f"wrote {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- keypoints


def _add_keypoints_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("keypoints", help="pose keypoints of re-ID datasets; PifPaf installation",
                                 description="Extract dataset keypoints into a keypoint store, inspect a store, "
                                             "install or convert PifPaf.")
    sub = parser.add_subparsers(title="keypoints commands", metavar="SUBCOMMAND")
    extract = sub.add_parser(
        "extract", help="estimate the keypoints of every frame of a dataset into a store (resumable)",
        description="Run a pose backend on every frame of a MARS / iLIDS-VID / PRID-2011 / folder tree and store "
                    "17 keypoints per frame. Interrupted runs resume where they stopped.")
    extract.add_argument("--dataset", required=True, choices=("mars", "ilidsvid", "prid", "folder"))
    extract.add_argument("--root", required=True, type=Path, help="the dataset folder")
    extract.add_argument("--backend", required=True, choices=("pifpaf", "yolo-pose", "blazepose", "prior"))
    extract.add_argument("--out", type=Path, default=None, help="store folder (default: ROOT/keypoints-BACKEND)")
    extract.add_argument("--checkpoint", default=None,
                         help="pifpaf: checkpoint name, .safetensors or .pkl (default shufflenetv2k16); "
                              "yolo-pose: model name or file (default yolo11n-pose.pt); "
                              "blazepose: blazepose-lite/full/heavy or a .tflite file (default blazepose-full)")
    extract.add_argument("--random-weights", action="store_true",
                         help="the backend's architecture with random weights (offline smoke runs, not for use)")
    extract.add_argument("--allow-pickle", action="store_true",
                         help="allow pickled checkpoints (openpifpaf's own, local .pt files): only files you trust")
    extract.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--image-size", type=int, default=256, help="yolo-pose input size (crops are small)")
    extract.add_argument("--no-progress", action="store_true", help="no progress bar")
    extract.set_defaults(handler=_keypoints_extract)
    info = sub.add_parser("info", help="what a keypoint store holds")
    info.add_argument("store", type=Path)
    info.set_defaults(handler=_keypoints_info)
    install = sub.add_parser("install-pifpaf", help="build openpifpaf against the installed torch and install it")
    install.add_argument("--force", action="store_true", help="rebuild even if a cached wheel exists")
    install.set_defaults(handler=_keypoints_install_pifpaf)
    convert = sub.add_parser("convert-pifpaf", help="save an openpifpaf checkpoint's weights as safetensors",
                             description="Read an openpifpaf checkpoint (a pickle: only one you trust) once and "
                                         "save its weights as .safetensors, which loads without pickle.")
    convert.add_argument("checkpoint", help="openpifpaf checkpoint name (e.g. shufflenetv2k16) or file")
    convert.add_argument("output", type=Path)
    convert.add_argument("--allow-pickle", action="store_true", required=True)
    convert.set_defaults(handler=_keypoints_convert_pifpaf)
    parser.set_defaults(handler=lambda args: _print_help(parser))


def _backend_options(args: argparse.Namespace) -> dict[str, object]:
    if args.backend == "prior":
        return {}
    if args.backend == "blazepose":  # LiteRT on the CPU, one crop at a time; no random-weights variant
        if args.random_weights:
            from keyreid_stream.keypoints.pose import PoseError

            raise PoseError("blazepose has no random-weights variant: fetch its model (keyreid-stream weights "
                             "fetch blazepose-full) or use --backend prior")
        return {"model": args.checkpoint or "blazepose-full", "batch_size": args.batch_size}
    options: dict[str, object] = {"device": args.device, "batch_size": args.batch_size}
    if args.backend == "pifpaf":
        if args.random_weights:
            options.update(checkpoint=None, base_name=args.checkpoint or "shufflenetv2k16")
        else:
            options.update(checkpoint=args.checkpoint or "shufflenetv2k16", allow_pickle=args.allow_pickle)
    else:
        default = "yolo11n-pose.yaml" if args.random_weights else "yolo11n-pose.pt"
        options.update(model=args.checkpoint or default, allow_pickle=args.allow_pickle,
                       image_size=args.image_size)
    return options


def _keypoints_extract(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.keypoints.extract import extract_dataset

    bars: list[object] = []

    def progress_bar(total: int, done: int) -> Callable[[int], None]:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=done, unit="frame", disable=args.no_progress, dynamic_ncols=True)
        bars.append(bar)
        update: Callable[[int], None] = bar.update
        return update

    try:
        summary, store = extract_dataset(args.dataset, args.root, args.backend, out=args.out,
                                         backend_options=_backend_options(args), batch_size=args.batch_size,
                                         progress_factory=progress_bar)
    finally:
        for bar in bars:
            bar.close()  # type: ignore[attr-defined]
    result = summary.as_dict()
    print(f"store: {store.folder}")
    for key, value in result.items():
        if key != "unreadable_examples":
            print(f"{key}: {value}")
    examples: Any = result["unreadable_examples"]  # a list of paths in an otherwise scalar summary
    for path in examples:
        print(f"unreadable: {path}")
    return EXIT_OK


def _keypoints_info(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "WARNING", args.log_format or "text")
    from keyreid_stream.keypoints.store import KeypointStore

    store = KeypointStore.open(args.store)
    for key in ("dataset", "backend", "backend_options"):
        print(f"{key}: {store.manifest.get(key)}")
    for key, value in store.summary().as_dict().items():
        print(f"{key}: {value}")
    return EXIT_OK


def _keypoints_install_pifpaf(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.keypoints.pifpaf_build import install_openpifpaf

    wheel = install_openpifpaf(force=args.force)
    print(f"openpifpaf installed from {wheel}" if wheel else "openpifpaf is already installed")
    return EXIT_OK


def _keypoints_convert_pifpaf(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.keypoints.pifpaf import PifPafPose, save_pifpaf_weights

    backend = PifPafPose(args.checkpoint, allow_pickle=args.allow_pickle, device="cpu")
    print(f"wrote {save_pifpaf_weights(backend.network, args.output)}")
    return EXIT_OK
