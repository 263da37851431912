"""Splitting a long shot into segments that workers run independently and that merge exactly.

VideoMaMa: a segment is a run of consecutive windows (cut only at window boundaries). Every
window is computed by exactly one segment; a frame that windows of two segments cover (the
overlap) comes back from each as a partial weighted sum, and the driver adds them before
dividing, which is the single-process blend (noise depends only on (seed, frame)).

Weight-free: a segment is a range of frames; the refiner reads the few frames before the range
its temporal window needs (``videomama.imaging.refine.TEMPORAL_CONTEXT``) and the masks just
outside it (where the mask moves it solves the edge as motion-blurred), and drops them, so
every frame is complete in exactly one segment and nothing needs merging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError
from ..options import MatteOptions

__all__ = ["Segment", "plan_segments"]


@dataclass(frozen=True)
class Segment:
    """One worker's part of a shot.

    index, count: this segment's place among the shot's segments.
    frames: the frames it reports (VideoMaMa: every frame its windows touch; weight-free: the
        frames it owns).
    windows: VideoMaMa only: indices of the windows it runs (into the shot's window layout).
    """

    index: int
    count: int
    frames: range
    windows: range | None = None


def plan_segments(num_frames: int, options: MatteOptions, *, weight_free: bool, split_frames: int) -> list[Segment]:
    """Segments of about ``split_frames`` frames each for a shot longer than that (else one).

    split_frames <= 0 never splits.
    """
    if num_frames < 1:
        raise InputError("the shot has no frames; give a folder or video with at least one frame.")
    wanted = 1 if split_frames <= 0 or num_frames <= split_frames else math.ceil(num_frames / split_frames)
    if weight_free:
        bounds = _cuts(num_frames, wanted)
        return [Segment(k, len(bounds) - 1, range(bounds[k], bounds[k + 1])) for k in range(len(bounds) - 1)]
    from ..shots import shot_windows

    windows = shot_windows(num_frames, options)
    bounds = _cuts(len(windows), min(wanted, len(windows)))
    segments = []
    for k in range(len(bounds) - 1):
        run = range(bounds[k], bounds[k + 1])
        touched = range(min(windows[j].frames.start for j in run), max(windows[j].frames.stop for j in run))
        segments.append(Segment(k, len(bounds) - 1, touched, run))
    return segments


def _cuts(items: int, parts: int) -> list[int]:
    """``parts + 1`` increasing boundaries that split ``items`` as evenly as possible."""
    return [round(k * items / parts) for k in range(parts + 1)]
