"""Speed (and quality) of the weight-free refiner, foreground estimation and the detail pass.

    python benchmarks/bench_refine.py                  # 1920x1080, 8 frames, CPU
    python benchmarks/bench_refine.py --size 3840x2160 --frames 4 --device cuda
    python benchmarks/bench_refine.py --base-rev 8ebb5ec --repeats 3   # + the old refiner, same frames

With ``--base-rev`` the refiner of that git revision is timed on the same frames, alternating
with the current one ``--repeats`` times (so load changes on a shared machine hit both), and
the ratio of the best times is printed: on a loaded machine that ratio is the figure to trust.

Frames come from the synthetic scene (rendered before timing starts); the coarse mask is
the measurement mask (true alpha thresholded, shrunk 8x, grown back). Prints frames/s of each
step, timed after one warm-up frame, plus MAD/Grad of the coarse mask and of the refined matte.
CPU time is printed too: on a shared machine wall time depends on the load (and torch's
worker threads spin when a core is taken), CPU time much less so.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.eval.metrics import compute_all
from videomama.eval.synthetic import SyntheticScene, coarse_mask
from videomama.imaging.composite import estimate_foreground
from videomama.imaging.refine import detail_refine, refine_clip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start, time.process_time() - cpu


def _report(name: str, frames: int, wall: float, cpu: float) -> None:
    print(f"{name:20s} {frames / wall:6.2f} frames/s  ({wall / frames * 1000:5.0f} ms/frame wall, "
          f"{cpu / frames * 1000:5.0f} ms/frame CPU time)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1920x1080", help="WxH (default %(default)s)")
    p.add_argument("--frames", type=int, default=8, help="timed frames (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--base-rev", default=None, help="also time the refiner of this git revision")
    p.add_argument("--repeats", type=int, default=1, help="alternating timed runs per refiner (best is kept)")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    n = args.frames + 1  # one warm-up frame
    scene = SyntheticScene(h, w, n, seed=4)
    t0 = time.perf_counter()
    layers = [scene.render(t) for t in range(n)]
    frames = torch.stack([x[0] for x in layers]).to(device)
    alpha = torch.stack([x[1] for x in layers])
    masks = coarse_mask(alpha).to(device)
    print(f"rendered {n} frames {w}x{h} in {time.perf_counter() - t0:.1f} s (not timed below)")

    refine_clip(frames[:1], masks[:1], device=device)  # warm-up
    old = None
    if args.base_rev:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _baseline import load_refine

        old = load_refine(args.base_rev)
        old.refine_clip(frames[:1], masks[:1], device=device)
    best, best_old = None, None
    for _ in range(max(1, args.repeats)):
        refined, wall, cpu = _timed(lambda: refine_clip(frames[1:], masks[1:], device=device), device)
        best = (wall, cpu) if best is None or wall < best[0] else best
        if old is not None:
            _, wall_o, cpu_o = _timed(lambda: old.refine_clip(frames[1:], masks[1:], device=device), device)
            best_old = (wall_o, cpu_o) if best_old is None or wall_o < best_old[0] else best_old
    _report("refine_clip", args.frames, *best)
    if old is not None:
        _report(f"refine_clip@{args.base_rev}", args.frames, *best_old)
        print(f"speed ratio new/old (best wall times): {best_old[0] / best[0]:.2f}x "
              f"(CPU time: {best_old[1] / best[1]:.2f}x)")

    estimate_foreground(frames[:1], refined[:1], device=device)
    _, wall, cpu = _timed(lambda: estimate_foreground(frames[1:], refined, device=device), device)
    _report("estimate_foreground", args.frames, wall, cpu)

    low = max(w, h) // 2
    small = F.interpolate(alpha[1:, None], scale_factor=low / max(w, h), mode="area")
    up = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    detail_refine(frames[:1], up[:1], resolution=low, device=device)
    detailed, wall, cpu = _timed(lambda: detail_refine(frames[1:], up, resolution=low, device=device), device)
    _report("detail_refine (1/2)", args.frames, wall, cpu)

    truth = alpha[1:]
    for name, a in (("coarse mask", masks[1:].cpu()), ("refined", refined),
                    ("alpha at 1/2, upsampled", up), ("  + detail_refine", detailed)):
        m = compute_all(a, truth, metrics=("MAD", "Grad"))
        print(f"{name:24s} MAD {m['MAD']:7.2f}  Grad {m['Grad']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
