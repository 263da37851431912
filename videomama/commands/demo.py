"""``python -m videomama demo``: the whole job on a synthetic clip with a known alpha, no download.

Renders a short clip (a textured subject with hair-like strands, soft edges and motion blur
over a textured background), makes the coarse mask our measurements use (the true alpha
thresholded at 0.5, shrunk 8x and grown back), mattes it with the weight-free refiner,
estimates the subject's own colour and composites it on a new background, writes everything
as PNGs and prints the metrics of the coarse mask and of the refined matte against the truth.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..eval.folders import format_table
from ..eval.metrics import compute_all
from ..eval.synthetic import coarse_mask, make_clip
from ..imaging.composite import composite, estimate_foreground
from ..imaging.refine import refine_clip

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 12
DEFAULT_SIZE = (640, 360)  # width, height
NEW_BACKGROUND = ((0.95, 0.75, 0.35), (0.35, 0.10, 0.30))  # warm gradient, top to bottom


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``demo`` command."""
    p = sub.add_parser(
        "demo",
        help="matte a synthetic clip with a known alpha (no weights needed) and print its metrics",
        description=(
            "Make a short synthetic clip with a known alpha, matte it from a coarse mask with the weight-free "
            "refiner, composite it on a new background with foreground colour estimation, and write "
            "OUT/frames, OUT/masks, OUT/alpha (16-bit), OUT/gt_alpha (16-bit) and OUT/composite as PNGs. "
            "Prints MAD/MSE/Grad/Conn/dtSSD of the coarse mask and of the refined matte."
        ),
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="clip length (default %(default)s)")
    p.add_argument("--size", default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}", help="WxH (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default %(default)s)")
    p.set_defaults(run=run)


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); InputError naming --size otherwise."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--size {text!r} is not WxH; write it like 640x360.") from None
    if not (32 <= w <= 8192 and 32 <= h <= 8192):
        raise InputError(f"--size {text!r} is out of range; give width and height between 32 and 8192.")
    return w, h


def _gradient_background(height: int, width: int) -> torch.Tensor:
    top = torch.tensor(NEW_BACKGROUND[0])
    bottom = torch.tensor(NEW_BACKGROUND[1])
    t = torch.linspace(0, 1, height)[:, None, None]
    return (top * (1 - t) + bottom * t).expand(height, width, 3)[None]  # (1, H, W, 3)


def _write_rgb(path: Path, image: torch.Tensor) -> None:
    from PIL import Image

    arr = np.clip(np.rint(image.numpy() * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(arr, mode="RGB").save(path)


def _write_mask8(path: Path, mask: torch.Tensor) -> None:
    from PIL import Image

    arr = np.clip(np.rint(mask.numpy() * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(arr, mode="L").save(path)


def _write_alpha16(path: Path, alpha: torch.Tensor) -> None:
    from ..io.writers import write_alpha_png16

    write_alpha_png16(path, alpha)


def run(args: argparse.Namespace) -> int:
    """Render, matte, composite, write and print the metrics table."""
    width, height = parse_size(str(args.size))
    num_frames = int(args.frames)
    if not 1 <= num_frames <= 1000:
        raise InputError(f"--frames {num_frames} must be between 1 and 1000.")
    out = Path(args.out).expanduser()
    started = time.monotonic()

    clip = make_clip(num_frames, height, width, seed=int(getattr(args, "seed", 0)))
    masks = coarse_mask(clip.alpha)
    alpha = refine_clip(clip.frames, masks)
    fg = estimate_foreground(clip.frames, alpha)
    comp = composite(fg, alpha, _gradient_background(height, width))
    log.info("demo: rendered and matted %d frames %dx%d in %.1f s", num_frames, width, height, time.monotonic() - started)

    folders = {name: out / name for name in ("frames", "masks", "alpha", "gt_alpha", "composite")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for t in range(num_frames):
        name = f"{t:05d}.png"
        _write_rgb(folders["frames"] / name, clip.frames[t])
        _write_mask8(folders["masks"] / name, masks[t])
        _write_alpha16(folders["alpha"] / name, alpha[t])
        _write_alpha16(folders["gt_alpha"] / name, clip.alpha[t])
        _write_rgb(folders["composite"] / name, comp[t])

    table = {
        "coarse mask": compute_all(masks, clip.alpha),
        "refined (weight-free)": compute_all(alpha, clip.alpha),
    }
    print(f"synthetic clip: {num_frames} frames, {width}x{height}; metrics against the known alpha (whole frame)")
    print(format_table(table, row_header="matte"))
    print(f"wrote {', '.join(str(f) for f in folders.values())}")
    log.info("demo finished in %.1f s", time.monotonic() - started)
    return 0
