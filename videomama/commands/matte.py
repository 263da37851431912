"""``python -m videomama matte``: frames + masks -> alpha (16-bit PNG or EXR), optionally RGBA and a preview."""

from __future__ import annotations

import argparse
import logging

from .. import options as opts
from ..cli import ProgressBar
from ..io.images import TRANSFERS, require_oiio
from ..io.writers import FORMATS, check_output_dir
from ..memory.plans import PLANS
from ..options import MatteOptions
from ..shots import ShotFiles, ShotSettings, load_engine, matte_shot

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "matte",
        help="matte a clip: frames + coarse masks -> alpha",
        description=(
            "Turn frames and coarse per-frame masks into alpha mattes. With --unet and --vae it runs "
            "VideoMaMa; without them, the weight-free edge-aware refiner. Writes OUT/alpha at the source "
            "resolution (1 = subject): a numbered sequence keeps its names and frame numbers "
            "(shot.1001.exr -> OUT/alpha/shot.1001.png), other folders and videos give 00000.png ... "
            "Optionally OUT/rgba (the subject's colour with its alpha) and OUT/preview.mp4."
        ),
    )
    add_shot_arguments(p)
    p.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")
    p.set_defaults(run=run)


def add_shot_arguments(p: argparse.ArgumentParser) -> None:
    """The inputs and output of one shot, then :func:`add_matte_arguments`."""
    p.add_argument("--frames", required=True, help="folder of images (natural order) or a video file")
    p.add_argument("--masks", required=True, help="folder of mask images or a mask video (one mask, or one per frame)")
    p.add_argument("--out", required=True, help="output folder; alpha goes to OUT/alpha")
    p.add_argument("--start", type=int, help="first frame to matte, in the sequence's own frame numbers "
                                             "(videos and unnumbered folders: position from 0)")
    p.add_argument("--end", type=int, help="last frame to matte (inclusive), numbered like --start")
    add_matte_arguments(p)


def add_matte_arguments(p: argparse.ArgumentParser) -> None:
    """Everything of ``matte`` except the shot's paths (shared with ``batch``, where they are the defaults)."""
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
    p.add_argument("--crop", choices=opts.CROP_MODES, default=opts.DEFAULT_CROP,
                   help="auto: per window, process only the padded box around the subject's masks at "
                        "--resolution (more model pixels on a small subject; alpha 0 outside the box); off: whole "
                        "frames, as the official pipeline (default %(default)s)")
    p.add_argument("--memory", default="auto", choices=("auto", *PLANS),
                   help="memory plan: auto picks from free GPU memory; low_vram streams UNet blocks from host "
                        "memory (same result); the last two lower memory further but change the result")
    p.add_argument("--detail", action="store_true",
                   help="after VideoMaMa, transfer full-resolution edge detail from frames larger than --resolution")
    add_file_arguments(p)


def add_file_arguments(p: argparse.ArgumentParser) -> None:
    """How frames are read and outputs written (shared with ``batch``)."""
    p.add_argument("--input-transfer", choices=TRANSFERS, default="auto",
                   help="how frame values are encoded: auto (float files such as EXR are scene-linear and are "
                        "converted to sRGB for the model, others are display-referred), linear, or srgb (as is)")
    p.add_argument("--format", choices=FORMATS, default="png16",
                   help="alpha files: png16 (16-bit greyscale PNG) or exr (32-bit float, one channel 'A'; "
                        "needs OpenImageIO)")
    p.add_argument("--rgba", choices=("straight", "premultiplied"),
                   help="also write OUT/rgba: the subject's estimated colour (old background removed from "
                        "soft edges) with its alpha, straight or premultiplied (needs OpenImageIO)")
    p.add_argument("--preview", action="store_true", help="also write OUT/preview.mp4: the subject over a checkerboard")


def settings_from(args: argparse.Namespace) -> ShotSettings:
    """The shot settings given on the command line (shared with ``batch``)."""
    return ShotSettings(unet=args.unet, vae=args.vae, precision=args.precision, device=args.device,
                        memory=args.memory, detail=args.detail)


def options_from(args: argparse.Namespace) -> MatteOptions:
    """The matting options given on the command line (shared with ``batch``)."""
    return MatteOptions(resolution=args.resolution, window=args.window, overlap=args.overlap, seed=args.seed,
                        posterior=args.posterior, mask_threshold=args.mask_threshold, crop=args.crop)


def files_from(args: argparse.Namespace) -> ShotFiles:
    """How the shot's files are read and written, from the command line (shared with ``batch``)."""
    return ShotFiles(start=getattr(args, "start", None), end=getattr(args, "end", None),
                     input_transfer=args.input_transfer, format=args.format, rgba=args.rgba, preview=args.preview)


def run(args: argparse.Namespace) -> int:
    check_output_dir(args.out)  # before the weights load: a bad --out costs nothing
    settings = settings_from(args)
    options = options_from(args)
    files = files_from(args)
    if files.format == "exr" or files.rgba:
        require_oiio("--format exr" if files.format == "exr" else "--rgba")
    bar = ProgressBar("matte", "windows" if args.unet else "frames", enabled=True if args.progress else None)
    matte_shot(args.frames, args.masks, args.out, options, load_engine(settings), progress=bar, files=files)
    return 0
