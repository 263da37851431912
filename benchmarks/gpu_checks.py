"""The one-shot GPU check (issue #9, item 4): what only a real GPU can show, in one run.

Each stage runs in its own child process with a time budget (a CUDA error that poisons the
context, a hang or an out-of-memory then costs that stage alone); a stage that fails records
its one-line error and the run goes on. After every stage the JSON file and the markdown table
in ``--out`` are rewritten, so a run killed at its limit still leaves what it measured.

Stages (in this order: the cheap, GPU-only facts first, the long benchmark rows last):

* ``attention_chunked``  the pack's chunked attention (``videomama.pipeline.attention``) on a
  temporal-attention call of 65,536 sequences (batch x heads = 327,680), against the math backend;
* ``sdpa_raw``           plain ``F.scaled_dot_product_attention`` at batch 65,536, each shape in
  its own process: does the unchunked call fail on this GPU?
* ``vae_finite``         a real-size random SVD VAE encodes and decodes a 1024x576 frame in
  fp32/fp16/bf16: all finite?
* ``sam2_offload``       tiny SAM2 in fp32 with and without ``offload_to_cpu``: equal masks?
* ``matte_gpu_frames``   ``matte_clip`` on frames and masks already on the GPU vs the same on the CPU;
* ``repeat20``           20 ``matte_clip`` runs: allocated memory after run 20 == after run 2?
  (both with the tiny random model at 512x288: device handling and leftovers, not speed);
* ``comfy_lowvram``      ComfyUI's ModelPatcher in --lowvram (only where ComfyUI is carried);
* ``cuda_tests``         ``pytest -m cuda`` on the test files that carry the marker;
* ``bench_rows``         ``benchmarks/bench_matte.py`` rows fp32/default/low_vram/official at
  1024x576, 64 frames from a 1080p source;
* ``bench_sides``        the same benchmark's 512 and 1536 long-side points (default plan).

Every stage records its peak ``torch.cuda.max_memory_allocated`` (reset when the stage starts);
the benchmark stages report their own per-row peaks.

Commands::

    bash benchmarks/gpu_check.sh                                   # on the GPU machine
    python benchmarks/gpu_checks.py --device cpu --quick --out /tmp/gc  # plumbing check, CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(REPO))  # this checkout's videomama, not an installed copy


class Skip(Exception):
    """A stage that cannot run here: recorded as 'skipped' with the reason."""


@dataclass
class Context:
    device: str
    quick: bool
    out: Path

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def _torch() -> Any:
    import torch

    return torch


def _paths() -> None:
    for p in (REPO, REPO / "tests", BENCH):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:400] if lines else ""


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)


# ---------------------------------------------------------------------------------------------- stages
def stage_attention_chunked(ctx: Context) -> dict[str, Any]:
    torch = _torch()
    try:
        from videomama.pipeline.attention import MAX_ATTENTION_BATCH, ChunkedAttnProcessor
    except ImportError as exc:
        raise Skip(f"not available: {exc}") from None
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # SVD's first temporal block at 2048x2048: 256x256 latent pixels = 65,536 sequences of 16
    # frames, 320 channels, 5 heads. Quick: 256 sequences, chunked at 64 rows so chunking runs.
    sequences, max_batch = (256, 64) if ctx.quick else (65536, MAX_ATTENTION_BATCH)
    dtype = torch.float16 if ctx.cuda else torch.float32
    torch.manual_seed(0)
    attn = Attention(query_dim=320, heads=5, dim_head=64).to(ctx.device, dtype).eval()
    x = torch.randn(sequences, 16, 320, device=ctx.device, dtype=dtype)
    with torch.no_grad():
        t0 = time.perf_counter()
        out = ChunkedAttnProcessor(max_batch)(attn, x)
        if ctx.cuda:
            torch.cuda.synchronize()
        chunked_s = time.perf_counter() - t0
        with sdpa_kernel(SDPBackend.MATH):  # no grid limit: the reference
            ref = AttnProcessor2_0()(attn, x)
    diff = float((out.float() - ref.float()).abs().max())
    tolerance = 1e-5 if dtype == torch.float32 else 5e-3  # fp16: flash/mem-efficient vs math kernels
    return {"sequences": sequences, "sdpa_batch": sequences * attn.heads, "max_batch": max_batch,
            "dtype": str(dtype).replace("torch.", ""), "finite": bool(torch.isfinite(out).all()),
            "max_abs_diff_vs_math": diff, "tolerance": tolerance, "chunked_s": round(chunked_s, 4),
            "headline": f"batch {sequences * attn.heads}: max diff vs math {diff:.2e}",
            "_ok": bool(torch.isfinite(out).all()) and diff <= tolerance}


SDPA_SNIPPET = """
import sys, torch, torch.nn.functional as F
n, h, dev = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dt = torch.float16 if dev == 'cuda' else torch.float32
q = torch.randn(n, h, 16, 64, device=dev, dtype=dt)
o = F.scaled_dot_product_attention(q, q, q)
if dev == 'cuda':
    torch.cuda.synchronize()
