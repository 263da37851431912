"""Frames per second of SAM2 tracking (videomama.sam2.loading) on 1024-wide frames.

Builds a random-weight model from the real sam2 config (official architecture, so the
compute is that of the released checkpoint; only the numbers in the masks are meaningless),
saves it as .safetensors, loads it through ``load_sam2`` and tracks one clicked object through
a synthetic clip. Nothing is downloaded.

    python benchmarks/bench_track.py                                 # SAM2.1 tiny, CPU, 1024x576, 8 frames
    python benchmarks/bench_track.py --size large --device cuda --frames 64 --dtype bfloat16

Reports the whole ``track`` call (prompt + both propagation passes) and the steady-state
rate (frames after the first), with the torch thread count and device.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.sam2 import configs, loading, tracking
from videomama.sam2 import prompts as sam2_prompts

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default="2.1", choices=["2", "2.1"])
    ap.add_argument("--size", default="tiny", choices=["tiny", "small", "base_plus", "large"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="compute dtype on CUDA (default: bf16 if supported)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=576)
    ap.add_argument("--prompt-frame", type=int, default=None, help="default: the middle frame (both directions run)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--output", default="soft", choices=["binary", "soft"])
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = configs.build_sam2_predictor(configs.sam2_model_config(args.version, args.size))
    with tempfile.TemporaryDirectory() as tmp:
        path = loading.save_sam2_checkpoint(model, Path(tmp) / f"sam{args.version}_{args.size}_random.safetensors")
        del model
        t1 = time.perf_counter()
        tracker = loading.load_sam2(path, args.device, DTYPES.get(args.dtype))
        predictor = tracker.predictor
        load_s = time.perf_counter() - t1
    build_s = t1 - t0

    g = torch.Generator().manual_seed(0)
    frames = torch.rand(1, args.height, args.width, 3, generator=g).expand(args.frames, -1, -1, -1).contiguous()
    frames += 0.02 * torch.rand(frames.shape, generator=g)
    frames.clamp_(0, 1)
    k = args.frames // 2 if args.prompt_frame is None else args.prompt_frame
    prompts = sam2_prompts.parse_prompts(
        f'[{{"frame": {k}, "points": [[{args.width / 2}, {args.height / 2}]]}}]', args.frames, args.height, args.width
    )

    stamps: list[float] = []
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    masks = tracking.track(tracker, frames, prompts, output=args.output, progress=progress)
    total_s = time.perf_counter() - start
    assert masks.shape == (args.frames, args.height, args.width)
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")

    info = tracker.info
    compute = str(loading.compute_dtype(predictor.device, tracker.dtype)).replace("torch.", "")
    print(f"model       : {info.name} ({info.config_source}), image size {predictor.image_size}, random weights")
    print(f"device      : {predictor.device} ({torch.cuda.get_device_name() if predictor.device.type == 'cuda' else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, compute {compute}")
    print(f"clip        : {args.frames} frames {args.width}x{args.height}, click on frame {k}, output {args.output}")
    print(f"build/load  : {build_s:.1f} s / {load_s:.1f} s")
    print(f"track       : {total_s:.2f} s  ->  {args.frames / total_s:.2f} frames/s overall, {steady:.2f} frames/s steady state")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
