"""The one image resize of the library: bilinear, antialiased when shrinking.

Every resize of frames, masks, alphas and backgrounds goes through :func:`resize`, so the
whole pack has one filtering policy: enlarging is plain bilinear interpolation; shrinking
filters first (bilinear with ``antialias=True``, a triangle filter as wide as the scale),
so fine detail such as hair does not alias. Very large shrink factors run in steps because
the GPU kernel of antialiased interpolation fails beyond a support of roughly 94x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MAX_SHRINK_STEP", "resize", "resize_binary"]

MAX_SHRINK_STEP = 32  # largest shrink factor done in one antialiased call


def _size(size: tuple[int, ...] | torch.Size) -> tuple[int, int]:
    return int(size[0]), int(size[1])


def resize(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` to ``size = (height, width)`` (returns ``x`` itself when already that size)."""
    target = _size(size)
    if tuple(x.shape[-2:]) == target:
        return x
    h, w = int(x.shape[-2]), int(x.shape[-1])
    # Shrink in steps of at most MAX_SHRINK_STEP per axis (each step antialiased).
    while h > target[0] * MAX_SHRINK_STEP or w > target[1] * MAX_SHRINK_STEP:
        h = max(target[0], -(-h // MAX_SHRINK_STEP))
        w = max(target[1], -(-w // MAX_SHRINK_STEP))
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    shrinking = target[0] < h or target[1] < w
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=shrinking)


def resize_binary(mask: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Resize binary ``(N, C, H, W)`` masks and binarise again at 0.5.

    The filtered edge crosses 0.5 where the area-weighted coverage is half, which is where
    the source edge was; the result is exactly 0 or 1.
    """
    if tuple(mask.shape[-2:]) == _size(size):
        return mask
    return (resize(mask.float(), size) > 0.5).float()
