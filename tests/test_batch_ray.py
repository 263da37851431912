"""Batch matting on a local Ray cluster (2 CPUs, started and stopped here): shots and a long shot
split across workers equal `matte`; a worker killed mid-job is restarted and its job retried; a
bad shot fails alone and leaves nothing staged."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from batch_shots import (
    MATTE_ARGS,
    OPTIONS,
    max_step_diff,
    reference,
    run_cli,
    tiny_weights,
    write_manifest,
    write_shots,
)

from videomama.distributed.batch import run_batch
from videomama.distributed.engines import RayEngine, worker_runtime_env
from videomama.distributed.manifest import ShotEntry
from videomama.shots import ShotSettings

try:
    import ray
except ImportError:  # CI installs Ray (.ci/setup-env): there these tests must run, not skip
    if os.environ.get("CI"):
        raise
    pytest.skip("Ray is not installed (pip install -e .[ray])", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, runtime_env=worker_runtime_env(), include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(layouts):
    return tiny_weights(layouts)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-batch")
    entries = write_shots(root, {"a": 9, "b": 6, "long": 24, "c": 7, "bad": 24})
    # A mask of the second segment cut short: the driver opens the shot fine (headers only),
    # the worker that reads that frame finds it.
    broken = root / entries["bad"]["masks"] / "f20.png"
    broken.write_bytes(broken.read_bytes()[:-40])
    return root, entries


def _entries(root: Path, entries: dict, names: list[str]) -> list[ShotEntry]:
    return [ShotEntry(n, root / entries[n]["frames"], root / entries[n]["masks"]) for n in names]


class Recorded:
    """The real engine, with each job outcome kept for the test to inspect."""

    def __init__(self, engine):
        self.engine, self.name, self.outcomes = engine, engine.name, []

    def run(self, jobs, on_done, should_run, on_progress=None):
        def keep(job, outcome):
            self.outcomes.append((job, outcome))
            on_done(job, outcome)

        self.engine.run(jobs, keep, should_run, on_progress)


def test_the_command_line_starts_a_local_cluster_and_splits_the_long_shot(shots, tmp_path):
    """First in this file: runs before the module's cluster exists, so the CLI starts its own."""
    root, entries = shots
    manifest = write_manifest(root, [entries["a"], entries["long"]], "ray.json")
    res = run_cli("batch", manifest, "--out", tmp_path, "--engine", "ray", "--split-frames", "12", *MATTE_ARGS,
                  "--progress")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[2].split()[:2] == ["long", "24"] and lines[2].endswith("done (2 segments)")
    assert lines[-1] == "2 done, 0 skipped, 0 failed" and "2/2 shots, 33/33 frames" in res.stderr
    for name in ("a", "long"):
        assert max_step_diff(tmp_path / name / "alpha", reference(root, entries[name], ShotSettings())) == 0


def test_shots_and_a_split_long_shot_equal_matte_and_a_bad_shot_fails_alone(cluster, shots, weights, tmp_path):
    root, entries = shots
    names = ["a", "bad", "b", "c", "long"]
    engine = Recorded(RayEngine(weights))
    reports = run_batch(_entries(root, entries, names), tmp_path / "vm", weights, OPTIONS, engine, split_frames=12)
    by_name = {r.name: r for r in reports}
    assert [r.name for r in reports] == names
    assert {n: r.status for n, r in by_name.items()} == {"a": "done", "bad": "failed", "b": "done", "c": "done",
                                                         "long": "done"}
    assert by_name["long"].segments == 2 and by_name["bad"].segments == 2
    assert "cannot read image" in by_name["bad"].message and by_name["bad"].message.endswith("Replace or remove the file.")
    assert "\n" not in by_name["bad"].message
    assert not (tmp_path / "vm" / "bad").exists() or not list((tmp_path / "vm" / "bad").iterdir())  # nothing staged
    assert len({o.pid for _, o in engine.outcomes}) == 2  # both workers took jobs
    long_jobs = [(j, o) for j, o in engine.outcomes if j.shot == "long"]
    assert [len(o.partials) for _, o in sorted(long_jobs, key=lambda jo: jo[1].key)] == [1, 1]  # one overlap frame each
    for name in ("a", "b", "c", "long"):
        assert max_step_diff(tmp_path / "vm" / name / "alpha", reference(root, entries[name], weights)) == 0

    free = run_batch(_entries(root, entries, ["a", "long"]), tmp_path / "wf", ShotSettings(), OPTIONS,
                     RayEngine(ShotSettings()), split_frames=12)
    assert [(r.status, r.segments) for r in free] == [("done", 1), ("done", 2)]
    for name in ("a", "long"):
        assert max_step_diff(tmp_path / "wf" / name / "alpha", reference(root, entries[name], ShotSettings())) == 0


def _kill_first_running_job(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen running ShotWorker.run (its process title says so)."""
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmdline.read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::ShotWorker.run"):
                pid = int(cmdline.parent.name)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's workers through /proc")
def test_a_killed_worker_is_restarted_and_its_job_retried_with_the_same_result(cluster, shots, weights, tmp_path):
    root, entries = shots
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_running_job, args=(killed, stop), daemon=True)
    engine = Recorded(RayEngine(weights, retries=2))
    killer.start()
    try:
        reports = run_batch(_entries(root, entries, ["long"]), tmp_path, weights, OPTIONS, engine, split_frames=12)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no worker was seen running a job"
    assert [(r.status, r.segments) for r in reports] == [("done", 2)]
    assert killed[0] not in {o.pid for _, o in engine.outcomes}  # its job came back from the restarted worker
    assert len(engine.outcomes) == 2 and all(o.ok for _, o in engine.outcomes)
    assert max_step_diff(tmp_path / "long" / "alpha", reference(root, entries["long"], weights)) == 0
    assert sorted(p.name for p in (tmp_path / "long").iterdir()) == [".videomama-batch.json", "alpha"]
