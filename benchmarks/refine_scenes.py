"""Synthetic scenes that pin down behaviours of the weight-free refiner (used by tests and benchmarks).

* :func:`moving_disc` - a flat-coloured disc moving ``speed`` px per frame over a random
  colour texture (the scene in which a temporal filter that trusts blurred signed frame
  differences leaves ghost rings: the texture averages to the disc's colour);
* :func:`pole` - a vertical pole ``width`` px wide in front of a smooth background, with a mask
  ``mask_width`` px wide (a structure thinner than the uncertain band);
* :func:`ghost_pixels` / :func:`pole_figures` - the numbers the issue asks for.

These are measurement scenes, not the yardstick of quality (that is the real-photo set, see
``eval_refiner.py``).
"""

from __future__ import annotations

import torch

from videomama.imaging.filters import dilate


def _texture(h: int, w: int, cell: int, seed: int) -> torch.Tensor:
    """(h, w, 3) random colours, constant on cell x cell blocks, in [0.05, 0.95]."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(3, -(-h // cell), -(-w // cell), generator=g) * 0.9 + 0.05
    big = small.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w]
    return big.permute(1, 2, 0).contiguous()


def moving_disc(frames: int = 8, height: int = 540, width: int = 960, radius: float = 60.0, speed: float = 7.0,
                seed: int = 0, cell: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames (T, H, W, 3), alpha (T, H, W)): a disc moving right at ``speed`` px/frame over texture."""
    bg = _texture(height, width, cell, seed)
    colour = bg.reshape(-1, 3).mean(0)  # the texture's mean colour: blurred, the two look alike
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    out_f, out_a = [], []
    for t in range(frames):
        cx, cy = width * 0.3 + speed * t, height * 0.5
        dist = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        a = (radius + 0.5 - dist).clamp(0.0, 1.0)  # 1-px anti-aliased edge
        out_a.append(a)
        out_f.append(a[..., None] * colour + (1 - a[..., None]) * bg)
    return torch.stack(out_f), torch.stack(out_a)


def pole(height: int = 1080, width: int = 1920, width_px: int = 10,
         mask_px: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frame (H, W, 3), alpha (H, W), mask (H, W)): a dark pole on a bright smooth gradient."""
    y = torch.linspace(0, 1, height)[:, None, None]
    x = torch.linspace(0, 1, width)[None, :, None]
    bg = torch.cat([0.6 + 0.2 * x.expand(height, width, 1), 0.7 + 0.1 * y.expand(height, width, 1),
                    torch.full((height, width, 1), 0.8)], -1)
    c = width // 2
    alpha = torch.zeros(height, width)
    alpha[:, c - width_px // 2: c - width_px // 2 + width_px] = 1.0
    mask = torch.zeros(height, width)
    mask[:, c - mask_px // 2: c - mask_px // 2 + mask_px] = 1.0
    colour = torch.tensor([0.15, 0.12, 0.1])
    frame = alpha[..., None] * colour + (1 - alpha[..., None]) * bg
    return frame, alpha, mask


def pole_figures(alpha: torch.Tensor, truth: torch.Tensor, margin: int = 2) -> tuple[float, float]:
    """(lowest alpha on the pole, highest alpha beside it), ``margin`` px away from its two edges."""
    cols = truth.amax(0) > 0.5
    idx = cols.nonzero()[:, 0]
    lo, hi = int(idx.min()), int(idx.max())
    on = alpha[:, lo + margin: hi + 1 - margin]
    beside = torch.cat([alpha[:, : max(0, lo - margin)], alpha[:, hi + 1 + margin:]], 1)
    return float(on.min()), float(beside.max())


def ghost_pixels(alpha: torch.Tensor, truth: torch.Tensor, masks: torch.Tensor, band_px: int,
                 alone: torch.Tensor | None = None) -> dict[str, float]:
    """Trail figures for a clip (T, H, W): per frame after the first, summed over frames.

    far: pixels with alpha > 0.05 farther than ``band_px`` from the mask, as a fraction of the
    band's pixels (the issue's limit: 1 %); trail: pixels with alpha > 0.05 where the truth is
    0 and the frame refined on its own (``alone``) is below 0.05 - alpha left behind by time.
    """
    near = dilate(masks[:, None].float(), band_px)[:, 0] > 0
    band = near & (dilate((1 - masks.float())[:, None], band_px)[:, 0] > 0)
    far = ((alpha > 0.05) & ~near)[1:].sum().item()
    trail = 0
    if alone is not None:
        trail = ((alpha > 0.05) & (truth <= 0.0) & (alone <= 0.05))[1:].sum().item()
    band_count = max(1, int(band[1:].sum().item()))
    return {"far_fraction": far / band_count, "far_px": float(far), "trail_px": float(trail),
            "trail_px_per_frame": float(trail) / max(1, alpha.shape[0] - 1), "band_px_count": float(band_count)}


class LazyDiscClip:
    """A long moving-disc clip rendered on access (frame i costs one frame of memory).

    ``clip.frames[i]`` is (H, W, 3), ``clip.masks[i]`` the coarse mask (H, W); both are
    sequences of ``length`` items, so a streaming refiner never holds more than it asks for.
    """

    def __init__(self, length: int, height: int = 1080, width: int = 1920, speed: float = 7.0, seed: int = 0) -> None:
        self.length, self.height, self.width, self.speed = length, height, width, speed
        self.bg = _texture(height, width, 3, seed)
        self.colour = self.bg.reshape(-1, 3).mean(0)
        self.frames = _View(self, 0)
        self.masks = _View(self, 1)

    def render(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(self.height, dtype=torch.float32)[:, None]
        x = torch.arange(self.width, dtype=torch.float32)[None, :]
        cx, cy, r = self.width * 0.3 + self.speed * t, self.height * 0.5, self.height * 0.2
        a = (r + 0.5 - torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)).clamp(0.0, 1.0)
        frame = a[..., None] * self.colour + (1 - a[..., None]) * self.bg
        return frame, (a >= 0.5).float()


class _View:
    def __init__(self, clip: LazyDiscClip, part: int) -> None:
        self.clip, self.part = clip, part

    def __len__(self) -> int:
        return self.clip.length

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < self.clip.length:
            raise IndexError(i)
        return self.clip.render(i)[self.part]
