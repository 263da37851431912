"""`python -m videomama batch` without Ray: manifests, segment planning, exact merging of split shots,
completion markers, a killed run and its rerun, bad shots failing alone (Ray itself: test_batch_ray.py)."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from batch_shots import (
    MATTE_ARGS,
    OPTIONS,
    max_step_diff,
    reference,
    run_cli,
    tiny_weights,
    torch_threads,
    write_manifest,
    write_shots,
)

from videomama.distributed import markers
from videomama.distributed.manifest import ShotEntry, load_manifest, parse_manifest
from videomama.distributed.merge import merge_partials
from videomama.distributed.plan import plan_segments
from videomama.distributed.work import JobOutcome, Partial
from videomama.errors import InputError
from videomama.options import MatteOptions
from videomama.pipeline.matte import collect_frames
from videomama.shots import (
    ShotSettings,
    finish_alpha,
    iter_shot_alpha,
    iter_shot_part,
    load_engine,
    open_shot,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(layouts):
    return tiny_weights(layouts)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    return root, write_shots(root, {"a": 9, "b": 6, "long": 24})


# ----------------------------------------------------------------------------------------------
# manifests
# ----------------------------------------------------------------------------------------------
def test_json_and_csv_manifests_give_the_same_shots(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps([
        {"name": "sh010", "frames": "plates/sh010", "masks": "/abs/roto"},
        {"name": "sh020", "frames": "v.mp4", "masks": "m.mp4", "window": 8, "mask-threshold": 0.3},
    ]))
    (tmp_path / "m.csv").write_text("name,frames,masks,window,mask_threshold\n"
                                    "sh010,plates/sh010,/abs/roto,,\n\n"
                                    "sh020,v.mp4,m.mp4,8,0.3\n")
    for path in (tmp_path / "m.json", tmp_path / "m.csv"):
        a, b = load_manifest(path)
        assert (a.name, a.frames, a.masks) == ("sh010", tmp_path / "plates/sh010", Path("/abs/roto"))
        assert a.matte_options(OPTIONS) == OPTIONS  # an empty cell keeps the default
        assert b.matte_options(OPTIONS) == MatteOptions(resolution=64, window=8, overlap=1, mask_threshold=0.3)


@pytest.mark.parametrize("text, needle", [
    ('{"name": "a"}', "holds a JSON dict; write a list of shots"),
    ("[", "is not valid JSON"),
    ("[]", "lists no shots"),
    ('[{"name": "a", "frames": "f"}]', "entry 1 has no masks"),
    ('[{"name": "a/b", "frames": "f", "masks": "m"}]', "is not a plain folder name"),
    ('[{"name": "a", "frames": "f", "masks": "m"}, {"name": "A", "frames": "f", "masks": "m"}]',
     "entry 2: the name 'A' is already used by entry 1"),
    ('[{"name": "a", "frames": "f", "masks": "m", "windw": 4}]', "unknown field(s) windw; allowed: name, frames"),
])
def test_a_malformed_manifest_is_refused_whole_in_one_line(text, needle):
    with pytest.raises(InputError, match=None) as info:
        parse_manifest(text, Path("/x"), name="m.json")
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_option_values_fail_their_shot_only():
    good = ShotEntry("a", Path("f"), Path("m"), {"window": "8"})
    assert good.matte_options(OPTIONS).window == 8
    for options, needle in (({"window": "eight"}, "window='eight' is not an integer"),
                            ({"window": 2.5}, "window=2.5 is not an integer"),
                            ({"overlap": 9}, "overlap=9 must be >= 0 and smaller than window=4")):
        with pytest.raises(InputError, match="shot 'b': ") as info:
            ShotEntry("b", Path("f"), Path("m"), options).matte_options(OPTIONS)
        assert needle in str(info.value)


# ----------------------------------------------------------------------------------------------
# splitting and merging, in memory
# ----------------------------------------------------------------------------------------------
def test_segments_cut_at_window_boundaries_and_cover_every_window_once():
    from videomama.shots import shot_windows

    windows = shot_windows(24, OPTIONS)  # starts 0, 3, ..., 20: 7 windows
    for split, count in ((0, 1), (24, 1), (12, 2), (8, 3)):
        segs = plan_segments(24, OPTIONS, weight_free=False, split_frames=split)
        assert len(segs) == count
        assert [k for s in segs for k in s.windows] == list(range(len(windows)))  # each window once, in order
        for a, b in zip(segs, segs[1:]):
            assert a.frames.stop > b.frames.start  # neighbours share their overlap frames
    free = plan_segments(24, OPTIONS, weight_free=True, split_frames=10)
    assert [s.frames for s in free] == [range(0, 8), range(8, 16), range(16, 24)] and free[0].windows is None


def _split_alpha(frames, masks, options, engine, segments) -> tuple[torch.Tensor, int]:
    """Run every segment as a worker would and merge as the driver does; (alpha, frames merged)."""
    out: dict[int, torch.Tensor] = {}
    outcomes = []
    for seg in segments:
        outcome = JobOutcome(("long", seg.index))
        for r in iter_shot_part(frames, masks, options, engine, windows=seg.windows,
                                frames_range=seg.frames if seg.windows is None else None):
            if r.complete:
                assert r.index not in out, "a frame is finished by one segment only"
                out[r.index] = finish_alpha(frames, r.index, r.alpha, options, engine.settings)
            else:
                outcome.partials.append(Partial(r.index, r.weighted_sum.numpy(), r.weight))
        outcomes.append(outcome)
    merged = merge_partials(outcomes)
    assert not set(merged) & set(out)
    for i, alpha in merged.items():
        out[i] = finish_alpha(frames, i, alpha, options, engine.settings)
    assert sorted(out) == list(range(len(frames)))
    return torch.stack([out[i] for i in range(len(frames))]), len(merged)


@pytest.mark.parametrize("mode", ["tiny-weights", "weight-free"])
def test_a_shot_split_into_segments_merges_to_the_whole_shot(shots, weights, mode):
    root, entries = shots
    settings = weights if mode == "tiny-weights" else ShotSettings()
    engine = load_engine(settings)
    frames, masks = open_shot(root / entries["long"]["frames"], root / entries["long"]["masks"])
    with torch_threads(1):
        whole = collect_frames(iter_shot_alpha(frames, masks, OPTIONS, engine), len(frames))
        for split in (12, 8):
            segments = plan_segments(len(frames), OPTIONS, weight_free=settings.unet is None, split_frames=split)
            alpha, merged = _split_alpha(frames, masks, OPTIONS, engine, segments)
            diff = float((alpha - whole).abs().max())
            print(f"{mode}: {len(segments)} segments, {merged} merged frames, max |split - whole| = {diff:.3g}")
            assert diff <= 1e-6
            # VideoMaMa merges one overlap frame per cut (overlap 1); the refiner's segments need none.
            assert merged == (len(segments) - 1 if settings.unet else 0)


# ----------------------------------------------------------------------------------------------
# markers
# ----------------------------------------------------------------------------------------------
def test_a_marker_counts_only_for_the_same_settings_and_a_committed_folder(tmp_path, weights):
    key = markers.result_key(Path("f"), Path("m"), 9, OPTIONS, weights)
    assert markers.result_key(Path("f"), Path("m"), 9, MatteOptions(resolution=64, window=4, overlap=1, seed=7),
                              weights) != key
    assert markers.result_key(Path("f"), Path("m"), 9, OPTIONS, ShotSettings()) != key
    assert markers.result_key(Path("f"), Path("m"), 10, OPTIONS, weights) != key
    shot = tmp_path / "sh"
    shot.mkdir()
    markers.mark_complete(shot, key, 9, 1.0)
    assert not markers.is_complete(shot, key)  # no alpha folder: not complete whatever the marker says
    (shot / "alpha").mkdir()
    assert markers.is_complete(shot, key) and not markers.is_complete(shot, key[::-1])
    (shot / ".alpha.partial-x").mkdir()
    markers.clear_shot(shot)
    assert sorted(p.name for p in shot.iterdir()) == ["alpha"]


# ----------------------------------------------------------------------------------------------
# the command line, --engine local, without Ray
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def no_ray(tmp_path_factory):
    """A PYTHONPATH entry under which `import ray` fails, as on an install without the [ray] extra."""
    folder = tmp_path_factory.mktemp("noray")
    (folder / "ray").mkdir()
    (folder / "ray" / "__init__.py").write_text("raise ImportError('ray is not installed (test)')\n")
    return {"PYTHONPATH": f"{folder}{os.pathsep}{ROOT}"}


def test_local_batch_writes_what_matte_writes_and_a_bad_shot_fails_alone(shots, weights, layouts, no_ray, tmp_path):
    root, entries = shots
    bad = {"name": "bad", "frames": "shots/a/frames", "masks": "shots/missing"}
    manifest = write_manifest(root, [entries["a"], bad, entries["b"]], "local.json")
    out = tmp_path / "out"
    weights_args = ("--unet", layouts["unet_file"], "--vae", layouts["vae_file_sgm"], "--precision", "fp32")
    res = run_cli("batch", manifest, "--out", out, *weights_args, *MATTE_ARGS, "--progress", env_extra=no_ray)
    assert res.returncode == 1, res.stderr  # 1: some shot failed, the others are done
    table = res.stdout.splitlines()
    assert table[0].split() == ["shot", "frames", "seconds", "status"]
    assert table[1].split()[:2] == ["a", "9"] and table[1].split()[3] == "done"
    assert table[2].startswith("bad") and "failed: " in table[2] and "shots/missing" in table[2]
    assert table[3].split()[3] == "done" and table[-1] == "2 done, 0 skipped, 1 failed"
    assert "3/3 shots, 15/15 frames" in res.stderr  # the one overall bar
    for name in ("a", "b"):
        assert max_step_diff(out / name / "alpha", reference(root, entries[name], weights)) == 0
        assert sorted(p.name for p in (out / name).iterdir()) == [markers.MARKER_NAME, "alpha"]
    assert not (out / "bad").exists()

    again = run_cli("batch", manifest, "--out", out, *weights_args, *MATTE_ARGS, env_extra=no_ray)
    assert again.returncode == 1
    assert [line.split()[3] for line in again.stdout.splitlines()[1:4]] == ["skipped:", "failed:", "skipped:"]

    ray = run_cli("batch", manifest, "--out", out, "--engine", "ray", env_extra=no_ray)
    assert ray.returncode == 2 and ray.stderr.strip().splitlines() == [
        "error: --engine ray needs Ray, which is not installed: pip install 'comfyui-videomama[ray]' "
        "(or pip install ray), or use --engine local."]


def test_a_killed_run_leaves_no_shot_that_looks_complete_and_the_rerun_finishes(shots, no_ray, tmp_path):
    """Weight-free shots (no weights to load): kill the batch while the long shot is half written."""
    root, entries = shots
    manifest = write_manifest(root, [entries["a"], entries["long"]], "kill.json")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": no_ray["PYTHONPATH"], "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "videomama", "batch", str(manifest), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        staged = list((out / "long").glob(".alpha.partial-*/*.png")) if (out / "long").is_dir() else []
        if len(staged) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it could be killed half-way"
    assert (out / "a" / markers.MARKER_NAME).is_file()
    assert not (out / "long" / "alpha").exists() and not (out / "long" / markers.MARKER_NAME).exists()
    a_files = {p: p.stat().st_mtime_ns for p in (out / "a" / "alpha").iterdir()}

    res = run_cli("batch", manifest, "--out", out, env_extra=no_ray)
    assert res.returncode == 0, res.stderr
    assert [line.split()[3] for line in res.stdout.splitlines()[1:3]] == ["skipped:", "done"]
    assert {p: p.stat().st_mtime_ns for p in (out / "a" / "alpha").iterdir()} == a_files  # not rewritten
    assert sorted(p.name for p in (out / "long").iterdir()) == [markers.MARKER_NAME, "alpha"]  # staging gone
    assert max_step_diff(out / "long" / "alpha", reference(root, entries["long"], ShotSettings())) == 0


def test_nothing_of_the_batch_is_imported_by_the_library_or_the_nodes():
    code = ("import sys, videomama, videomama.shots, videomama.cli; "
            "bad = [m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'videomama.distributed'))]; "
            "assert not bad, bad")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0
    for path in (ROOT / "nodes").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert not any(n == "ray" or "distributed" in n.split(".") for n in names), (path, names)
