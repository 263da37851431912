"""Who runs a batch's jobs: this process (:class:`LocalEngine`) or a Ray cluster (:class:`RayEngine`).

Both take the same jobs and report each outcome through ``on_done`` as it arrives;
``should_run(job)`` is asked just before a job starts (the driver drops the remaining
segments of a shot that already failed).

Ray: one actor per worker slot (a GPU, or ``gpus_per_task`` of one, or CPUs on a CPU-only
cluster) loads the weights once and runs job after job. A worker process that dies (killed,
out of host memory, a crashed driver library) is restarted by Ray, which loads the weights
again and retries the job it was running, up to ``retries`` times; only then does the job
fail, with that reason. Ray is imported here only, when a RayEngine runs.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..shots import ShotSettings
from .work import JobOutcome, ShotJob, ShotWorker

log = logging.getLogger(__name__)

__all__ = ["LocalEngine", "RayEngine", "import_ray", "worker_runtime_env"]

OnDone = Callable[[ShotJob, JobOutcome], None]
ShouldRun = Callable[[ShotJob], bool]
OnProgress = Callable[[ShotJob, float], None]

RAY_MISSING = ("--engine ray needs Ray, which is not installed: pip install 'comfyui-videomama[ray]' "
               "(or pip install ray), or use --engine local.")


def import_ray() -> Any:
    """The ``ray`` module, or InputError with the install line."""
    try:
        import ray
    except ImportError:
        raise InputError(RAY_MISSING) from None
    return ray


def worker_runtime_env() -> dict[str, Any]:
    """Ray's runtime environment for our workers: this very ``videomama`` package is shipped to them
    (Ray's ``py_modules``), so workers run the driver's code even where another version is
    installed; torch, diffusers and the rest must be installed on every node."""
    package = Path(__file__).resolve().parents[1]
    return {"py_modules": [str(package)]}


class LocalEngine:
    """Runs the jobs one after another in this process, with one engine (weights loaded once)."""

    name = "local"

    def __init__(self, settings: ShotSettings):
        self.settings = settings

    def run(self, jobs: Sequence[ShotJob], on_done: OnDone, should_run: ShouldRun,
            on_progress: OnProgress | None = None) -> None:
        if not jobs:
            return
        worker = ShotWorker(self.settings, logging.getLogger().getEffectiveLevel())
        if worker.ready() is not None:
            raise InputError(str(worker.ready()))
        for job in jobs:
            if not should_run(job):
                continue
            progress = None if on_progress is None else _fraction(on_progress, job)
            on_done(job, worker.run(job, progress))


def _fraction(on_progress: OnProgress, job: ShotJob) -> Callable[[int, int], None]:
    return lambda done, total: on_progress(job, done / max(total, 1))


class RayEngine:
    """Runs the jobs on Ray actors: a running cluster (``address``) or a local one started here.

    gpus_per_task: GPUs each worker holds (fractions share a GPU); None: 1 when the cluster has
        GPUs, else 0 (CPU workers). workers: how many workers (default: as many as the
        cluster's GPUs allow, or its CPUs; never more than there are jobs). retries: how often
        a job whose worker died is run again.
    """

    name = "ray"

    def __init__(self, settings: ShotSettings, *, address: str | None = None, gpus_per_task: float | None = None,
                 workers: int | None = None, retries: int = 2):
        if gpus_per_task is not None and gpus_per_task < 0:
            raise InputError(f"--gpus-per-task {gpus_per_task} must be 0 (CPU workers) or more.")
        if workers is not None and workers < 1:
            raise InputError(f"--workers {workers} must be at least 1.")
        if retries < 0:
            raise InputError(f"--retries {retries} must be 0 or more.")
        self.settings = settings
        self.address = address
        self.gpus_per_task = gpus_per_task
        self.workers = workers
        self.retries = retries

    def run(self, jobs: Sequence[ShotJob], on_done: OnDone, should_run: ShouldRun,
            on_progress: OnProgress | None = None) -> None:
        ray = import_ray()
        if not jobs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            try:
                ray.init(address=self.address, runtime_env=worker_runtime_env(), log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at --address {self.address}" if self.address else "a local Ray instance"
                raise InputError(f"cannot connect to {where} ({exc}); start it with `ray start --head`, or leave "
                                 "--address out to start one here.") from None
        try:
            actors = self._start_workers(ray, len(jobs))
            self._dispatch(ray, actors, jobs, on_done, should_run)
        finally:
            if started_here:
                ray.shutdown()

    def _start_workers(self, ray: Any, jobs: int) -> list[Any]:
        resources = ray.cluster_resources()
        gpus, cpus = float(resources.get("GPU", 0.0)), float(resources.get("CPU", 1.0))
        per_task = self.gpus_per_task if self.gpus_per_task is not None else (1.0 if gpus >= 1 else 0.0)
        if per_task > gpus:
            raise InputError(f"--gpus-per-task {per_task:g} asks for more GPUs than the cluster has ({gpus:g}); "
                             "lower it, or give 0 to run on CPUs.")
        if per_task > 0:
            slots = math.floor(gpus / per_task + 1e-9)
            num_cpus = 1.0
        else:
            slots = max(1, int(cpus))
        count = max(1, min(self.workers or slots, slots, jobs))
        if per_task == 0:
            num_cpus = max(1.0, math.floor(cpus / count))  # CPU workers share the cluster's cores (torch threads)
        log.info("starting %d Ray worker(s): %g GPU and %g CPU each", count, per_task, num_cpus)
        actor_class = ray.remote(ShotWorker).options(num_gpus=per_task, num_cpus=num_cpus, max_restarts=-1,
                                                     max_task_retries=self.retries)
        level = logging.getLogger().getEffectiveLevel()
        actors = [actor_class.remote(self.settings, level) for _ in range(count)]
        from ray.exceptions import RayError

        try:
            errors = [e for e in ray.get([a.ready.remote() for a in actors]) if e is not None]
        except RayError as exc:
            errors = [f"the Ray workers could not start ({_first_line(exc)}); install the pack's dependencies "
                      "(torch, diffusers ...) on every node of the cluster."]
        if errors:
            for actor in actors:
                ray.kill(actor)
            raise InputError(errors[0])
        return actors

    def _dispatch(self, ray: Any, actors: list[Any], jobs: Sequence[ShotJob], on_done: OnDone,
                  should_run: ShouldRun) -> None:
        from ray.exceptions import RayError

        queue = deque(jobs)
        idle = deque(actors)
        running: dict[Any, tuple[Any, ShotJob]] = {}
        try:
            while queue or running:
                while idle and queue:
                    job = queue.popleft()
                    if should_run(job):
                        actor = idle.popleft()
                        running[actor.run.remote(job)] = (actor, job)
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    actor, job = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except RayError as exc:  # the worker died more often than the job may be retried
                        outcome = JobOutcome(job.key, error=f"its worker died {self.retries + 1} time(s) (killed, or out "
                                                            f"of host memory?): {_first_line(exc)}")
                    idle.append(actor)
                    on_done(job, outcome)
        finally:
            for actor in actors:
                ray.kill(actor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
