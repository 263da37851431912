"""Finishing a split shot on the driver: the overlap frames of neighbouring segments, then the commit.

Each segment returned the partial sums of the frames that windows of another segment also
cover. Adding them (in segment order, as the single-process scheduler adds its windows in
order) and dividing by the summed weight gives the frame of a whole-shot run; it then goes
through the same finishing step (``videomama.shots.finish_alpha``) and into the shot's
staging folder, which is committed only when it holds every frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..errors import VideoMaMaError
from ..options import MatteOptions
from ..shots import ShotSettings
from .work import JobOutcome

__all__ = ["merge_partials", "write_merged"]


def merge_partials(outcomes: Iterable[JobOutcome]) -> dict[int, torch.Tensor]:
    """Frame index -> alpha (unclamped) of every frame reported partially, from all segments."""
    sums: dict[int, torch.Tensor] = {}
    weights: dict[int, float] = {}
    for outcome in sorted(outcomes, key=lambda o: o.key):
        for part in outcome.partials:
            value = torch.from_numpy(part.weighted_sum.copy())  # arrays from Ray are read-only
            sums[part.index] = sums[part.index] + value if part.index in sums else value
            weights[part.index] = weights.get(part.index, 0.0) + part.weight
    return {i: sums[i] / weights[i] for i in sorted(sums)}


def write_merged(writer: Any, outcomes: list[JobOutcome], frames: Any, num_frames: int, options: MatteOptions,
                 settings: ShotSettings) -> int:
    """Write the merged overlap frames into ``writer``'s staging folder and check that it holds the
    whole shot; returns how many frames were merged. The caller commits."""
    from ..shots import finish_alpha

    merged = merge_partials(outcomes)
    for index, alpha in merged.items():
        writer.write(index, finish_alpha(frames, index, alpha, options, settings))
    staged = sum(1 for p in writer.staging.iterdir() if not p.name.startswith("."))
    if staged != num_frames:
        raise VideoMaMaError(f"the segments wrote {staged} of {num_frames} frames; the shot is left unfinished "
                             "(run the batch again to redo it).")
    return len(merged)
