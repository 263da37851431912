"""Helpers of the node tests (tests/test_nodes*.py); their fixtures (``pack``, ``host``,
``models``) are in conftest.py.

Nodes run the way ComfyUI runs V3 nodes (a locked class clone, inference mode; see
tests/comfy_standin.py).
"""

from __future__ import annotations

import comfy_standin
import torch


def run(pack, node_id: str, **inputs) -> tuple:
    return comfy_standin.run_node(pack.registered[node_id], **inputs)


def clip(t=6, h=40, w=56, seed=0):
    """Frames with a bright disc on a textured background and the disc's mask."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.rand(t, h, w, 3, generator=gen) * 0.3
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.zeros(t, h, w)
    for i in range(t):
        disc = ((yy - h / 2) ** 2 + (xx - w / 3 - i) ** 2) < (h / 4) ** 2
        frames[i][disc] = torch.tensor([0.9, 0.8, 0.7])
        masks[i] = disc.float()
    return frames, masks


def load(pack, unet="videomama/VideoMaMa/unet", vae="checkpoints/svd_xt.safetensors", precision="fp32"):
    return run(pack, "LoadVideoMaMa", unet=unet, vae=vae, precision=precision)[0]


def run_matte(pack, frames, masks, model=None, **kw):
    args = dict(resolution=64, window=4, overlap=1, seed=42, mask_threshold=0.5, posterior="mean")
    args.update(kw)
    if model is not None:
        args["model"] = model
    return run(pack, "MaskToMatte", images=frames, masks=masks, **args)


def composite(pack, **kw):
    args = dict(invert_alpha=False, background="color", color="#00FF00", fit="cover",
                estimate_foreground=False, rgba_mode="straight")
    args.update(kw)
    return run(pack, "AlphaComposite", **args)
