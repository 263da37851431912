"""Command line: ``python -m videomama <command> ...``.

Each command is a module in ``videomama/commands`` with ``add_parser(subparsers)`` and
``run(args) -> int``. Errors a user can cause end as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from .errors import Cancelled, VideoMaMaError

COMMANDS = ("matte", "batch", "convert", "evaluate", "demo")

log = logging.getLogger("videomama")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m videomama",
        description="VideoMaMa: turn a video and coarse masks into alpha mattes.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (model loading, sizes, timings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        # Each command module imports its heavy dependencies inside run(), so importing them
        # all here is cheap; a broken one must fail loudly, not vanish from --help.
        importlib.import_module(f".commands.{name}", __package__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except Cancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except VideoMaMaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


class ProgressBar:
    """A one-line progress bar on stderr (only drawn when stderr is a terminal or forced)."""

    def __init__(self, label: str, unit: str, enabled: bool | None = None):
        self.label, self.unit = label, unit
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / max(time.monotonic() - self.start, 1e-9)
        end = "\n" if done >= total else ""
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {self.unit} ({rate:.2f}/s){end}"
        )
        sys.stderr.flush()
