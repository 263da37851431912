"""The seam report: does the matte jump where one window of frames hands over to the next?

VideoMaMa mattes a shot in windows of frames (``--window``) that share ``--overlap`` frames,
cross-faded. Where consecutive windows disagree, the matte can change more from one frame to
the next at their boundary than anywhere inside a window. For every boundary we take the
largest frame-to-frame change of alpha across the shared frames (mean absolute difference of
consecutive frames) and divide it by the median change inside the neighbouring frames (8 on
each side, outside every boundary): the *seam ratio*. About 1 means the boundary cannot be
told from the rest of the shot; 2 or more is a jump a viewer may see as a pop.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.frames import list_images, read_matte
from ..pipeline.schedule import split_windows

log = logging.getLogger(__name__)

__all__ = ["Seam", "SeamReport", "format_seams", "frame_steps", "seam_report", "seams_of_steps"]

CONTEXT = 8  # frames on each side whose inside-window steps are the reference


@dataclass(frozen=True)
class Seam:
    """One window boundary: the frames its steps span, the jump there, and its ratio."""

    first: int  # the last frame before the shared ones (position in the clip)
    last: int  # the first frame after them (a hard cut, overlap 0: first + 1)
    jump: float  # largest step across the boundary (mean |a[t+1] - a[t]|)
    inside: float  # median step inside the windows nearby
    ratio: float  # jump / inside


@dataclass(frozen=True)
class SeamReport:
    """All boundaries of a clip; ``worst`` and ``mean`` seam ratio (nan without boundaries)."""

    frames: int
    window: int
    overlap: int
    seams: tuple[Seam, ...]

    @property
    def worst(self) -> float:
        return max((s.ratio for s in self.seams), default=float("nan"))

    @property
    def mean(self) -> float:
        return statistics.fmean(s.ratio for s in self.seams) if self.seams else float("nan")


def frame_steps(alphas: list[np.ndarray] | list[Path]) -> np.ndarray:
    """Mean absolute change of alpha between consecutive frames (length T - 1); files are read one
    at a time (memory does not grow with the clip)."""
    steps: list[float] = []
    previous: np.ndarray | None = None
    for item in alphas:
        a = read_matte(item) if isinstance(item, Path) else np.asarray(item, dtype=np.float64)
        if previous is not None:
            if a.shape != previous.shape:
                raise InputError(f"pred frame {len(steps) + 1} is {a.shape[1]}x{a.shape[0]} but the one before is "
                                 f"{previous.shape[1]}x{previous.shape[0]}; give mattes of one size.")
            steps.append(float(np.abs(a - previous).mean()))
        previous = a
    return np.asarray(steps)


def seams_of_steps(steps: np.ndarray, window: int, overlap: int) -> SeamReport:
    """The seam report of a clip of ``len(steps) + 1`` frames matted with ``window``/``overlap``."""
    frames = len(steps) + 1
    if window < 1 or not 0 <= overlap < window:
        raise InputError(f"--window {window} / --overlap {overlap}: give the values the mattes were made with "
                         "(overlap smaller than window).")
    windows = split_windows(frames, window, overlap)
    zones = [range(nxt.start - 1, prev.stop) for prev, nxt in zip(windows, windows[1:])]  # steps t: t -> t+1
    at_boundary = np.zeros(len(steps), dtype=bool)
    for zone in zones:
        at_boundary[zone.start: zone.stop] = True
    seams = []
    for zone in zones:
        lo, hi = max(0, zone.start - CONTEXT), min(len(steps), zone.stop + CONTEXT)
        nearby = [steps[t] for t in range(lo, hi) if not at_boundary[t]]
        inside = float(np.median(nearby)) if nearby else float(np.median(steps))
        jump = float(steps[zone.start: zone.stop].max())
        ratio = jump / inside if inside > 0 else (1.0 if jump == 0 else float("inf"))
        seams.append(Seam(zone.start, zone.stop, jump, inside, ratio))
    return SeamReport(frames, window, overlap, tuple(seams))


def seam_report(pred_dir: str | Path, window: int, overlap: int) -> SeamReport:
    """The seam report of a folder of mattes (natural order) made with ``window``/``overlap``."""
    folder = Path(pred_dir).expanduser()
    if not folder.is_dir():
        raise InputError(f"--pred '{folder}' is not a folder; give the folder of mattes (e.g. OUT/alpha).")
    files = list_images(folder)
    if len(files) < 2:
        raise InputError(f"--pred '{folder}' holds {len(files)} matte(s); the seam report needs a clip of 2 or more.")
    return seams_of_steps(frame_steps(files), window, overlap)


def format_seams(report: SeamReport, names: list[str] | None = None) -> str:
    """A few lines: one per boundary (the frames across it, jump, inside step, ratio), then the summary."""
    head = f"seams: {report.frames} frames in windows of {report.window} sharing {report.overlap}"
    if not report.seams:
        return f"{head}: one window, no seams."

    def label(i: int) -> str:
        return names[i] if names else str(i)

    spans = [f"{label(s.first)}-{label(s.last)}" for s in report.seams]
    width = max(len("frames"), *(len(span) for span in spans))
    count = f"{len(report.seams)} boundar{'y' if len(report.seams) == 1 else 'ies'}"
    lines = [f"{head}: {count}", f"{'frames':<{width}}  {'jump':>10}  {'inside':>10}  {'ratio':>7}"]
    for span, s in zip(spans, report.seams):
        lines.append(f"{span:<{width}}  {s.jump:>10.4g}  {s.inside:>10.4g}  {s.ratio:>7.2f}")
    lines.append(f"seam ratio: worst {report.worst:.2f}, mean {report.mean:.2f} (1 = boundaries look like the rest; "
                 "2+ = a visible jump: raise --overlap)")
    return "\n".join(lines)
