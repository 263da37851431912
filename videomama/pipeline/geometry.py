"""Processing geometry: source size -> model size and back, by scaling and padding only.

The UNet halves the latent three times and the VAE works at /8, so the model needs sides
that are multiples of 64. We scale the frame so its long side is ``resolution`` (keeping the
aspect ratio), pad the short side up to the next multiple of 64 by repeating edge pixels
(never stretching), and crop the padding off the alpha before scaling it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..imaging.resize import resize, resize_binary

Region = tuple[int, int, int, int]
"""A box of the source frame in pixels: (top, left, bottom, right), bottom/right exclusive."""

MULTIPLE = 64


@dataclass(frozen=True)
class Geometry:
    """Sizes of one clip: source (h, w), scaled content (content_h, content_w), padded (pad_h, pad_w)."""

    h: int
    w: int
    content_h: int
    content_w: int
    pad_h: int
    pad_w: int

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.pad_h // 8, self.pad_w // 8


def fit_geometry(h: int, w: int, resolution: int) -> Geometry:
    """Scale (h, w) so the long side is ``resolution``, then pad each side up to /64."""
    scale = resolution / max(h, w)
    ch = max(1, round(h * scale))
    cw = max(1, round(w * scale))
    return Geometry(h, w, ch, cw, math.ceil(ch / MULTIPLE) * MULTIPLE, math.ceil(cw / MULTIPLE) * MULTIPLE)


def _pad(x: torch.Tensor, geo: Geometry) -> torch.Tensor:
    pad = (0, geo.pad_w - geo.content_w, 0, geo.pad_h - geo.content_h)
    if pad[1] == 0 and pad[3] == 0:
        return x
    return F.pad(x, pad, mode="replicate")


def frames_to_model(frames: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(N, H, W, 3) in [0,1] -> (N, 3, pad_h, pad_w) in [-1, 1] (the VAE's input range)."""
    x = frames.permute(0, 3, 1, 2).float()
    x = resize(x, (geo.content_h, geo.content_w)).clamp_(0.0, 1.0)
    return _pad(x, geo).mul_(2.0).sub_(1.0)


def masks_to_model(masks: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """Binary (N, h, w) masks -> (N, 3, pad_h, pad_w) in {-1, +1}, still binary after resizing.

    Resizing a binary mask blurs its edge; thresholding at 0.5 afterwards puts the edge where
    the area-weighted coverage is half, which is where the source edge was.
    """
    x = _pad(resize_binary(masks[:, None], (geo.content_h, geo.content_w)), geo)
    return (x * 2.0 - 1.0).expand(-1, 3, -1, -1)


def alpha_to_source(alpha: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(N, pad_h, pad_w) alpha at model size -> (N, h, w) float32 at the source size."""
    x = alpha[:, None, : geo.content_h, : geo.content_w].float()
    x = resize(x, (geo.h, geo.w))
    return x[:, 0].clamp_(0.0, 1.0)