print('finite' if bool(torch.isfinite(o).all()) else 'NOT finite')
"""


def stage_sdpa_raw(ctx: Context) -> dict[str, Any]:
    shapes = [(64, 1), (64, 5)] if ctx.quick else [(65536, 1), (65536, 5), (13107, 5)]
    figures: dict[str, Any] = {}
    for n, h in shapes:  # a failed launch can leave the CUDA context unusable: one process each
        try:
            p = _run([sys.executable, "-c", SDPA_SNIPPET, str(n), str(h), ctx.device], timeout=60)
            figures[f"{n}x{h}"] = _last_line(p.stdout) if p.returncode == 0 else "error: " + _last_line(p.stderr)
        except subprocess.TimeoutExpired:
            figures[f"{n}x{h}"] = "error: timed out after 60 s"
    figures["headline"] = "; ".join(f"{k}: {v[:60]}" for k, v in figures.items())
    return figures


def stage_vae_finite(ctx: Context) -> dict[str, Any]:
    torch = _torch()
    from videomama.weights.checkpoints import SVD_VAE_CONFIG
    from videomama.weights.configs import TINY_VAE_CONFIG, build_random_vae

    w, h = (64, 32) if ctx.quick else (1024, 576)
    master = build_random_vae(TINY_VAE_CONFIG if ctx.quick else SVD_VAE_CONFIG, 0)
    torch.manual_seed(0)
    frame = torch.rand(1, 3, h, w) * 2 - 1
    figures: dict[str, Any] = {"size": f"{w}x{h}"}
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if not ctx.cuda:
        dtypes.pop("fp16")  # fp16 convolutions on the CPU are impractically slow
    for name, dt in dtypes.items():
        vae = master.to(ctx.device, dt)
        with torch.no_grad():
            z = vae.encode(frame.to(ctx.device, dt)).latent_dist.mode()
            rgb = vae.decode(z, num_frames=1).sample
        figures[f"{name}_encode_finite"] = bool(torch.isfinite(z).all())
        figures[f"{name}_decode_finite"] = bool(torch.isfinite(rgb).all())
        figures[f"{name}_decode_max_abs"] = float(rgb.float().abs().max()) if figures[f"{name}_decode_finite"] else None
    master = vae = None
    bad = [k for k, v in figures.items() if k.endswith("_finite") and not v]
    figures["headline"] = "all finite" if not bad else "NOT finite: " + ", ".join(bad)
    figures["_ok"] = not bad
    return figures


def stage_sam2_offload(ctx: Context) -> dict[str, Any]:
    torch = _torch()
    _paths()
    try:
        import tiny_sam2

        from videomama.sam2.loading import load_sam2
        from videomama.sam2.tracking import track
    except ImportError as exc:
        raise Skip(f"sam2 not installed: {exc}") from None
    path = tiny_sam2.write_tiny_sam2(ctx.out / "tiny_sam2.safetensors")
    tracker = load_sam2(path, ctx.device, config=tiny_sam2.tiny_config())
    torch.manual_seed(0)
    frames = torch.rand(8, 96, 128, 3)
    prompts = '{"frame": 0, "points": [[60, 40]]}'
    kept = track(tracker, frames, prompts, output="soft", dtype=torch.float32)
    offloaded = track(tracker, frames, prompts, output="soft", dtype=torch.float32, offload_to_cpu=True)
    path.unlink()
    diff = float((kept - offloaded).abs().max())
    return {"frames": 8, "equal": bool(torch.equal(kept, offloaded)), "max_abs_diff": diff,
            "headline": f"offload == resident: {bool(torch.equal(kept, offloaded))} (max diff {diff:.2e})",
            "_ok": bool(torch.equal(kept, offloaded))}


def _small_model(ctx: Context) -> Any:
    """The tiny random model in the device's precision. Tiny on purpose: the real-size UNet takes
    tens of seconds to build on the host, and what these stages check (device handling, memory
    left behind per run) does not depend on the width of the layers; bench_* use the real size."""
    torch = _torch()
    _paths()
    from bench_matte import build_master, instantiate

    dtype = torch.float16 if ctx.cuda else torch.float32
    return instantiate(build_master(tiny=True), dtype, ctx.device)


def _clip(ctx: Context, count: int) -> tuple[Any, Any, Any]:
    _paths()
    from bench_matte import make_pool

    from videomama.options import MatteOptions

    h, w = (64, 96) if ctx.quick else (288, 512)
    frames, masks = make_pool(h, w, count)
    return frames, masks, MatteOptions(resolution=max(h, w), window=4 if ctx.quick else 8, overlap=2)


def stage_matte_gpu_frames(ctx: Context) -> dict[str, Any]:
    torch = _torch()
    from videomama.pipeline.matte import matte_clip

    model = _small_model(ctx)
    frames, masks, options = _clip(ctx, 6 if ctx.quick else 12)
    with torch.no_grad():
        on_cpu = matte_clip(model, frames, masks, options)
        t0 = time.perf_counter()
        on_device = matte_clip(model, frames.to(ctx.device), masks.to(ctx.device), options)
        seconds = time.perf_counter() - t0
    diff = float((on_cpu - on_device).abs().max())
    return {"frames": len(frames), "size": f"{frames.shape[2]}x{frames.shape[1]}", "max_abs_diff_vs_cpu_frames": diff,
            "output_device": str(on_device.device), "seconds": round(seconds, 3),
            "headline": f"ran; max diff vs CPU-held frames {diff:.2e}", "_ok": diff <= 1e-3}


def _live_tensor_bytes() -> int:
    """Bytes of every tensor the garbage collector can see (the CPU stand-in for memory_allocated)."""
    import gc
    import warnings

    torch = _torch()
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on torch's deprecated module aliases warns
        warnings.simplefilter("ignore")
        return sum(t.untyped_storage().nbytes() for t in gc.get_objects() if isinstance(t, torch.Tensor))


def stage_repeat20(ctx: Context) -> dict[str, Any]:
    torch = _torch()
    from videomama.pipeline.matte import matte_clip

    model = _small_model(ctx)
    frames, masks, options = _clip(ctx, 6 if ctx.quick else 10)
    runs = 3 if ctx.quick else 20
    after: list[int] = []
    with torch.no_grad():
        for _ in range(runs):
            matte_clip(model, frames, masks, options)
            if ctx.cuda:
                torch.cuda.synchronize()
                after.append(int(torch.cuda.memory_allocated()))
            else:
                after.append(_live_tensor_bytes())
    grew = after[-1] - after[1]
    return {"runs": runs, "bytes_after_run2": after[1], "bytes_after_last": after[-1], "growth_bytes": grew,
            "measure": "cuda memory_allocated" if ctx.cuda else "bytes of live tensors (gc)",
            "headline": f"after run {runs} - after run 2 = {grew} B", "_ok": grew == 0}


def stage_comfy_lowvram(ctx: Context) -> dict[str, Any]:
    root = os.environ.get("COMFYUI_DIR", "")
    if not root or not (Path(root) / "comfy" / "model_patcher.py").is_file():
        raise Skip("ComfyUI not carried (see benchmarks/wheels/README.md, 'ComfyUI')")
    raise Skip(f"ComfyUI found at {root}, but the ModelPatcher --lowvram check is not written yet")


def stage_cuda_tests(ctx: Context) -> dict[str, Any]:
    if not ctx.cuda:
        raise Skip("needs CUDA")
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
    if not files:
        raise Skip("no test carries @pytest.mark.cuda on this branch")
    p = _run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *files], timeout=100)
    (ctx.out / "cuda_tests.log").write_text(p.stdout + p.stderr)
    summary = _last_line(p.stdout)
    if p.returncode not in (0, 5):  # 5: nothing selected
        raise RuntimeError(f"pytest -m cuda: {summary} (log: cuda_tests.log)")
    return {"files": files, "summary": summary, "headline": summary}


def _bench(ctx: Context, extra: list[str], timeout: float) -> dict[str, Any]:
    json_path = ctx.out / f"bench_{int(time.time() * 1000)}.json"
    base = ["--device", "cpu", "--tiny"] if ctx.quick else ["--device", "cuda"]
    p = _run([sys.executable, str(BENCH / "bench_matte.py"), *base, *extra, "--json", str(json_path)], timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("bench_matte.py: " + _last_line(p.stderr or p.stdout))
    data = json.loads(json_path.read_text())
    json_path.unlink()
    return data


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {"dtype": r["dtype"], "processing": r["processing"], "frames": r["frames"], "fps": round(r["fps"], 3),
            "peak_mib": round(r["peak_bytes"] / 2**20), "max_abs_diff": r["max_abs_diff"],
            "stages_s": {k: round(v, 3) for k, v in r["stages"].items()}}


def stage_bench_rows(ctx: Context) -> dict[str, Any]:
    size = [] if ctx.quick else ["--size", "1024x576", "--source", "1920x1080", "--frames", "64"]
    data = _bench(ctx, [*size, "--configs", "default,low_vram,official"], timeout=400)
    rows = {r["config"]: _row(r) for r in data["results"]}
    head = ", ".join(f"{k} {v['fps']:.2f} f/s {v['peak_mib']} MiB" for k, v in rows.items())
    return {"rows": rows, "environment": data["environment"], "headline": head}


def stage_bench_sides(ctx: Context) -> dict[str, Any]:
    sides = ["--sweep-sides", "64,128", "--sweep-lengths", "4"] if ctx.quick else \
        ["--sweep-sides", "512,1536", "--sweep-lengths", "64", "--source", "1920x1080"]
    data = _bench(ctx, ["--configs", "", "--no-reference", "--sweep", *sides], timeout=400)
    rows = {f"{r['config']}@{r['processing']}": _row(r) for r in data["sweep"]}
    head = ", ".join(f"{k} {v['fps']:.2f} f/s {v['peak_mib']} MiB" for k, v in rows.items())
    return {"rows": rows, "headline": head}


# name -> (function, time budget in seconds on the GPU machine)
STAGES: dict[str, tuple[Callable[[Context], dict[str, Any]], int]] = {
    "attention_chunked": (stage_attention_chunked, 45),
    "sdpa_raw": (stage_sdpa_raw, 75),
    "vae_finite": (stage_vae_finite, 45),
    "sam2_offload": (stage_sam2_offload, 30),
    "matte_gpu_frames": (stage_matte_gpu_frames, 60),
    "repeat20": (stage_repeat20, 60),
    "comfy_lowvram": (stage_comfy_lowvram, 10),
    "cuda_tests": (stage_cuda_tests, 100),
    "bench_rows": (stage_bench_rows, 200),
    "bench_sides": (stage_bench_sides, 120),
}


# ---------------------------------------------------------------------------------------------- running
def run_stage_here(name: str, ctx: Context) -> dict[str, Any]:
    """Run one stage in this process; returns its record (never raises)."""
    torch = _torch()
    if ctx.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    record: dict[str, Any] = {"name": name, "status": "ok", "seconds": 0.0, "figures": {}, "error": None}
    try:
        figures = STAGES[name][0](ctx)
        if figures.pop("_ok", True) is False:
            record["status"] = "failed"
            record["error"] = figures.get("headline", "check failed")
        record["figures"] = figures
    except Skip as exc:
        record["status"], record["error"] = "skipped", str(exc)
    except Exception as exc:  # a stage's failure is a finding: recorded in one line, the run goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        record["status"], record["error"] = "failed", f"{type(exc).__name__}: {first}"[:400]
    record["seconds"] = round(time.perf_counter() - t0, 2)
    if ctx.cuda and torch.cuda.max_memory_allocated() > 0:  # bench_* report their own peaks per row
        record["figures"]["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return record


def run_stage_child(name: str, ctx: Context, budget: float) -> dict[str, Any]:
    """Run one stage in a child process limited to ``budget`` seconds."""
    result = ctx.out / f".stage_{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--device", ctx.device, "--out", str(ctx.out),
           "--child", name, *(["--quick"] if ctx.quick else [])]
    t0 = time.perf_counter()
    try:
        p = _run(cmd, timeout=budget)
        if result.is_file():
            record = json.loads(result.read_text())
            result.unlink()
            return record
        error = f"child exited {p.returncode}: {_last_line(p.stderr)}"
    except subprocess.TimeoutExpired:
        error = f"timed out after its {budget:.0f} s budget"
    return {"name": name, "status": "failed", "seconds": round(time.perf_counter() - t0, 2), "figures": {}, "error": error}


def markdown(records: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = [f"# GPU check: {env.get('gpu', env['device'])}, torch {env['torch']}, {env['when']}", "",
             "| stage | status | s | peak MiB | headline / error |", "| --- | --- | --- | --- | --- |"]
    for r in records:
        text = r["error"] if r["status"] != "ok" else r["figures"].get("headline", "")
        peak = r["figures"].get("peak_allocated_mib", "-")
        lines.append(f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {peak} | {str(text).replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict[str, Any]:
    import platform

    torch = _torch()
    env: dict[str, Any] = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
                           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                   gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--quick", action="store_true", help="tiny models and sizes: the plumbing in seconds (CPU, CI)")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"), help="folder for gpu_check.json/.md")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma list of stages to run")
    ap.add_argument("--total", type=float, default=450, help="seconds for all stages together")
    ap.add_argument("--inline", action="store_true", help="run stages in this process (no budgets; quick CI runs)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.device, args.quick, out)
    if args.child:
        (out / f".stage_{args.child}.json").write_text(json.dumps(run_stage_here(args.child, ctx)))
        return 0
    names = [s for s in args.stages.split(",") if s]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    if args.device == "cuda" and not _torch().cuda.is_available():
        print("gpu_checks: --device cuda, but torch sees no CUDA GPU; use --device cpu --quick for the CPU run",
              file=sys.stderr)
        return 2
    env = environment(args.device)
    env["quick"] = args.quick
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.total
    for name in names:
        left = deadline - time.monotonic()
        if args.inline:
            record = run_stage_here(name, ctx)
        elif left < 5:
            record = {"name": name, "status": "skipped", "seconds": 0.0, "figures": {},
                      "error": f"no time left of the {args.total:.0f} s total"}
        else:
            record = run_stage_child(name, ctx, min(STAGES[name][1], left))
        records.append(record)
        print(f"{name}: {record['status']} in {record['seconds']:.1f} s  "
              f"{record['error'] or record['figures'].get('headline', '')}", flush=True)
        (out / "gpu_check.json").write_text(json.dumps({"environment": env, "stages": records}, indent=1))
        (out / "gpu_check.md").write_text(markdown(records, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
