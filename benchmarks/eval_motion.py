"""Score the weight-free refiner on moving clips made from real photographs (real textures, known alpha).

    python benchmarks/build_real_eval.py --data DATA --out SET     # once (see eval_refiner.py)
    PYTHONPATH=<pymatting> python benchmarks/eval_motion.py --set SET [--const NAME=VALUE ...]

No public video with ground-truth alpha could be found, so each photograph of the real set
is made into a clip: its foreground colour (pymatting's ``estimate_foreground_ml``, cached
under SET/cache/foreground/) and alpha slide over another photograph of the set (the next
key, scaled to cover the frame, panning slowly) by ``--speed`` x the long side per frame in a
direction fixed per image, with motion blur: each frame averages the subject over a shutter
of ``--shutter`` frame intervals (so a fast subject has soft edges over a real background,
which no photograph of the set has). Each frame satisfies the compositing equation with the
blurred alpha, which is the ground truth; coarse masks are the "downsample 8x" condition of
the blurred alpha. Per clip and in the mean: MAD and Grad (x1e3, as the metrics module),
dtSSD, for the mask and the refiner (temporal 0.5, the default), and MAD relative to the mask.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_refiner import load_image, set_refiner_constants

import videomama.imaging.refine as refine_module
from videomama.eval.metrics import compute_all
from videomama.eval.synthetic import coarse_mask

log = logging.getLogger("eval_motion")


def foreground(root: Path, key: str, image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The subject's straight colour (H, W, 3), estimated once and cached (pymatting)."""
    cache = root / "cache" / "foreground" / f"{key}.png"
    if cache.exists():
        return load_image(cache, gray=False)
    from pymatting import estimate_foreground_ml

    fg = estimate_foreground_ml(image.astype(np.float64), alpha.astype(np.float64)).clip(0, 1)
    quantised = (fg * 255).round().astype(np.uint8)  # what the cache holds: every run sees the same
    cache.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(quantised).save(cache)
    return quantised.astype(np.float32) / 255.0


def _cover(image: np.ndarray, h: int, w: int, margin: int) -> torch.Tensor:
    """``image`` scaled to cover (h, w + margin) and cropped, as (3, h, w + margin)."""
    t = torch.from_numpy(image).permute(2, 0, 1)[None]
    s = max(h / t.shape[-2], (w + margin) / t.shape[-1])
    size = (max(h, math.ceil(t.shape[-2] * s)), max(w + margin, math.ceil(t.shape[-1] * s)))
    t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return t[0, :, :h, : w + margin]


def _shift(x: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """(C, H, W) moved by (dy, dx) px, bilinear, zeros coming in from outside."""
    _, h, w = x.shape
    ys = (torch.arange(h, dtype=torch.float32) + 0.5 - dy) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5 - dx) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None]
    return torch.nn.functional.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def make_clip(fg: np.ndarray, alpha: np.ndarray, background: np.ndarray, frames: int, speed: float,
              shutter: float, angle: float, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (T, H, W, 3), alpha (T, H, W)) of the subject moving over the background."""
    h, w = alpha.shape
    v = speed * max(h, w)  # px per frame
    pan = 0.002 * max(h, w)  # background px per frame
    bg = _cover(background, h, w, math.ceil(pan * frames) + 2)
    a = torch.from_numpy(alpha)[None]
    premult = torch.from_numpy(fg).permute(2, 0, 1) * a
    layers = torch.cat([premult, a])
    subsamples = max(1, math.ceil(v * shutter) + 1)
    gen = torch.Generator().manual_seed(seed)
    out_frames, out_alpha = [], []
    for t in range(frames):
        acc = torch.zeros_like(layers)
        for s in range(subsamples):
            tt = t - (frames - 1) / 2 + shutter * ((s + 0.5) / subsamples - 0.5)
            acc += _shift(layers, v * tt * math.sin(angle), v * tt * math.cos(angle))
        acc /= subsamples
        x0 = pan * t
        i0 = int(x0)
        f = x0 - i0
        back = bg[:, :, i0 : i0 + w] * (1 - f) + bg[:, :, i0 + 1 : i0 + 1 + w] * f
        frame = acc[:3] + (1 - acc[3:]) * back
        if noise > 0:
            frame = frame + noise * torch.randn(frame.shape, generator=gen)
        out_frames.append(frame.clamp(0, 1).permute(1, 2, 0))
        out_alpha.append(acc[3].clamp(0, 1))
    return torch.stack(out_frames), torch.stack(out_alpha)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", required=True, help="folder written by build_real_eval.py")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--speed", type=float, default=0.01, help="subject motion per frame, fraction of the long side")
    p.add_argument("--shutter", type=float, default=0.5, help="open shutter, in frame intervals (0.5: 180 degrees)")
    p.add_argument("--noise", type=float, default=0.005, help="sensor noise added to every frame")
    p.add_argument("--only", default="", help="comma-separated substrings: only matching images")
    p.add_argument("--const", action="append", default=[], help="NAME=VALUE: set a refiner constant (tuning)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="write the per-clip figures here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("videomama").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_refiner_constants(args.const)
    root = Path(args.set)
    keys = sorted(k for part in json.loads((root / "split.json").read_text()).values() for k in part)
    chosen = [k for k in keys if not args.only or any(s in k for s in args.only.split(","))]
    rows = {}
    for key in chosen:
        n = keys.index(key)  # direction and noise per image, the same in filtered runs
        image = load_image(root / "image" / f"{key}.png", gray=False)
        truth = load_image(root / "alpha" / f"{key}.png", gray=True)
        fg = foreground(root, key, image, truth)
        background = load_image(root / "image" / f"{keys[(keys.index(key) + 1) % len(keys)]}.png", gray=False)
        angle = 2 * math.pi * ((n * 0.618034) % 1.0)
        frames, alpha = make_clip(fg, truth, background, args.frames, args.speed, args.shutter, angle, args.noise, n)
        masks = coarse_mask(alpha)
        pred = refine_module.refine_clip(frames, masks)
        row = {name: compute_all(x, alpha, metrics=("MAD", "Grad", "dtSSD")) for name, x in (("mask", masks), ("ours", pred))}
        rows[key] = row
        log.info("%s  mask %.2f / %.2f / %.3f   ours %.2f / %.2f / %.3f", key,
                 *(row["mask"][m] for m in ("MAD", "Grad", "dtSSD")), *(row["ours"][m] for m in ("MAD", "Grad", "dtSSD")))
    ratio = [r["ours"]["MAD"] / max(r["mask"]["MAD"], 1e-9) for r in rows.values()]
    print(f"\n{len(rows)} clips, speed {args.speed} x long side / frame, shutter {args.shutter}, noise {args.noise}\n")
    print("| method | MAD | Grad | dtSSD | MAD / mask | worst MAD / mask |")
    print("| --- | --- | --- | --- | --- | --- |")
    for m in ("mask", "ours"):
        mean = {k: float(np.mean([r[m][k] for r in rows.values()])) for k in ("MAD", "Grad", "dtSSD")}
        rel = mean["MAD"] / float(np.mean([r["mask"]["MAD"] for r in rows.values()]))
        worst = max(ratio) if m == "ours" else 1.0
        print(f"| {m} | {mean['MAD']:.2f} | {mean['Grad']:.2f} | {mean['dtSSD']:.3f} | {rel:.3f} | {worst:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
