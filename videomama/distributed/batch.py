"""The batch driver: shots in, one folder of alpha per shot out, on any engine.

    entries --prepare--> skip finished (marker) / fail bad inputs alone / plan segments
            --engine---> jobs run (whole shots via matte_shot, segments via iter_shot_part)
            --finish---> split shots: merge overlap frames, commit; mark complete; report

Every shot ends in exactly one :class:`ShotReport`: done, skipped (finished earlier with the
same settings) or failed with its one-line reason; the others are not affected.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import InputError, VideoMaMaError
from ..options import MatteOptions
from ..shots import ShotFiles, ShotSettings
from . import markers
from .manifest import ShotEntry
from .plan import plan_segments
from .work import JobOutcome, ShotJob, alpha_writer

log = logging.getLogger(__name__)

__all__ = ["BatchProgress", "ShotReport", "run_batch"]

DONE, SKIPPED, FAILED = "done", "skipped", "failed"

BatchProgress = Callable[[int, int, int, int], None]
"""``progress(shots_done, shots_total, frames_done, frames_total)``."""


class JobEngine(Protocol):
    name: str

    def run(self, jobs: Sequence[ShotJob], on_done: Any, should_run: Any, on_progress: Any = None) -> None: ...


@dataclass
class ShotReport:
    """How one shot of the batch ended (``frames`` is 0 when its inputs could not be opened)."""

    name: str
    frames: int = 0
    seconds: float = 0.0
    status: str = ""
    message: str = ""
    segments: int = 1


@dataclass
class _Shot:
    entry: ShotEntry
    report: ShotReport
    out_dir: Path
    options: MatteOptions | None = None
    frames: Any = None
    key: str = ""
    jobs: list[ShotJob] = field(default_factory=list)
    outcomes: list[JobOutcome] = field(default_factory=list)
    writer: Any = None  # split shots: the driver's writer of the shared staging folder
    progress: dict[tuple[str, int], float] = field(default_factory=dict)
    started_jobs: set[tuple[str, int]] = field(default_factory=set)
    started: float = 0.0


def run_batch(entries: Sequence[ShotEntry], out_root: str | os.PathLike[str], settings: ShotSettings,
              defaults: MatteOptions, engine: JobEngine, *, split_frames: int = 0, force: bool = False,
              progress: BatchProgress | None = None, files: ShotFiles | None = None) -> list[ShotReport]:
    """Matte every shot into ``out_root/<name>/alpha``; returns one report per entry, in order.

    split_frames: shots longer than this are split into segments of about as many frames
        (0: never; shots writing RGBA or a preview are never split). force: redo shots even
        when they were finished with the same settings. files: how every shot's files are read
        and written (format, RGBA, preview, input transfer).
    """
    files = files or ShotFiles()
    root = _check_out_root(Path(out_root).expanduser())
    shots = [_prepare(entry, root, settings, defaults, 0 if files.whole_shot_only else split_frames, force, files)
             for entry in entries]
    by_name = {s.entry.name: s for s in shots}
    frames_total = sum(s.report.frames for s in shots)

    def report_progress() -> None:
        if progress is not None:
            done = [s for s in shots if s.report.status]
            frames_done = sum(s.report.frames for s in done) + sum(
                s.report.frames * sum(s.progress.values()) / max(len(s.jobs), 1) for s in shots if not s.report.status)
            progress(len(done), len(shots), int(frames_done), frames_total)

    def should_run(job: ShotJob) -> bool:
        shot = by_name[job.shot]
        if shot.report.status == FAILED:
            return False
        if not shot.started:
            shot.started = time.monotonic()
        shot.started_jobs.add(job.key)
        return True

    def on_progress(job: ShotJob, fraction: float) -> None:
        by_name[job.shot].progress[job.key] = fraction
        report_progress()

    def on_done(job: ShotJob, outcome: JobOutcome) -> None:
        shot = by_name[job.shot]
        shot.outcomes.append(outcome)
        shot.progress[job.key] = 1.0
        if not outcome.ok and shot.report.status != FAILED:
            _fail(shot, f"{job.describe()}: {outcome.error}" if job.segment is not None else str(outcome.error))
        if len(shot.outcomes) == len(shot.jobs) or (shot.report.status == FAILED and not _running(shot)):
            _finish(shot, settings)
        report_progress()

    report_progress()
    jobs = [job for s in shots for job in s.jobs]
    try:
        engine.run(jobs, on_done, should_run, on_progress)
    finally:
        for shot in shots:
            if shot.writer is not None and shot.report.status != DONE:
                shot.writer.abort()  # interrupted or failed: nothing staged stays behind
    for shot in shots:
        if not shot.report.status:  # the engine stopped before this shot's jobs ran
            _fail(shot, "not run (the batch stopped early)")
    report_progress()
    return [s.report for s in shots]


def _check_out_root(root: Path) -> Path:
    """--out must be a folder we can write, checked before any work."""
    if root.exists() and not root.is_dir():
        raise InputError(f"--out '{root}' is a file, not a folder; give a folder (it is created if missing).")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise InputError(f"--out '{root}' is not writable ({exc.strerror or exc}); give a folder you can write to.") from None
    return root


def _prepare(entry: ShotEntry, root: Path, settings: ShotSettings, defaults: MatteOptions, split_frames: int,
             force: bool, files: ShotFiles) -> _Shot:
    """Open the shot's inputs, skip it if finished, plan its jobs; a bad input fails this shot only."""
    from ..shots import open_shot

    shot = _Shot(entry, ShotReport(entry.name), root / entry.name)
    try:
        shot.options = entry.matte_options(defaults)
        frames, _masks = open_shot(entry.frames, entry.masks, files)
        shot.frames = frames
        shot.report.frames = len(frames)
        if shot.report.frames == 0:
            raise InputError(f"--frames '{entry.frames}' holds no frames; give a folder of images or a video.")
        shot.key = markers.result_key(entry.frames, entry.masks, len(frames), shot.options, settings, files)
        if shot.out_dir.exists() and not shot.out_dir.is_dir():
            raise InputError(f"the output '{shot.out_dir}' is a file; remove it or rename the shot.")
        if not force and markers.is_complete(shot.out_dir, shot.key):
            shot.report.status, shot.report.message = SKIPPED, "finished earlier with the same settings"
            return shot
        markers.clear_shot(shot.out_dir)
        segments = plan_segments(len(frames), shot.options, weight_free=settings.unet is None, split_frames=split_frames)
    except VideoMaMaError as exc:
        _fail(shot, str(exc))
        return shot
    except OSError as exc:
        _fail(shot, f"cannot use its files ({exc.strerror or exc}): {exc.filename or entry.frames}")
        return shot
    whole = ShotJob(entry.name, str(entry.frames), str(entry.masks), str(shot.out_dir), shot.options, files=files)
    if len(segments) == 1:
        shot.jobs = [whole]
    else:
        shot.writer = alpha_writer(shot.out_dir, frames=frames, files=files)
        shot.jobs = [dataclasses.replace(whole, segment=seg, staging=str(shot.writer.staging)) for seg in segments]
        shot.report.segments = len(segments)
        log.info("shot '%s': %d frames in %d segments", entry.name, len(frames), len(segments))
    return shot


