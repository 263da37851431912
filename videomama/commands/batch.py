"""``python -m videomama batch MANIFEST --out DIR``: many shots, here or on a Ray cluster."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..errors import InputError
from .matte import add_matte_arguments, files_from, options_from, settings_from

log = logging.getLogger(__name__)

DEFAULT_RAY_SPLIT = 512  # frames: longer shots are split across Ray workers


def add_parser(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="matte many shots from a manifest, in this process or on a Ray cluster",
        description=(
            "Matte every shot of MANIFEST (a JSON list or a CSV file; fields name, frames, masks and optional "
            "per-shot resolution, window, overlap, seed, posterior, mask_threshold) into DIR/<name>/alpha, "
            "exactly as `matte --out DIR/<name>` would. The matte options below are the defaults of every "
            "shot. Shots finished earlier with the same settings are skipped; a shot that fails does not stop "
            "the others. Exit code 0 when every shot is done or skipped, 1 when some failed."
        ),
    )
    p.add_argument("manifest", metavar="MANIFEST", help="JSON list or CSV file of shots (relative paths: from its folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output root: each shot goes to DIR/<name>/alpha")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: shots one after another in this process; ray: on a Ray cluster (needs [ray])")
    p.add_argument("--address", help="Ray cluster to use ('auto' or host:port of a running `ray start --head`); "
                                     "default: start a local one on this machine's GPUs/CPUs")
    p.add_argument("--gpus-per-task", type=float, metavar="N",
                   help="GPUs each Ray worker holds (0.5: two workers share a GPU; 0: CPU workers); default 1 when "
                        "the cluster has GPUs, else 0")
    p.add_argument("--workers", type=int, metavar="N", help="Ray workers to start (default: as many as the GPUs allow)")
    p.add_argument("--retries", type=int, default=2,
                   help="how often Ray reruns a job whose worker died (killed, out of memory; default %(default)s)")
    p.add_argument("--split-frames", type=int, metavar="N",
                   help=f"split shots longer than N frames into segments for several workers (default {DEFAULT_RAY_SPLIT} "
                        "with --engine ray, never with local; 0 = never); results are identical either way")
    p.add_argument("--force", action="store_true", help="redo shots that were finished earlier with the same settings")
    p.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    add_matte_arguments(p)
    p.set_defaults(run=run)


class BatchBar:
    """One line on stderr: shots and frames done (drawn when stderr is a terminal or forced)."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self.last = ""

    def __call__(self, shots_done: int, shots_total: int, frames_done: int, frames_total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * frames_done / max(frames_total, 1))
        rate = frames_done / max(time.monotonic() - self.start, 1e-9)
        line = (f"batch [{'#' * filled}{'.' * (width - filled)}] {shots_done}/{shots_total} shots, "
                f"{frames_done}/{frames_total} frames ({rate:.2f} frames/s)")
        if line != self.last:
            self.last = line
            sys.stderr.write("\r" + line + ("\n" if shots_done >= shots_total else ""))
            sys.stderr.flush()


def summary_table(reports) -> str:
    """The end-of-run table: shot, frames, seconds, status (with the reason of a failure)."""
    rows = [("shot", "frames", "seconds", "status")]
    for r in reports:
        status = r.status if not r.message or r.status == "done" else f"{r.status}: {r.message}"
        if r.status == "done" and r.segments > 1:
            status += f" ({r.segments} segments)"
        rows.append((r.name, str(r.frames) if r.frames else "-", f"{r.seconds:.1f}", status))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}" for row in rows]
    counts = {s: sum(r.status == s for r in reports) for s in ("done", "skipped", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..distributed.batch import run_batch
    from ..distributed.engines import LocalEngine, RayEngine
    from ..distributed.manifest import load_manifest

    settings = settings_from(args)
    defaults = options_from(args)
    if args.engine == "local":
        for flag, value in (("--address", args.address), ("--gpus-per-task", args.gpus_per_task),
                            ("--workers", args.workers)):
            if value is not None:
                raise InputError(f"{flag} is for --engine ray; add --engine ray or leave {flag} out.")
        engine: LocalEngine | RayEngine = LocalEngine(settings)
        split = args.split_frames or 0
    else:
        from ..distributed.engines import import_ray

        import_ray()  # before any work: a missing Ray is one line, not a failure per shot
        engine = RayEngine(settings, address=args.address, gpus_per_task=args.gpus_per_task, workers=args.workers,
                           retries=args.retries)
        split = DEFAULT_RAY_SPLIT if args.split_frames is None else args.split_frames
    entries = load_manifest(args.manifest)
    reports = run_batch(entries, args.out, settings, defaults, engine, split_frames=split, force=args.force,
                        progress=BatchBar(enabled=True if args.progress else None), files=files_from(args))
    print(summary_table(reports))
    return 1 if any(r.status == "failed" for r in reports) else 0
