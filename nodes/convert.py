"""ComfyUI data <-> library data. Pure functions, no host calls.

IMAGE: float32 (B, H, W, C) in [0, 1], C = 3 or 4; a video is a batch of frames.
MASK: float (B, H, W) (some nodes emit (H, W) or (B, 1, H, W)); this pack's masks use
1 = subject. Core's LoadImage / JoinImageWithAlpha use 1 - alpha.
"""

from __future__ import annotations

import torch

from ..videomama.errors import InputError


def image_rgb(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """(B, H, W, 3) float32 from an IMAGE (an alpha channel is dropped)."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name} is a {type(images).__name__}, not an IMAGE tensor.")
    x = images
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise InputError(f"{name} has shape {tuple(images.shape)}; expected an IMAGE batch (frames, height, width, 3).")
    if x.shape[0] == 0:
        raise InputError(f"{name} is empty: the batch has no frames.")
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, -1, 3)
    return x[..., :3].float()


def mask_batch(masks: torch.Tensor, name: str = "masks") -> torch.Tensor:
    """(B, H, W) float32 from a MASK given as (B, H, W), (H, W), (B, 1, H, W) or (B, H, W, 1)."""
    if not isinstance(masks, torch.Tensor):
        raise InputError(f"{name} is a {type(masks).__name__}, not a MASK tensor.")
    x = masks
    if x.ndim == 2:
        x = x[None]
    elif x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise InputError(f"{name} has shape {tuple(masks.shape)}; expected a MASK batch (frames, height, width).")
    if x.shape[0] == 0:
        raise InputError(f"{name} is empty: give one mask per frame or one mask for the whole clip.")
    return x.float()

