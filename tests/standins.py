"""Stand-in window models whose alpha is a KNOWN smooth function of their input.

They implement the same four-method interface as ``VideoMaMaModel`` (``latent_channels``,
``compute_device``, ``encode``, ``denoise``, ``decode_alpha``), so the real clip scheduler,
geometry and blending code run unchanged around them; only the network is replaced, so the
tests can state exactly what the output must be.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PerFrameModel:
    """alpha(frame i) = sigmoid(4 * (mask_i - 0.5) + brightness_i + 0.1 * noise_i), no temporal mixing.

    Since each frame's alpha depends only on that frame's pixels and noise, the blended clip
    must equal the per-frame function whatever the window layout.
    """

    latent_channels = 4

    def __init__(self, noise_gain: float = 0.1, window_gain: float = 0.0):
        self.noise_gain = noise_gain
        self.window_gain = window_gain
        self.calls: list[int] = []

    @property
    def compute_device(self) -> torch.device:
        return torch.device("cpu")

    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        # Channel 0..2: mean of the 3 channels downsampled by 8; channel 3: constant.
        small = F.avg_pool2d(pixels.float(), 8)
        lat = torch.cat([small, torch.ones_like(small[:, :1])], dim=1)
        if eps is not None:
            lat = lat + 0.01 * eps
        return lat

    def denoise(self, frame_latents, mask_latents, noise):
        self.calls.append(frame_latents.shape[0])
        brightness = frame_latents[:, :3].mean(1, keepdim=True)  # [-1, 1]
        mask = mask_latents[:, :1]
        out = 4.0 * mask + brightness + self.noise_gain * noise[:, :1]
        if self.window_gain:
            # A term shared by the whole window, as temporal attention would give: makes windows disagree.
            out = out + self.window_gain * brightness.mean(dim=(0, 2, 3), keepdim=True)
        return out.expand(-1, 4, -1, -1)

    def decode_alpha(self, latents, chunk):
        return torch.sigmoid(F.interpolate(latents[:, :1].float(), scale_factor=8, mode="nearest"))[:, 0]


def smooth_clip(num_frames: int, h: int = 64, w: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames whose brightness ramps smoothly in time and a disc mask drifting slowly."""
    gen = torch.Generator().manual_seed(seed)
    texture = torch.rand(h, w, 3, generator=gen) * 0.2
    t = torch.arange(num_frames, dtype=torch.float32)[:, None, None, None]
    frames = (0.2 + 0.6 * t / max(num_frames - 1, 1) + texture[None]).clamp(0, 1)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cx = w * 0.3 + (w * 0.4) * t[:, 0, 0, 0] / max(num_frames - 1, 1)
    masks = (((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - h / 2) ** 2) < (h * 0.3) ** 2).float()
    return frames, masks
