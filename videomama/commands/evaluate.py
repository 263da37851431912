"""``python -m videomama evaluate``: compare a folder of mattes with the ground truth."""

from __future__ import annotations

import argparse
import logging

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
            "e.g. 128)."
        ),
    )
    p.add_argument("--pred", required=True, help="folder of predicted alpha images")
    p.add_argument("--gt", required=True, help="folder of ground-truth alpha images (same names)")
    p.add_argument("--trimap", help="folder of trimaps (same names): 0 background, 255 foreground, else unknown")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the metrics table; raises InputError (exit 2 via the CLI) on mismatched folders."""
    table = evaluate_dirs(args.pred, args.gt, getattr(args, "trimap", None))
    print(format_table(table))
    return 0
