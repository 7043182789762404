"""``keyreid-stream eval-mtmc``: multi-camera tracking metrics of MOTChallenge results against ground truth, and
``keyreid-stream export-mot``: the workers' MOT files relabelled with the matcher's global identities.

See docs/mtmc.md. Errors in the input (a missing folder, a malformed line, a camera that the ground truth does not
have) are :class:`~keyreid_stream.mot.MotDataError`, one readable line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from keyreid_stream.argtypes import positive_int
from keyreid_stream.logs import setup_logging

__all__ = ["add_commands"]

TOKEN_ENV = "KEYREID_API_TOKEN"  # the same variable as ``keyreid-stream query``


def _iou(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser(
        "eval-mtmc", help="multi-camera tracking metrics: CLEAR MOT, IDF1 and HOTA per camera, IDF1 and HOTA across "
        "cameras",
        description="Compare MOTChallenge results with ground truth, camera by camera (MOTA, MOTP, IDF1, IDP, "
                    "IDR, FP, FN, ID switches, HOTA, DetA, AssA, LocA, ...) and across cameras (MTMC IDF1/IDP/IDR and "
                    "HOTA: ids are global). "
                    "Each folder holds CAMERA.txt files; the ground truth may also be in the MOTChallenge layout "
                    "CAMERA/gt/gt.txt. See docs/mtmc.md.")
    evaluate.add_argument("--gt", required=True, type=Path, metavar="DIR", help="ground truth folder")
    evaluate.add_argument("--pred", required=True, type=Path, metavar="DIR", help="results folder")
    evaluate.add_argument("--iou", type=_iou, default=0.5, help="IoU a match needs (default 0.5)")
    evaluate.add_argument("--json", type=Path, metavar="FILE", help="also write every number to this JSON file")
    evaluate.set_defaults(handler=_evaluate)
    export = commands.add_parser(
        "export-mot", help="relabel the workers' MOT files with the matcher's global identities",
        description="Read the MOT files a worker wrote (output.mot_dir: local track ids), ask the matcher's API "
                    "which identity each track joined, and write the same files with identity numbers (plus "
                    "identities.csv and tracks.csv) for 'eval-mtmc --pred'. The API token, when one is needed, "
                    f"comes from --token-file or the environment variable named by --token-env ({TOKEN_ENV}).")
    export.add_argument("--url", required=True, help="the matcher's API, e.g. http://127.0.0.1:8080")
    export.add_argument("--tracks", required=True, type=Path, metavar="DIR", help="the workers' MOT folder")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="where to write the relabelled files")
    export.add_argument("--token-file", type=Path, metavar="FILE", help="file holding the API token")
    export.add_argument("--token-env", default=TOKEN_ENV, metavar="NAME",
                        help=f"environment variable holding the API token (default {TOKEN_ENV})")
    export.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    export.add_argument("--page-size", type=positive_int, default=100,
                        help="identities per request, at most the matcher's api.max_results (default 100)")
    export.set_defaults(handler=_export)


def _evaluate(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "WARNING", args.log_format or "text")
    from keyreid_stream.eval.mtmc import evaluate_folders, format_mtmc_table

    scores = evaluate_folders(args.gt, args.pred, iou_threshold=args.iou)
    print(format_mtmc_table(scores))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(scores.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def _export(args: argparse.Namespace) -> int:
    setup_logging(args.log_level or "INFO", args.log_format or "text")
    from keyreid_stream.credentials import read_token
    from keyreid_stream.query.client import QueryClient, QueryError
    from keyreid_stream.query.motexport import export_global_ids, format_export_report

    try:
        token = read_token(args.token_env, args.token_file)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    client = QueryClient(args.url, token=token, timeout=args.timeout)
    report = export_global_ids(args.tracks, client, args.out, page_size=args.page_size)
    print(format_export_report(report))
    return 0
