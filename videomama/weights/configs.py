"""Model configs: the real SVD-XT/VideoMaMa sizes and tiny ones for tests and CPU demos.

``build_random_model`` makes a model with random weights: timing does not depend on weight
values, so benchmarks use it at real size, and tests save tiny ones in every on-disk layout
to drive the real loaders.
"""

from __future__ import annotations

import torch

from .checkpoints import SVD_VAE_CONFIG

# VideoMaMa = SVD-XT's UNet with conv_in widened from 8 to 12 channels (1,524,634,602 parameters).
VIDEOMAMA_UNET_CONFIG: dict = {
    "in_channels": 12,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
    "block_out_channels": [320, 640, 1280, 1280],
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 768,
    "layers_per_block": 2,
    "cross_attention_dim": 1024,
    "transformer_layers_per_block": 1,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
    "sample_size": 96,
}

# Same block structure, 64-wide everywhere (one 64-wide head, as SVD's head width), ~5 M parameters.
TINY_UNET_CONFIG: dict = {
    **VIDEOMAMA_UNET_CONFIG,
    "block_out_channels": [64, 64, 64, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 24,
    "num_attention_heads": [1, 1, 1, 1],
}

TINY_VAE_CONFIG: dict = {**SVD_VAE_CONFIG, "block_out_channels": [32, 32, 32, 32], "layers_per_block": 1}


def build_random_unet(config: dict = TINY_UNET_CONFIG, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A ``UNetSpatioTemporalConditionModel`` of ``config`` with seeded random weights."""
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(**config)
    _perturb_zero_inits(unet, seed)
    return _cast(unet, dtype)


def build_random_vae(config: dict = TINY_VAE_CONFIG, seed: int = 0, dtype: torch.dtype = torch.float32):
    """An ``AutoencoderKLTemporalDecoder`` of ``config`` with seeded random weights."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(seed + 1)
    vae = AutoencoderKLTemporalDecoder(**config)
    _perturb_zero_inits(vae, seed + 1)
    with torch.no_grad():
        # SVD's released VAE has no quant_conv (SGM layout); in diffusers it is the identity.
        channels = vae.quant_conv.weight.shape[0]
        vae.quant_conv.weight.copy_(torch.eye(channels)[:, :, None, None])
        vae.quant_conv.bias.zero_()
    return _cast(vae, dtype)


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    if dtype != torch.float32:
        module = module.to(dtype)
    return module.eval().requires_grad_(False)


def _perturb_zero_inits(module: torch.nn.Module, seed: int) -> None:
    """diffusers zero-initialises some layers (e.g. temporal mixers); give every tensor some
    random signal so tests see every path, including the temporal ones, affect the output."""
    gen = torch.Generator().manual_seed(seed + 17)
    with torch.no_grad():
        for p in module.parameters():
            if p.abs().max() == 0:
                p.add_(0.02 * torch.randn(p.shape, generator=gen))


def build_random_model(unet_config: dict = TINY_UNET_CONFIG, vae_config: dict = TINY_VAE_CONFIG, seed: int = 0,
                       dtype: torch.dtype = torch.float32):
    """A random-weight :class:`~videomama.pipeline.model.VideoMaMaModel`."""
    from ..pipeline.model import VideoMaMaModel

    return VideoMaMaModel(build_random_unet(unet_config, seed, dtype), build_random_vae(vae_config, seed, dtype))
