"""``python -m videomama evaluate``: compare a folder of mattes with the ground truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .. import options as opts
from ..errors import InputError
from ..eval.folders import evaluate_dirs, format_table

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``evaluate`` command."""
    p = sub.add_parser(
        "evaluate",
        help="matting metrics (MAD, MSE, Grad, Conn, dtSSD) of predicted vs true alpha",
        description=(
            "Compare predicted alpha mattes with ground truth, frame by frame, and print MAD, MSE, Grad, "
            "Conn and dtSSD (the conventions of video-matting papers; per-frame values averaged over "
            "frames). Files pair up by name; 8- and 16-bit images are read as alpha in [0, 1]. With "
            "--trimap, a second row covers the unknown region only (trimap values strictly between 0 and 1, "
            "e.g. 128). Then the seam report: the jump of alpha at each window boundary (from --window "
            "and --overlap) against the frame-to-frame change inside the windows nearby, as a seam ratio "
            "(about 1: no seam; 2 or more: a visible jump). With only --pred, just the seam report."
        ),
    )
    p.add_argument("--pred", required=True, help="folder of predicted alpha images (e.g. OUT/alpha of matte)")
    p.add_argument("--gt", help="folder of ground-truth alpha images (same names); without it only the seam report")
    p.add_argument("--trimap", help="folder of trimaps (same names): 0 background, 255 foreground, else unknown")
    p.add_argument("--window", type=int, default=opts.DEFAULT_WINDOW,
                   help="--window the mattes were made with, for the seam report (default %(default)s)")
    p.add_argument("--overlap", type=int, default=opts.DEFAULT_OVERLAP,
                   help="--overlap the mattes were made with, for the seam report (default %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the metrics table (with --gt) and the seam report; InputError (exit 2) on mismatched folders."""
    from ..eval.seams import format_seams, seam_report
    from ..io.frames import list_images

    if args.gt is None and args.trimap is not None:
        raise InputError("--trimap needs --gt: the unknown region is scored against the ground truth.")
    if args.gt is not None:
        print(format_table(evaluate_dirs(args.pred, args.gt, args.trimap)))
        print()
    report = seam_report(args.pred, args.window, args.overlap)
    print(format_seams(report, [p.stem for p in list_images(Path(args.pred).expanduser())]))
    return 0
