"""Running a model under a memory plan: VAE-encoder batches, decoder chunks and tiles, UNet streaming.

:class:`PlannedModel` wraps a :class:`~videomama.pipeline.matte.WindowModel` so the clip
scheduler runs it under a :class:`~.plans.MemoryPlan`; :func:`use_plan` also installs UNet
block streaming for the duration of a run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..pipeline.schedule import ramp
from .plans import MemoryPlan
from .streaming import disable_block_streaming, enable_block_streaming

__all__ = ["PlannedModel", "decode_alpha_tiled", "use_plan"]


def _tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, n - tile, stride)) + [n - tile]
    return sorted(set(starts))


def decode_alpha_tiled(model: Any, latents: torch.Tensor, chunk: int, tile: int, overlap: int = 8) -> torch.Tensor:
    """``model.decode_alpha`` on overlapping latent tiles of at most ``tile`` x ``tile``, cross-faded.

    Bounds the decoder's memory by the tile instead of the frame. The decoder's receptive
    field crosses tile borders, so the alpha differs from the untiled decode near seams;
    callers must say so (see :class:`Plan`).
    """
    n, _, h, w = latents.shape
    if h <= tile and w <= tile:
        return model.decode_alpha(latents, chunk)
    overlap = min(overlap, tile // 2)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    out: torch.Tensor | None = None
    total: torch.Tensor | None = None
    for y in ys:
        th = min(tile, h - y)
        for x in xs:
            tw = min(tile, w - x)
            part = model.decode_alpha(latents[:, :, y:y + th, x:x + tw], chunk).float()
            if out is None or total is None:
                out = torch.zeros(n, 8 * h, 8 * w, device=part.device)
                total = torch.zeros(8 * h, 8 * w, device=part.device)
            lead_y = 8 * overlap if y > 0 else 0
            trail_y = 8 * overlap if y + th < h else 0
            lead_x = 8 * overlap if x > 0 else 0
            trail_x = 8 * overlap if x + tw < w else 0
            weight = (ramp(8 * th, lead_y, trail_y)[:, None] * ramp(8 * tw, lead_x, trail_x)[None]).to(part.device)
            out[:, 8 * y:8 * (y + th), 8 * x:8 * (x + tw)] += part * weight
            total[8 * y:8 * (y + th), 8 * x:8 * (x + tw)] += weight
    assert out is not None and total is not None
    return out / total


class PlannedModel:
    """A :class:`~videomama.pipeline.matte.WindowModel` that runs ``model`` under ``plan``'s batching, chunking and tiling.

    Pass it to :func:`videomama.pipeline.matte.iter_matte` / ``matte_clip`` in place of the model.
    UNet streaming is installed separately (:func:`use_plan` does both).
    """

    def __init__(self, model: Any, plan: MemoryPlan):
        self.model = model
        self.plan = plan
        self.latent_channels = model.latent_channels

    @property
    def compute_device(self) -> torch.device:
        return self.model.compute_device

    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        step = self.plan.encode_batch
        if step is None or pixels.shape[0] <= step:
            return self.model.encode(pixels, eps)
        parts = [self.model.encode(pixels[s:s + step], None if eps is None else eps[s:s + step])
                 for s in range(0, pixels.shape[0], step)]
        return torch.cat(parts)

    def denoise(self, frame_latents: torch.Tensor, mask_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.model.denoise(frame_latents, mask_latents, noise)

    def decode_alpha(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        if self.plan.decode_chunk is not None:
            chunk = min(chunk, self.plan.decode_chunk)
        if self.plan.decode_tile is not None:
            return decode_alpha_tiled(self.model, latents, chunk, self.plan.decode_tile, self.plan.tile_overlap)
        return self.model.decode_alpha(latents, chunk)


@contextlib.contextmanager
def use_plan(model: Any, plan: MemoryPlan, compute_device: torch.device | str | None = None,
             offload_device: torch.device | str = "cpu", *, restore: bool = True) -> Iterator[PlannedModel]:
    """Apply ``plan`` to ``model`` for the duration of the block and yield the model to run.

    With ``plan.stream_unet`` the UNet's blocks live on ``offload_device`` during the block;
    afterwards every tensor is back where it was (``restore``; load the model to the CPU to
    keep it off the GPU between runs). Otherwise nothing is moved.
    """
    if plan.stream_unet:
        device = torch.device(compute_device) if compute_device is not None else model.compute_device
        enable_block_streaming(model, device, offload_device, prefetch=plan.prefetch)
    try:
        yield PlannedModel(model, plan)
    finally:
        if plan.stream_unet:
            disable_block_streaming(model, restore=restore)
