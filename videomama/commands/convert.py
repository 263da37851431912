"""``python -m videomama convert``: one self-describing fp16/bf16 safetensors file from a model.

The released UNet is a 6 GB fp32 diffusers folder; ComfyUI users keep single files. The file
written here has diffusers key names and the model config in its metadata, so the loader
needs no guessing, and it is written to a temporary name first so a failed run leaves nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="write a single-file fp16/bf16 UNet (or VAE) from a diffusers folder or checkpoint",
        description="Convert the released VideoMaMa UNet folder (or an SVD VAE) into one .safetensors file.",
    )
    p.add_argument("--unet", help="VideoMaMa UNet folder (or file) to convert")
    p.add_argument("--vae", help="SVD VAE to extract (svd_xt*.safetensors or a vae/ folder)")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp16", help="storage precision (default %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from ..weights.checkpoints import load_unet, load_vae

    if (args.unet is None) == (args.vae is None):
        raise InputError("give exactly one of --unet or --vae to convert.")
    out = Path(args.out).expanduser()
    if out.suffix != ".safetensors":
        raise InputError(f"--out '{out}' must end in .safetensors.")
    dtype = DTYPES[args.dtype]
    model = load_unet(args.unet, dtype) if args.unet else load_vae(args.vae, dtype)
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    metadata = {
        "config": json.dumps(config),
        "model": type(model).__name__,
        "format": "pt",
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    try:
        save_file(state, str(partial), metadata=metadata)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    size_gb = out.stat().st_size / 1e9
    print(f"wrote {out} ({type(model).__name__}, {args.dtype}, {size_gb:.2f} GB)")
    return 0
