"""The VideoMaMa model bundle and its single-step forward on one window of frames.

One window of T frames (docs/inference.md, "One window"):

    frames, masks in [-1, 1]  --VAE encoder-->  raw latents (NOT times the scaling factor)
    UNet([noise, frame latent, mask latent], t=1, zeros text, time ids [7, 127, 0])  -> latents
    latents / scaling  --temporal decoder, 8-frame chunks-->  RGB  -> alpha = mean(clamp(x/2+0.5))
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from .attention import use_chunked_attention
from .temporal_decode import decode_chunk
from .transfer import to_device

log = logging.getLogger(__name__)

TIMESTEP = 1  # the single step is taken at the integer timestep 1
ADDED_TIME_IDS = (7.0, 127.0, 0.0)  # fps, motion bucket id, noise augmentation, as the single-step run() passes them


class VideoMaMaModel(nn.Module):
    """UNet + temporal VAE. A plain ``nn.Module`` so hosts (ComfyUI's ModelPatcher) can move it.

    There is deliberately no ``device`` property: hosts assign ``model.device`` themselves.
    """

    # diffusers models with config-driven attributes (conv_in, config, encoder ...): typed as Any.
    unet: Any
    vae: Any

    def __init__(self, unet: Any, vae: Any):
        super().__init__()
        in_channels = unet.conv_in.weight.shape[1]
        if in_channels != 12:
            raise CheckpointError(
                f"the UNet has {in_channels} input channels; VideoMaMa's has 12 (noise, frame and mask latents)."
            )
        self.unet = unet
        self.vae = vae
        # Temporal attention's batch grows with pixels; chunked, it stays under CUDA's grid limit.
        use_chunked_attention(unet)

    @property
    def compute_device(self) -> torch.device:
        # Hosts that stream weights (ComfyUI's ModelPatcher in low-VRAM modes) set model.device
        # to where the computation runs, while some weights may still sit on the CPU.
        host_device = self.__dict__.get("device")
        return torch.device(host_device) if host_device is not None else self.unet.conv_in.weight.device

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.out_channels)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> raw latents (N, 4, H/8, W/8).

        ``eps`` None takes the posterior mean; otherwise ``mean + std * eps`` (a posterior
        sample with caller-chosen noise, so it can be keyed to the frame index).
        """
        vae_dtype = self.vae.encoder.conv_in.weight.dtype
        dist = self.vae.encode(pixels.to(self.compute_device, vae_dtype)).latent_dist
        if eps is None:
            return dist.mean
        return dist.mean + dist.std * to_device(eps, dist.mean.device, dist.mean.dtype)

    @torch.no_grad()
    def denoise(self, frame_latents: torch.Tensor, mask_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One UNet step on a window: three (T, 4, h, w) tensors -> predicted latents (T, 4, h, w)."""
        device, dtype = self.compute_device, self.compute_dtype
        sample = torch.cat([to_device(noise, device, dtype), frame_latents.to(dtype), mask_latents.to(dtype)], dim=1)
        cross_dim = self.unet.config.cross_attention_dim
        # The official pipeline computes a CLIP embedding and then zeroes it: zeros are the input.
        context = torch.zeros(1, 1, cross_dim, device=device, dtype=dtype)
        # Filled on the device: torch.tensor(..., device=cuda) would be a blocking host copy.
        time_ids = torch.empty(1, len(ADDED_TIME_IDS), device=device, dtype=dtype)
        for k, value in enumerate(ADDED_TIME_IDS):
            time_ids[0, k] = value
        timestep = torch.full((1,), TIMESTEP, device=device, dtype=torch.long)
        out = self.unet(sample[None], timestep, context, added_time_ids=time_ids, return_dict=False)[0]
        return out[0]

    @torch.no_grad()
    def decode_alpha(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        """Latents (T, 4, h, w) -> alpha (T, 8h, 8w) float32, decoding ``chunk`` frames at a time.

        The temporal decoder mixes the frames of a chunk, so the chunking is part of the model
        (8 in the official pipeline), not a memory knob. Each chunk goes through
        :func:`~videomama.pipeline.temporal_decode.decode_chunk`: the same computation as diffusers'
        ``vae.decode(part, num_frames=len(part))`` up to float rounding, with about a fifth of
        its activation memory (full-width feature maps exist for one frame at a time, except
        the one chunk a temporal layer needs).
        """
        vae_dtype = self.vae.decoder.conv_in.weight.dtype
        z = latents.to(self.compute_device, vae_dtype) / self.scaling_factor
        alphas = []
        for start in range(0, z.shape[0], chunk):
            part = z[start : start + chunk]
            rgb = decode_chunk(self.vae.decoder, part)
            alphas.append((rgb.float() / 2.0 + 0.5).clamp_(0.0, 1.0).mean(dim=1))
        return torch.cat(alphas, dim=0)
