"""Peak memory of the weight-free refiner against clip length (each run in a fresh subprocess).

    python benchmarks/bench_refine_memory.py                      # 1920x1080, 8 and 64 frames
    python benchmarks/bench_refine_memory.py --frames 8,64,256 --modes stream

Frames are rendered on access (``refine_scenes.LazyDiscClip``), so what grows with the clip is
what the refiner keeps. Modes:

* ``stream``: ``videomama.imaging.refine.iter_refine`` consumed frame by frame (each alpha dropped as
  soon as it is handed out, as a writer would) - the weight-free CLI/node path from now on;
* ``stacked``: what the CLI did before: every frame stacked into one tensor, then
  ``refine_clip`` of git revision ``--base-rev`` (default: main before this work).

Prints peak RSS (ru_maxrss of the child) and the RSS after the imports, in MiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(mode: str, frames: int, size: str, base_rev: str | None) -> dict:
    import torch
    from refine_scenes import LazyDiscClip

    torch.set_num_threads(2)
    w, h = (int(v) for v in size.split("x"))
    clip = LazyDiscClip(frames, h, w)
    at_start = _rss_mib()
    t0 = time.perf_counter()
    seen = 0
    if mode == "stream":
        from videomama.imaging.refine import iter_refine

        for _, alpha in iter_refine(clip.frames, clip.masks):
            seen += 1
            del alpha
    elif mode == "stacked":
        from _baseline import DEFAULT_REV, load_refine

        old = load_refine(base_rev or DEFAULT_REV)
        stack = torch.stack([clip.frames[i] for i in range(frames)])
        masks = torch.stack([clip.masks[i] for i in range(frames)])
        out = old.refine_clip(stack, masks)
        seen = out.shape[0]
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {"mode": mode, "frames": frames, "seen": seen, "seconds": time.perf_counter() - t0,
            "rss_after_imports_mib": at_start, "peak_rss_mib": _rss_mib()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", default="8,64")
    p.add_argument("--modes", default="stream,stacked")
    p.add_argument("--base-rev", default=None)
    p.add_argument("--child", nargs=2, metavar=("MODE", "FRAMES"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.size, args.base_rev)))
        return 0
    print("| mode | frames | peak RSS MiB | RSS after imports MiB | seconds |\n| --- | --- | --- | --- | --- |")
    for mode in args.modes.split(","):
        for n in (int(v) for v in args.frames.split(",")):
            cmd = [sys.executable, __file__, "--size", args.size, "--child", mode, str(n)]
            if args.base_rev:
                cmd += ["--base-rev", args.base_rev]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            print(f"| {mode} | {n} | {res['peak_rss_mib']:.0f} | {res['rss_after_imports_mib']:.0f} | {res['seconds']:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
