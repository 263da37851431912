"""Attention that never launches a CUDA kernel over the grid limit.

The UNet's temporal attention runs one sequence per latent pixel, so its batch (sequences x
heads) reaches 65,536 at 2048x2048 and passes CUDA's 65,535 grid limit (flash and
memory-efficient SDPA then fail with "invalid configuration argument"). The sequences are
independent, so splitting the batch is exact: :class:`ChunkedAttnProcessor` runs diffusers'
own processor on slices of at most ``MAX_ATTENTION_BATCH`` sequences x heads and
concatenates. Installed by :class:`~videomama.pipeline.model.VideoMaMaModel`, so every path
(CLI, node, tests) gets it.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_processor import AttnProcessor2_0

MAX_ATTENTION_BATCH = 32768  # a power of two well under CUDA's 65,535 grid limit


class ChunkedAttnProcessor:
    """diffusers' ``AttnProcessor2_0`` on batch slices of <= ``max_batch`` sequences x heads."""

    def __init__(self, max_batch: int = MAX_ATTENTION_BATCH):
        self.max_batch = max_batch
        self._inner = AttnProcessor2_0()

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        rows = max(1, self.max_batch // attn.heads)  # SDPA's batch is sequences x heads
        batch = hidden_states.shape[0]
        if batch <= rows:
            return self._inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        parts = []
        for start in range(0, batch, rows):
            sl = slice(start, start + rows)
            context = encoder_hidden_states[sl] if encoder_hidden_states is not None else None
            mask = attention_mask[sl] if attention_mask is not None and attention_mask.shape[0] == batch else attention_mask
            step = temb[sl] if temb is not None and temb.shape[0] == batch else temb
            parts.append(self._inner(attn, hidden_states[sl], context, mask, step, *args, **kwargs))
        return torch.cat(parts, dim=0)


def use_chunked_attention(unet: Any) -> int:
    """Install :class:`ChunkedAttnProcessor` on every attention module whose batch grows with
    pixels (the temporal transformer blocks: one sequence per latent pixel); returns how many.

    Spatial attention's batch is the frame count, far below the limit, and keeps its processor.
    """
    installed = 0
    processor = ChunkedAttnProcessor()
    for name, module in unet.named_modules():
        if "temporal_transformer_blocks" in name and hasattr(module, "set_processor") and hasattr(module, "heads"):
            module.set_processor(processor)
            installed += 1
    return installed
