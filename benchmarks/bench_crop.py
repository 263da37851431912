"""What crop='auto' does on a UHD frame: model pixels on the subject, the box pass's cost, memory.

    OMP_NUM_THREADS=2 python benchmarks/bench_crop.py [--size 3840x2160] [--frames 16]

For a subject covering 10 %, 25 % and 50 % of a 3840x2160 frame (a centred box), prints: the
processing size of the whole frame and of the crop box at ``--resolution`` (1024), the model
pixels per subject pixel (the crop's gain in resolution on the subject), the time per frame
of the box pass (reading the binarised masks and their boxes; the model's cost per window is
that of the processing size, which crop does not change: both are scaled to the same long
side) and the estimated device memory of both (``estimate_memory``, default plan, fp16).
No model runs: this is geometry and the box pass, timed on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.memory.estimate import estimate_memory
from videomama.memory.plans import DEFAULT
from videomama.pipeline.crop import subject_regions
from videomama.pipeline.geometry import fit_geometry
from videomama.pipeline.masks import MaskSequence
from videomama.pipeline.schedule import split_windows


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=_size, default=(3840, 2160), help="frame WxH (default UHD)")
    ap.add_argument("--frames", type=int, default=16, help="frames of the box pass (default one window, 16)")
    ap.add_argument("--resolution", type=int, default=1024)
    args = ap.parse_args()
    w, h = args.size
    whole = fit_geometry(h, w, args.resolution)
    print("| subject share of the frame | whole frame at | crop box | crop at | model px per subject px, off -> auto "
          "| gain | box pass ms/frame | est. memory off / auto GB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for share in (0.10, 0.25, 0.50):
        sh, sw = round(h * share ** 0.5), round(w * share ** 0.5)
        top, left = (h - sh) // 2, (w - sw) // 2
        masks = torch.zeros(args.frames, h, w)
        masks[:, top:top + sh, left:left + sw] = 1.0
        seq = MaskSequence(masks, args.frames, 0.5)
        start = time.perf_counter()
        (region,) = subject_regions(seq, split_windows(args.frames, args.frames, 0)[:1], (h, w))
        per_frame = (time.perf_counter() - start) / args.frames * 1e3
        off_density = (whole.content_h * whole.content_w) / (h * w)
        if region is None:
            box, geo = (h, w), whole
        else:
            box = (region[2] - region[0], region[3] - region[1])
            geo = fit_geometry(box[0], box[1], args.resolution)
        auto_density = (geo.content_h * geo.content_w) / (box[0] * box[1])
        mem_off = estimate_memory(DEFAULT, (whole.pad_h, whole.pad_w), 16).peak / 1e9
        mem_auto = estimate_memory(DEFAULT, (geo.pad_h, geo.pad_w), 16).peak / 1e9
        print(f"| {share:.0%} | {whole.content_w}x{whole.content_h} | "
              f"{'whole frame' if region is None else f'{box[1]}x{box[0]}'} | {geo.content_w}x{geo.content_h} | "
              f"{off_density:.3f} -> {auto_density:.3f} | {auto_density / off_density:.1f}x | {per_frame:.0f} | "
              f"{mem_off:.1f} / {mem_auto:.1f} |")


if __name__ == "__main__":
    main()
