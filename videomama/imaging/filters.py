"""Image filters shared by compositing and refinement (private module).

All functions take (N, C, H, W) float tensors on any device and cost O(pixels), independent
of the window radius: box sums are differences of cumulative sums (float32; means subtract the
per-image mean first so the running sums stay small).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .resize import resize_area

__all__ = ["box_sum", "box_blur", "box_count", "erode", "dilate", "guided_coefficients", "guided_apply"]


def _box_sum_1d(y: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over the window [i - r, i + r] (clipped to the image) along ``dim`` (-1 or -2).

    With r + 1 zeros in front and r zeros behind, the cumulative sum c of the padded row
    gives S[i] = c[i + 2r + 1] - c[i]: one padded copy, one cumsum, one subtraction.
    """
    n = y.shape[dim]
    r = min(r, n - 1)
    if r <= 0:
        return y
    pad = (r + 1, r) if dim == -1 else (0, 0, r + 1, r)
    c = torch.cumsum(F.pad(y, pad), dim=dim)
    return c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)


def _window_counts(n: int, r: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    idx = torch.arange(n, device=device)
    return ((idx + r + 1).clamp(max=n) - (idx - r).clamp(min=0)).to(dtype)


def box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum over the (2r+1)^2 window clipped at the border; x (N, C, H, W).

    Exact for {0, 1} masks in float32 up to 16 megapixels (integer partial sums below 2^24).
    """
    if radius <= 0:
        return x
    return _box_sum_1d(_box_sum_1d(x, radius, -2), radius, -1)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window clipped at the border; x (N, C, H, W), any radius >= 0.

    The per-image mean is subtracted before summing, which keeps float32 running sums small
    (error ~1e-6 on 1080p frames, see tests/test_composite.py).
    """
    if radius <= 0:
        return x
    h, w = x.shape[-2:]
    mean = x.mean(dim=(-2, -1), keepdim=True)
    y = box_sum(x - mean, radius)
    counts = _window_counts(h, radius, x.device, x.dtype)[:, None] * _window_counts(w, radius, x.device, x.dtype)[None, :]
    return y / counts + mean


def box_count(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Number of nonzero pixels of a {0, 1} mask (N, 1, H, W) in each (2r+1)^2 window."""
    return box_sum(mask.float(), radius)


def erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square erosion of a {0, 1} mask (N, 1, H, W) by ``radius`` px (outside the image counts as set)."""
    if radius <= 0:
        return mask.float()
    h, w = mask.shape[-2:]
    full = _window_counts(h, radius, mask.device, torch.float32)[:, None] * _window_counts(
        w, radius, mask.device, torch.float32
    )[None, :]
    return (box_count(mask, radius) > full - 0.5).float()


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square dilation of a {0, 1} mask (N, 1, H, W) by ``radius`` px."""
    if radius <= 0:
        return mask.float()
    return (box_count(mask, radius) > 0.5).float()


def guided_coefficients(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients of the guided filter (He, Sun and Tang) with a colour guide, window-averaged.

    guide: (N, 3, H, W); src: (N, 1, H, W). In each (2r+1)^2 window the source is fitted as
    a * guide + b (ridge-regularised by ``eps``); the per-window fits are averaged at each
    pixel. Returns (mean_a (N, 3, H, W), mean_b (N, 1, H, W)); the filtered output is
    ``guided_apply(guide, mean_a, mean_b)`` - also with a guide of another (higher)
    resolution after resizing the coefficients, which is the fast guided filter.
    """
    I = guide.float()
    p = src.float()
    mI = box_blur(I, radius)  # (N, 3, H, W)
    mp = box_blur(p, radius)
    cov = box_blur(I * p, radius) - mI * mp  # (N, 3, H, W)
    pairs = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))
    prod = torch.stack([I[:, i] * I[:, j] for i, j in pairs], 1)
    mprod = box_blur(prod, radius)
    v = [mprod[:, k] - mI[:, i] * mI[:, j] for k, (i, j) in enumerate(pairs)]
    s00, s01, s02, s11, s12, s22 = v[0] + eps, v[1], v[2], v[3] + eps, v[4], v[5] + eps
    # Inverse of the symmetric 3x3 (Sigma + eps I) by cofactors.
    c00 = s11 * s22 - s12 * s12
    c01 = s02 * s12 - s01 * s22
    c02 = s01 * s12 - s02 * s11
    c11 = s00 * s22 - s02 * s02
    c12 = s01 * s02 - s00 * s12
    c22 = s00 * s11 - s01 * s01
    det = (s00 * c00 + s01 * c01 + s02 * c02).clamp_min(1e-12)
    cx, cy, cz = cov[:, 0], cov[:, 1], cov[:, 2]
    a = torch.stack(
        [(c00 * cx + c01 * cy + c02 * cz) / det, (c01 * cx + c11 * cy + c12 * cz) / det, (c02 * cx + c12 * cy + c22 * cz) / det],
        1,
    )
    b = mp - (a * mI).sum(1, keepdim=True)
    return box_blur(a, radius), box_blur(b, radius)


def guided_apply(guide: torch.Tensor, mean_a: torch.Tensor, mean_b: torch.Tensor) -> torch.Tensor:
    """Output of the guided filter, (N, 1, H, W); coefficients are resized to the guide if needed."""
    if mean_a.shape[-2:] != guide.shape[-2:]:
        mean_a = resize_area(mean_a, guide.shape[-2:])
        mean_b = resize_area(mean_b, guide.shape[-2:])
    return (mean_a * guide).sum(1, keepdim=True) + mean_b
