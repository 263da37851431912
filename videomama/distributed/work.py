"""What a worker does: whole shots and segments of long shots, in whatever process runs it.

A :class:`ShotWorker` loads the weights once (``videomama.shots.load_engine``) and then runs
jobs. A whole shot goes through ``videomama.shots.matte_shot``, so its files are exactly those
of ``python -m videomama matte``. A segment runs its part of the shot
(``videomama.shots.iter_shot_part``), writes the frames it finishes into the shot's staging
folder (``AlphaSequenceWriter.attach``) and returns the partial sums of its overlap frames to
the driver. Errors never escape a job: they come back as a one-line message in the outcome, so
one bad shot fails alone; only a dead process (killed, out of host memory) loses a job, and
the engine retries it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoMaMaError
from ..options import MatteOptions, ProgressFn
from ..shots import Engine, ShotFiles, ShotSettings
from .plan import Segment

log = logging.getLogger(__name__)

__all__ = ["JobOutcome", "Partial", "ShotJob", "ShotWorker", "alpha_writer"]


@dataclass(frozen=True)
class ShotJob:
    """A whole shot (``segment`` None) or one segment of a split shot (written into ``staging``)."""

    shot: str
    frames: str
    masks: str
    out_dir: str
    options: MatteOptions
    segment: Segment | None = None
    staging: str | None = None
    files: ShotFiles = field(default_factory=ShotFiles)

    @property
    def key(self) -> tuple[str, int]:
        return self.shot, 0 if self.segment is None else self.segment.index

    def describe(self) -> str:
        if self.segment is None:
            return f"shot '{self.shot}'"
        return f"shot '{self.shot}' segment {self.segment.index + 1}/{self.segment.count}"


@dataclass(frozen=True)
class Partial:
    """The partial weighted sum of one overlap frame: ``weighted_sum`` (H, W) float32 and its weight."""

    index: int
    weighted_sum: np.ndarray
    weight: float


@dataclass
class JobOutcome:
    """What a job reports back: frames written, overlap partial sums, or the one-line error."""

    key: tuple[str, int]
    error: str | None = None
    written: int = 0
    partials: list[Partial] = field(default_factory=list)
    seconds: float = 0.0
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def alpha_writer(out_dir: str | os.PathLike[str], staging: str | os.PathLike[str] | None = None, *,
                 frames: Any = None, files: ShotFiles | None = None):
    """The shot's alpha writer: a new staging folder, or ``staging`` made by another process.

    The one place batch runs make writers, so their files are named (the frame numbers of
    ``frames``) and encoded (``files.format``) as matte_shot's.
    """
    from ..io.frames import clip_naming
    from ..io.writers import AlphaSequenceWriter

    naming = clip_naming(frames) if frames is not None else None
    fmt: Any = (files or ShotFiles()).format
    if staging is None:
        return AlphaSequenceWriter(out_dir, naming=naming, format=fmt)
    return AlphaSequenceWriter.attach(Path(staging), out_dir, naming=naming, format=fmt)


class ShotWorker:
    """Runs jobs with one engine (weights loaded once per worker process).

    A failed load is kept and reported by :meth:`ready` (and by every job), not raised: the
    engine turns it into one line, and a Ray actor does not die of it.
    """

    def __init__(self, settings: ShotSettings, log_level: int = logging.WARNING):
        from ..shots import load_engine

        if not logging.getLogger().handlers:  # a fresh worker process: show our warnings
            logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.engine: Engine | None = None
        self.load_error: str | None = None
        try:
            self.engine = load_engine(settings)
        except VideoMaMaError as exc:
            self.load_error = str(exc)

    def ready(self) -> str | None:
        """None when the weights are loaded, else the one-line reason they are not."""
        return self.load_error

    def run(self, job: ShotJob, progress: ProgressFn | None = None) -> JobOutcome:
        """Run one job; never raises for a bad shot (the error is in the outcome)."""
        from ..memory.retry import first_line, is_oom_error

        started = time.monotonic()
        outcome = JobOutcome(job.key, pid=os.getpid())
        try:
            if self.engine is None:
                raise VideoMaMaError(self.load_error or "the weights are not loaded.")
            if job.segment is None:
                outcome.written = self._whole(job, self.engine, progress)
            else:
                outcome.written, outcome.partials = self._segment(job, self.engine, job.segment, progress)
        except VideoMaMaError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # one shot's failure must not stop the batch
            if is_oom_error(exc):
                outcome.error = f"out of memory: {first_line(exc)}; lower --resolution or --window, or --memory low_vram."
            else:
                outcome.error = f"{type(exc).__name__}: {first_line(exc)}"
            log.debug("%s failed", job.describe(), exc_info=True)
        outcome.seconds = time.monotonic() - started
        return outcome

    @staticmethod
    def _whole(job: ShotJob, engine: Engine, progress: ProgressFn | None) -> int:
        from ..shots import matte_shot

        target = matte_shot(job.frames, job.masks, job.out_dir, job.options, engine, progress, files=job.files)
        return sum(1 for p in target.iterdir() if not p.name.startswith("."))

    @staticmethod
    def _segment(job: ShotJob, engine: Engine, segment: Segment,
                 progress: ProgressFn | None) -> tuple[int, list[Partial]]:
        from ..shots import finish_alpha, iter_shot_part, open_shot

        assert job.staging is not None, "a segment job writes into its shot's staging folder"
        frames, masks = open_shot(job.frames, job.masks, job.files)
        writer = alpha_writer(job.out_dir, job.staging, frames=frames, files=job.files)
        partials: list[Partial] = []
        part = iter_shot_part(frames, masks, job.options, engine, windows=segment.windows,
                              frames_range=segment.frames if segment.windows is None else None, progress=progress)
        for result in part:
            if result.complete:
                writer.write(result.index, finish_alpha(frames, result.index, result.alpha, job.options, engine.settings))
            else:
                partials.append(Partial(result.index, result.weighted_sum.numpy(), float(result.weight)))
        return writer.written, partials
