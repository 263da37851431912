"""The benchmark script stays runnable (tiny CPU mode), and repeated runs leave memory where it was."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videomama.memory import plans as lv
from videomama.memory.streaming import streamer_of
from videomama.options import MatteOptions
from videomama.pipeline.matte import collect_frames
from videomama.pipeline.run import LocalHost, run_matte
from videomama.weights.configs import build_random_model

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_matte.py"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--tiny", "--threads", "1", "--warmup", "0", "--json", str(out),
         "--sweep", "--sweep-sides", "64", "--sweep-lengths", "4,8"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_tiny_benchmark_table_and_json(tiny_run):
    stdout, data = tiny_run
    rows = {r["config"]: r for r in data["results"]}
    assert list(rows) == ["fp32", "default", "low_vram", "official"]
    main_table = [ln for ln in stdout.split("\n\n")[1].splitlines() if ln.startswith("|")]  # before the sweep
    assert main_table[0].startswith("| config | dtype | frames/s |")
    assert [line.split("|")[1].strip() for line in main_table[2:]] == list(rows)  # one row per configuration
    for r in rows.values():
        assert r["frames"] == 6 and r["source"] == "256x128" and r["processing"] == "128x64"
        assert r["total_s"] > 0 and r["fps"] == pytest.approx(6 / r["total_s"])
        stages = r["stages"]
        assert all(v >= 0 for v in stages.values()) and r["cpu_side_s"] >= 0
        assert sum(stages.values()) + r["cpu_side_s"] == pytest.approx(r["total_s"], rel=1e-6, abs=1e-6)
        assert stages["encode"] > 0 and stages["unet"] > 0 and stages["decode"] > 0
        assert r["peak_bytes"] >= r["start_bytes"] > 50 * 2**20 and r["mem_kind"] == "host peak RSS"
    # Precision and plans: default is fp32 on the CPU (the same run), low_vram within rounding,
    # the official approach (bf16 on the CPU, 8-bit round trips, one UNet call, other noise) differs.
    assert rows["default"]["dtype"] == "fp32" and rows["default"]["max_abs_diff"] == 0
    assert rows["fp32"]["max_abs_diff"] is None
    assert rows["low_vram"]["max_abs_diff"] < 1e-3
    assert 1e-3 < rows["official"]["max_abs_diff"] <= 1.0
    assert rows["official"]["dtype"] == "bf16" and rows["official"]["stages"]["clip"] > 0
    assert all(rows[n]["stages"]["clip"] == 0 for n in ("fp32", "default", "low_vram"))
    sweep = data["sweep"]
    assert [(r["processing"], r["frames"]) for r in sweep] == [("64x64", 4), ("64x64", 8)]
    assert all(r["total_s"] > 0 and r["peak_bytes"] > 0 for r in sweep)
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["torch_threads"] == 1


def _rss() -> int:
    """Resident bytes after handing freed heap pages back (glibc's malloc_trim), so the figure
    is what the process keeps, not what the allocator happens to cache at that moment."""
    import ctypes
    import os

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: measure as is
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the RSS from /proc (Linux)")
def test_twenty_runs_leave_host_memory_where_the_second_left_it():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_random_model()
        g = torch.Generator().manual_seed(0)
        frames = torch.rand(5, 48, 64, 3, generator=g)
        masks = (torch.rand(5, 48, 64, generator=g) > 0.5).float()
        options = MatteOptions(resolution=64, window=4, overlap=1, decode_chunk=4)
        rss = []
        first = None
        for run in range(20):  # alternate plans: hooks are installed and removed every other run
            plan = lv.LOW_VRAM if run % 2 else lv.DEFAULT
            alpha = collect_frames(run_matte(model, frames, masks, options, memory=plan, host=LocalHost("cpu")), 5)
            if first is None:
                first = alpha
            assert float((alpha - first).abs().max()) < 1e-3
            del alpha
            gc.collect()
            rss.append(_rss())
        grown = rss[19] - rss[1]
        print("RSS after each run (MiB):", [round(r / 2**20, 1) for r in rss])
        assert grown < 2 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB from run 2 to run 20"
        assert streamer_of(model) is None
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the CPU run above covers host memory")
def test_twenty_runs_leave_gpu_memory_where_the_second_left_it():
    model = build_random_model().to("cuda")
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(5, 64, 96, 3, generator=g)
    masks = (torch.rand(5, 64, 96, generator=g) > 0.5).float()
    options = MatteOptions(resolution=96, window=4, overlap=1, decode_chunk=4)
    allocated = []
    for run in range(20):
        plan = lv.LOW_VRAM if run % 2 else lv.DEFAULT
        collect_frames(run_matte(model, frames, masks, options, memory=plan, host=LocalHost("cuda")), 5)
        assert all(p.is_cuda for p in model.parameters())  # streaming puts every weight back afterwards
        gc.collect()
        torch.cuda.synchronize()
        allocated.append(torch.cuda.memory_allocated())
    assert allocated[19] == allocated[1], allocated


def test_decoder_benchmark_tiny(tmp_path):
    """benchmarks/bench_decode.py stays runnable; its figures are the ones the decoder promises."""
    out = tmp_path / "decode.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_decode.py"), "--tiny", "--sizes", "64x64",
         "--repeats", "1", "--threads", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())
    assert "| 64x64 | 8 | fp32 |" in proc.stdout
    assert row["max_abs_alpha_diff"] <= 1e-5 and row["finite"]
    assert row["live_ratio"] <= 0.35 and row["diffusers_rss_bytes"] > row["streamed_rss_bytes"] > 0
    assert row["diffusers_seconds"] > 0 and row["streamed_seconds"] > 0
