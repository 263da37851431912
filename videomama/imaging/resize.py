"""The image resizes of the library, in one place: bilinear up, filtered down.

Every resize of frames, masks, alphas and backgrounds goes through this module. Enlarging is
plain bilinear interpolation. Shrinking filters first, so fine detail such as hair does not
alias, with one of two named filters:

- :func:`resize` (frames, masks and alphas of the model path, backgrounds): bilinear with
  ``antialias=True``, a triangle filter as wide as the scale. Very large shrink factors run
  in steps because the GPU kernel of antialiased interpolation fails beyond a support of
  roughly 94x.
- :func:`resize_area` (the weight-free refiner's working images and statistics): the mean of
  each target pixel's footprint (box filter), which keeps local colour means exact, what the
  refiner's colour model is built on and was tuned with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MAX_SHRINK_STEP", "resize", "resize_area", "resize_binary"]

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


def resize_area(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Resize ``(N, C, H, W)``: box-filtered (area mean) when shrinking both sides, else bilinear."""
    target = _size(size)
    if tuple(x.shape[-2:]) == target:
        return x
    if target[0] <= x.shape[-2] and target[1] <= x.shape[-1]:
        return F.interpolate(x, size=target, mode="area")
    return F.interpolate(x, size=target, mode="bilinear", align_corners=False)


def resize_binary(mask: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Resize binary ``(N, C, H, W)`` masks and binarise again at 0.5.

    The filtered edge crosses 0.5 where the area-weighted coverage is half, which is where
    the source edge was; the result is exactly 0 or 1.
    """
    if tuple(mask.shape[-2:]) == _size(size):
        return mask
    return (resize(mask.float(), size) > 0.5).float()
