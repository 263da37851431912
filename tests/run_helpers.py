"""Shared by the runner and memory-plan tests: a small moving-disc clip, and the real model
made to fail on chosen decoder calls (real out-of-memory exception types, not mocks)."""

from __future__ import annotations

import torch

from videomama.pipeline.model import VideoMaMaModel


def disc_clip(n: int = 5, h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random frames (n, h, w, 3) and masks of a disc moving 2 px per frame."""
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(n, h, w, 3, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.stack([((xx - 20 - 2 * t) ** 2 + (yy - 24) ** 2 < 200).float() for t in range(n)])
    return frames, masks


class FailingModel(VideoMaMaModel):
    """The real model whose decoder raises ``error`` on the decoder calls numbered in ``fail_on`` (1-based)."""

    def __init__(self, unet, vae, fail_on=(1,), error: type[Exception] = torch.cuda.OutOfMemoryError,
                 message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"):
        super().__init__(unet, vae)
        self.fail_on, self.error, self.message, self.decode_calls = set(fail_on), error, message, 0

    def decode_alpha(self, latents, chunk):
        self.decode_calls += 1
        if self.decode_calls in self.fail_on:
            raise self.error(self.message)
        return super().decode_alpha(latents, chunk)