def _running(shot: _Shot) -> bool:
    """Jobs of this shot that were started and have not reported yet."""
    return bool(shot.started_jobs - {o.key for o in shot.outcomes})


def _fail(shot: _Shot, message: str) -> None:
    shot.report.status, shot.report.message = FAILED, message.strip().splitlines()[0] if message.strip() else "failed"


def _finish(shot: _Shot, settings: ShotSettings) -> None:
    """All of the shot's jobs reported (or it failed): merge, commit, mark, report."""
    shot.report.seconds = time.monotonic() - shot.started if shot.started else 0.0
    if shot.report.status == FAILED:
        if shot.writer is not None:
            shot.writer.abort()
        return
    try:
        if shot.writer is not None:
            from .merge import write_merged

            assert shot.options is not None
            write_merged(shot.writer, shot.outcomes, shot.frames, shot.report.frames, shot.options, settings)
            shot.writer.commit()
        markers.clear_shot(shot.out_dir)  # what killed attempts of a worker left staged
        markers.mark_complete(shot.out_dir, shot.key, shot.report.frames, shot.report.seconds)
    except (VideoMaMaError, OSError) as exc:
        _fail(shot, str(exc))
        if shot.writer is not None:
            shot.writer.abort()
        return
    shot.report.status = DONE
