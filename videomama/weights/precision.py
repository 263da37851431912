"""Which dtype SVD's VAE runs in, given the precision asked for the model.

SVD's VAE config sets ``force_upcast``: its activations overflow in fp16 (the decoder's wide
feature maps reach values past fp16's 65,504), which diffusers' pipelines answer by running
the VAE in fp32 and ComfyUI by running SVD's VAE in bf16 or fp32 only. We follow the config:
an fp16 run keeps its UNet in fp16 (the official setting, and the UNet's inputs are latents)
and moves the VAE to bf16 where the GPU computes it natively (compute capability 8.0 and up),
else to fp32. The model casts between the two at the latent hand-over.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["native_bf16", "upcast_vae", "vae_dtype_for"]


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` computes bf16 in hardware (CUDA capability >= 8.0; emulated bf16 on
    older GPUs is slow, so it does not count). The CPU counts as no."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def vae_dtype_for(dtype: torch.dtype, device: torch.device | str, force_upcast: bool = True) -> torch.dtype:
    """The VAE's dtype for a run asked in ``dtype`` on ``device``: fp16 becomes bf16 (native
    bf16 only) or fp32 when the VAE's config asks for ``force_upcast``; anything else is kept."""
    if dtype != torch.float16 or not force_upcast:
        return dtype
    return torch.bfloat16 if native_bf16(device) else torch.float32


def upcast_vae(vae: Any, device: torch.device | str) -> Any:
    """``vae`` cast as :func:`vae_dtype_for` says for the device it will compute on (in place,
    returned for chaining); logs the change once."""
    dtype = vae.decoder.conv_in.weight.dtype
    target = vae_dtype_for(dtype, device, bool(getattr(vae.config, "force_upcast", False)))
    if target != dtype:
        log.info("SVD's VAE asks for force_upcast: it runs in %s instead of %s (the UNet stays in %s).",
                 str(target).removeprefix("torch."), str(dtype).removeprefix("torch."), str(dtype).removeprefix("torch."))
        vae.to(target)
    return vae
