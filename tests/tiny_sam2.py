"""A tiny random-weight SAM2.1 for tests: the official tiny config, shrunk everywhere.

Same architecture (Hiera trunk, FPN neck, memory attention with RoPE, memory encoder, SAM
heads), just narrow and shallow at a 128 px input, so a frame takes milliseconds on a CPU.
``write_tiny_sam2(path)`` saves one with its config embedded, which is what a ComfyUI test
needs to drop into ``models/sam2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

IMAGE_SIZE = 128  # SAM2 needs a multiple of 16 (backbone stride) and of the Hiera windows
EMBED = 8  # Hiera stage-1 width (official tiny: 96); stages are 8, 16, 32, 64 wide
D_MODEL = 32  # neck / prompt / memory-attention width (official: 256)
MEM_DIM = 16  # memory features (official: 64)
OBJ_SCORE_BIAS = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"


def tiny_overrides(image_size: int = IMAGE_SIZE) -> dict[str, Any]:
    """Overrides of ``configs/sam2.1/sam2.1_hiera_t.yaml``'s ``model`` section."""
    feat = image_size // 16
    return {
        "image_size": image_size,
        "num_maskmem": 3,  # official 7; a small memory window keeps the pruning test short
        "max_obj_ptrs_in_encoder": 4,  # official 16 (default)
        "image_encoder": {
            "trunk": {
                "embed_dim": EMBED,
                "num_heads": 1,
                # 4 stages; the q-pool blocks (first of stages 2-4) may not be global-attention blocks
                "stages": [1, 1, 2, 1],
                "global_att_blocks": [3],
                "window_spec": [4, 4, 4, 4],
                "window_pos_embed_bkg_spatial_size": [4, 4],
            },
            "neck": {
                "d_model": D_MODEL,
                "backbone_channel_list": [EMBED * 8, EMBED * 4, EMBED * 2, EMBED],
                "position_encoding": {"num_pos_feats": D_MODEL},
            },
        },
        "memory_attention": {
            "d_model": D_MODEL,
            "num_layers": 1,
            "layer": {
                "d_model": D_MODEL,
                "dim_feedforward": 64,
                "self_attention": {"embedding_dim": D_MODEL, "feat_sizes": [feat, feat]},
                "cross_attention": {"embedding_dim": D_MODEL, "feat_sizes": [feat, feat], "kv_in_dim": MEM_DIM},
            },
        },
        "memory_encoder": {
            "out_dim": MEM_DIM,
            "in_dim": D_MODEL,
            "position_encoding": {"num_pos_feats": MEM_DIM},
            "mask_downsampler": {"embed_dim": D_MODEL},
            "fuser": {"num_layers": 1, "layer": {"dim": D_MODEL}},
        },
    }


def tiny_config(image_size: int = IMAGE_SIZE) -> Any:
    """The tiny model's config (an OmegaConf DictConfig of the ``model`` section)."""
    from omegaconf import OmegaConf

    from videomama.sam2.loading import sam2_model_config

    return OmegaConf.merge(sam2_model_config("2.1", "tiny"), OmegaConf.create(tiny_overrides(image_size)))


def tiny_state_dict(seed: int = 0, image_size: int = IMAGE_SIZE) -> dict[str, torch.Tensor]:
    """Random weights of the tiny model (deterministic for a seed)."""
    from videomama.sam2.loading import build_sam2_predictor

    torch.manual_seed(seed)
    state = build_sam2_predictor(tiny_config(image_size)).state_dict()
    # With random weights the object-score head says "no object" about half the time, and SAM2
    # then replaces the whole mask by a constant -1024: every frame would look alike. Bias it
    # towards "object present" so the masks are the (random, but input-dependent) decoder output.
    state[OBJ_SCORE_BIAS] = torch.full_like(state[OBJ_SCORE_BIAS], 10.0)
    return state


def write_tiny_sam2(path: str | Path, seed: int = 0, embed_config: bool = True) -> Path:
    """Save a tiny random SAM2.1 (``.safetensors`` or ``.pt`` by suffix), its config embedded."""
    from videomama.sam2.loading import save_sam2_checkpoint

    return save_sam2_checkpoint(tiny_state_dict(seed), path, config=tiny_config() if embed_config else None)
