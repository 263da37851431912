"""``python -m videomama matte``: frames + masks -> 16-bit alpha PNGs."""

from __future__ import annotations

import argparse
import logging
import time

import torch

from .. import options as opts
from ..cli import ProgressBar
from ..errors import InputError
from ..options import MatteOptions

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "matte",
        help="matte a clip: frames + coarse masks -> alpha",
        description=(
            "Turn frames and coarse per-frame masks into alpha mattes. With --unet and --vae it runs "
            "VideoMaMa; without them, the weight-free edge-aware refiner. Writes OUT/alpha/00000.png ... "
            "(16-bit grayscale, source resolution, 1 = subject)."
        ),
    )
    p.add_argument("--frames", required=True, help="folder of images (natural order) or a video file")
    p.add_argument("--masks", required=True, help="folder of mask images or a mask video (one mask, or one per frame)")
    p.add_argument("--out", required=True, help="output folder; alpha goes to OUT/alpha")
    p.add_argument("--unet", help="VideoMaMa UNet: diffusers folder or single .safetensors")
    p.add_argument("--vae", help="SVD VAE: svd_xt*.safetensors, a diffusers vae/ folder, or a VAE file")
    p.add_argument("--resolution", type=int, default=opts.DEFAULT_RESOLUTION, help="processing long side (default %(default)s)")
    p.add_argument("--window", type=int, default=opts.DEFAULT_WINDOW, help="frames per UNet call (default %(default)s)")
    p.add_argument("--overlap", type=int, default=opts.DEFAULT_OVERLAP, help="frames shared by windows (default %(default)s)")
    p.add_argument("--seed", type=int, default=opts.DEFAULT_SEED, help="noise seed (default %(default)s)")
    p.add_argument("--posterior", choices=("sample", "mean"), default="sample", help="VAE posterior: sample (official) or mean")
    p.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="auto = fp16 on CUDA, fp32 on CPU")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--mask-threshold", type=float, default=0.5, help="binarise masks above this (default %(default)s)")
    p.add_argument("--memory", default="auto",
                   choices=("auto", "default", "low_vram", "low_vram_decode4", "low_vram_tiled"),
                   help="memory plan: auto picks from free GPU memory; low_vram streams UNet blocks from host "
                        "memory (same result); the last two lower memory further but change the result")
    p.add_argument("--detail", action="store_true",
                   help="after VideoMaMa, transfer full-resolution edge detail from frames larger than --resolution")
    p.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    p.set_defaults(run=run)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu.")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return PRECISIONS[name]


def run(args: argparse.Namespace) -> int:
    from ..io import open_frames, write_alpha_sequence

    if (args.unet is None) != (args.vae is None):
        raise InputError("give both --unet and --vae to run VideoMaMa, or neither for the weight-free refiner.")
    options = MatteOptions(
        resolution=args.resolution, window=args.window, overlap=args.overlap, seed=args.seed,
        posterior=args.posterior, mask_threshold=args.mask_threshold,
    )
    frames = open_frames(args.frames, "--frames")
    masks = open_frames(args.masks, "--masks")
    bar = ProgressBar("matte", "windows" if args.unet else "frames", enabled=True if args.progress else None)
    started = time.monotonic()
    if args.unet is None:
        alphas = _refine_without_weights(frames, masks, options, bar)
    else:
        from ..checkpoints import load_model
        from ..lowvram import choose_plan, iter_matte_planned
        from ..masks import as_tensor

        device = resolve_device(args.device)
        dtype = resolve_dtype(args.precision, device)
        first = as_tensor(frames[0], "--frames")
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 1 << 62
        plan = choose_plan(free, (int(first.shape[0]), int(first.shape[1])), options.window,
                           resolution=options.resolution, dtype=dtype, force=args.memory)
        log.info("memory plan: %s", plan.name)
        # A streaming plan keeps the weights in host memory and moves blocks in as they run.
        model = load_model(args.unet, args.vae, dtype=dtype, device="cpu" if plan.stream_unet else device)
        alphas = iter_matte_planned(model, frames, masks, options, plan, compute_device=device, progress=bar)
        if args.detail:
            alphas = _with_detail(frames, alphas, options)
    target = write_alpha_sequence(alphas, args.out)
    log.info("wrote %d alpha frames to %s in %.1f s", len(frames), target, time.monotonic() - started)
    return 0


def _refine_without_weights(frames, masks, options: MatteOptions, bar):
    """The weight-free path: edge-aware refinement of the coarse masks from the image."""
    try:
        from ..refine import refine_clip
    except ImportError as exc:  # pragma: no cover - refine ships with the package
        raise InputError("the weight-free refiner is not available in this install; pass --unet and --vae.") from exc
    from ..masks import MaskSequence, as_tensor, check_frame, check_sizes, frame_count, resize_mask

    count = frame_count(frames, "--frames")
    mask_seq = MaskSequence(masks, count, options.mask_threshold, "--masks")
    clip = torch.stack([check_frame(as_tensor(frames[i], "--frames"), i, "--frames") for i in range(count)])
    size = tuple(clip.shape[1:3])
    check_sizes(size, tuple(mask_seq[0].shape), "--masks")
    mask_clip = torch.stack([resize_mask(mask_seq[i], size) for i in range(count)])
    alpha = refine_clip(clip, mask_clip, progress=bar)
    return ((i, alpha[i]) for i in range(count))


def _with_detail(frames, alphas, options: MatteOptions):
    """Full-resolution detail pass per finished window's frames (frames are read once more)."""
    from ..refine import detail_refine

    for index, alpha in alphas:
        yield index, detail_refine([frames[index]], alpha[None], resolution=options.resolution)[0]
