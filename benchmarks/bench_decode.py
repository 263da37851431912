"""Temporal VAE decoder: diffusers' decode vs ``videomama.pipeline.temporal_decode`` on the same chunk.

SVD's temporal VAE at its real size (``SVD_VAE_CONFIG``, random weights: memory and time do
not depend on weight values) decodes one chunk of random latents both ways. Per size it
reports, device-independently:

* ``live MiB``: the peak bytes of live tensors created during the decode (a TorchDispatchMode
  counter, the one ``bench_matte.py --activation-peaks`` uses), and the same peak in units of
  one full-size 128-channel feature map per frame (``frames x pixels x 128 x element size``:
  the unit of ``DECODER_FACTOR`` in the memory model);
* ``RSS MiB``: the peak resident memory above the start of the decode, each decode in a fresh
  subprocess with ``MALLOC_MMAP_THRESHOLD_`` set so that large blocks are mmapped and freed
  memory really leaves the process;
* with ``--fp64``: each path's max |alpha - alpha of the exact decode| (the decode in float64
  from the same fp32 weights and latents, by ``--fp64-path``: float64 rounding is ~1e-16, so
  both paths give the same reference to far below the figures; the streamed one needs a
  fraction of the memory, diffusers' float64 decode of 8 frames at 512x256 exceeds 23 GB on
  the CPU). With random weights the decoder amplifies
  float32 rounding, so the two float32 paths differ by about as much as each differs from the
  exact result; this column says which one is closer;
* seconds (the best of ``--repeats`` runs, both paths interleaved in one process, so only the
  ratio means anything on a shared machine), and max |difference| of RGB and of alpha
  (mean over channels of clamp(x / 2 + 0.5, 0, 1)) between the two.

Commands::

    python benchmarks/bench_decode.py                               # 256x128 and 512x256, 8 frames, fp32
    python benchmarks/bench_decode.py --sizes 256x128 --dtype bf16 --repeats 1 --fp64
    python benchmarks/bench_decode.py --tiny --sizes 64x64 --no-rss  # tiny VAE, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_matte import LiveTensorBytes, MemoryMeter

from videomama.pipeline.temporal_decode import decode_chunk
from videomama.weights.checkpoints import SVD_VAE_CONFIG
from videomama.weights.configs import TINY_VAE_CONFIG, build_random_vae

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PATHS = ("diffusers", "streamed")
MMAP_THRESHOLD = 64 * 1024  # bytes: blocks this large come from (and go back to) mmap


def build(tiny: bool, dtype: torch.dtype) -> torch.nn.Module:
    return build_random_vae(TINY_VAE_CONFIG if tiny else SVD_VAE_CONFIG, seed=0, dtype=dtype)


def latents(frames: int, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    w, h = size
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(frames, 4, h // 8, w // 8, generator=gen) / 0.18215).to(dtype)


@torch.no_grad()
def decode(vae: torch.nn.Module, path: str, z: torch.Tensor) -> torch.Tensor:
    """(T, 4, h, w) -> (T, 3, 8h, 8w) by ``path``."""
    if path == "diffusers":
        return vae.decode(z, num_frames=z.shape[0]).sample
    return decode_chunk(vae.decoder, z)


def alpha_of(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb.float() / 2.0 + 0.5).clamp(0.0, 1.0).mean(dim=1)


def exact_alpha(args: argparse.Namespace, size: tuple[int, int]) -> torch.Tensor:
    """Alpha of the float64 decode, from the fp32 weights and latents every run starts from."""
    vae = build(args.tiny, torch.float32).double()
    return alpha_of(decode(vae, args.fp64_path, latents(args.frames, size, torch.float32).double()))


def live_peak(vae: torch.nn.Module, path: str, z: torch.Tensor) -> tuple[int, torch.Tensor]:
    counter = LiveTensorBytes()
    with counter:
        out = decode(vae, path, z)
    return counter.peak, out


def rss_child(args: argparse.Namespace) -> None:
    """In a fresh process: one decode, print its peak RSS above the start as JSON."""
    dtype = DTYPES[args.dtype]
    vae = build(args.tiny, dtype)
    decode(vae, args.child, latents(1, (64, 64), dtype))  # load kernels outside the measurement
    z = latents(args.frames, args.sizes[0], dtype)
    meter = MemoryMeter(torch.device("cpu"))
    meter.reset()
    start = meter.current()
    decode(vae, args.child, z)
    print(json.dumps({"rss_peak_above_start": meter.peak() - start}))


def rss_peak(args: argparse.Namespace, path: str, size: tuple[int, int]) -> int:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    cmd = [sys.executable, __file__, "--child", path, "--sizes", f"{size[0]}x{size[1]}", "--frames",
           str(args.frames), "--dtype", args.dtype, "--threads", str(args.threads)] + (["--tiny"] if args.tiny else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["rss_peak_above_start"])


def measure(args: argparse.Namespace, vae: torch.nn.Module, size: tuple[int, int]) -> dict[str, Any]:
    dtype = DTYPES[args.dtype]
    z = latents(args.frames, size, dtype)
    unit = args.frames * size[0] * size[1] * 128 * z.element_size()
    row: dict[str, Any] = {"size": f"{size[0]}x{size[1]}", "frames": args.frames, "dtype": args.dtype,
                           "fp64_path": args.fp64_path if args.fp64 else None}
    outs = {}
    for path in PATHS:
        peak, outs[path] = live_peak(vae, path, z)
        row[f"{path}_live_bytes"] = peak
        row[f"{path}_live_maps_per_frame"] = peak / unit
    row["live_ratio"] = row["streamed_live_bytes"] / row["diffusers_live_bytes"]
    row["max_abs_rgb_diff"] = float((outs["diffusers"].float() - outs["streamed"].float()).abs().max())
    row["max_abs_alpha_diff"] = float((alpha_of(outs["diffusers"]) - alpha_of(outs["streamed"])).abs().max())
    row["finite"] = bool(all(torch.isfinite(o).all() for o in outs.values()))
    if args.fp64:
        exact = exact_alpha(args, size)
        for path in PATHS:
            row[f"{path}_alpha_err_vs_fp64"] = float((alpha_of(outs[path]).double() - exact).abs().max())
    del outs
    best = {p: float("inf") for p in PATHS}
    for _ in range(args.repeats):
        for path in PATHS:
            t0 = time.perf_counter()
            decode(vae, path, z)
            best[path] = min(best[path], time.perf_counter() - t0)
    if args.repeats > 0:
        row.update({f"{p}_seconds": best[p] for p in PATHS})
        row["time_ratio"] = best["streamed"] / best["diffusers"]
    if not args.no_rss:
        for path in PATHS:
            row[f"{path}_rss_bytes"] = rss_peak(args, path, size)
        row["rss_ratio"] = row["streamed_rss_bytes"] / row["diffusers_rss_bytes"]
    return row


def table(rows: list[dict[str, Any]]) -> str:
    mib = 2**20
    head = ("| size | frames | dtype | live MiB diffusers | live MiB streamed | ratio | maps/frame diffusers | "
            "maps/frame streamed | RSS MiB diffusers | RSS MiB streamed | ratio | s diffusers | s streamed | "
            "time ratio | max abs alpha diff | max abs RGB diff | alpha err vs fp64 diffusers | alpha err vs fp64 streamed |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        rss = ((f"{r['diffusers_rss_bytes'] / mib:.0f} | {r['streamed_rss_bytes'] / mib:.0f} | {r['rss_ratio']:.3f}")
               if "rss_ratio" in r else "- | - | -")
        lines.append(
            f"| {r['size']} | {r['frames']} | {r['dtype']} | {r['diffusers_live_bytes'] / mib:.0f} | "
            f"{r['streamed_live_bytes'] / mib:.0f} | {r['live_ratio']:.3f} | {r['diffusers_live_maps_per_frame']:.2f} | "
            f"{r['streamed_live_maps_per_frame']:.2f} | {rss} | {_seconds(r)} | {r['max_abs_alpha_diff']:.2e} | "
            f"{r['max_abs_rgb_diff']:.2e} | {_err(r, 'diffusers')} | {_err(r, 'streamed')} |"
        )
    return "\n".join(lines)


def _seconds(row: dict[str, Any]) -> str:
    if "time_ratio" not in row:
        return "- | - | -"
    return f"{row['diffusers_seconds']:.2f} | {row['streamed_seconds']:.2f} | {row['time_ratio']:.2f}"


def _err(row: dict[str, Any], path: str) -> str:
    value = row.get(f"{path}_alpha_err_vs_fp64")
    return "-" if value is None else f"{value:.2e}"


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    if w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"{text}: width and height must be multiples of 8")
    return w, h


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=lambda s: [_size(v) for v in s.split(",")], default=[(256, 128), (512, 256)],
                    help="output sizes WxH, comma separated (default 256x128,512x256)")
    ap.add_argument("--frames", type=int, default=8, help="frames in the chunk (default 8, as trained)")
    ap.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    ap.add_argument("--tiny", action="store_true", help="the tiny test VAE instead of SVD's real size")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per path (best kept; default 2; 0: no timing)")
    ap.add_argument("--fp64", action="store_true", help="also compare both paths with the exact (float64) decode")
    ap.add_argument("--fp64-path", choices=PATHS, default="streamed", help="which path computes the float64 reference")
    ap.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    ap.add_argument("--child", choices=PATHS, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child is not None:
        rss_child(args)
        return 0
    vae = build(args.tiny, DTYPES[args.dtype])
    rows = [measure(args, vae, size) for size in args.sizes]
    print(f"# bench_decode: {'tiny' if args.tiny else 'SVD-XT real-size'} temporal VAE, random weights; torch "
          f"{torch.__version__}, {args.threads} threads; live = peak bytes of live tensors; RSS = peak above start "
          f"(subprocess, MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}); time = best of {args.repeats}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
