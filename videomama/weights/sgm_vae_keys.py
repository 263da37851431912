"""Tensor names of SVD's temporal VAE: Stability's "SGM" layout <-> diffusers', one key at a time.

The facts behind each rule are listed in :mod:`.sgm_vae` (which converts whole state dicts
with these functions); ``tests/test_sgm_vae.py`` checks the rules against the real SGM key
list in ``tests/data/svd_vae_sgm_keys.json``, both ways.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

import torch

__all__ = [
    "ATTN_LINEAR_WEIGHT", "SGM_VAE_PREFIX", "SVD_VAE_LEVELS", "VaeKind", "classify_vae_keys", "diffusers_vae_key_to_sgm",
    "sgm_vae_key_to_diffusers", "strip_sgm_prefix",
]

SGM_VAE_PREFIX = "first_stage_model."
"""Prefix of the VAE tensors inside a single-file SGM checkpoint (strip it before converting)."""

SVD_VAE_LEVELS = 4
"""Resolution levels of SVD's VAE (block_out_channels 128, 256, 512, 512)."""

VaeKind = Literal["sgm_temporal", "sgm_image", "diffusers_temporal", "diffusers_image"]

# ----------------------------------------------------------------------------- leaf names

# Spatial (LDM) residual block: SGM name -> diffusers name.
_RESNET_LEAVES: dict[str, str] = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",  # 1x1 conv where the channel count changes
}
# Temporal half of a decoder video block: SGM (openaimodel ResBlock, 3D) -> diffusers.
_TEMPORAL_LEAVES: dict[str, str] = {
    "time_stack.in_layers.0": "temporal_res_block.norm1",
    "time_stack.in_layers.2": "temporal_res_block.conv1",
    "time_stack.out_layers.0": "temporal_res_block.norm2",
    "time_stack.out_layers.3": "temporal_res_block.conv2",
}
# Single-head attention of the middle blocks: SGM 1x1 convs -> diffusers linears.
_ATTN_LEAVES: dict[str, str] = {
    "norm": "group_norm",
    "q": "to_q",
    "k": "to_k",
    "v": "to_v",
    "proj_out": "to_out.0",
}
# diffusers names of the attention weights stored as (C, C) here and as (C, C, 1, 1) in SGM.
ATTN_LINEAR_WEIGHT = re.compile(r"\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$")

_INV_RESNET = {v: k for k, v in _RESNET_LEAVES.items()}
_INV_TEMPORAL = {v: k for k, v in _TEMPORAL_LEAVES.items()}
_INV_ATTN = {v: k for k, v in _ATTN_LEAVES.items()}


def _alt(names: Iterable[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


_P = r"(?P<p>weight|bias)"
_RES = f"(?P<leaf>{_alt(_RESNET_LEAVES)})"
_TMP = f"(?P<leaf>{_alt(_TEMPORAL_LEAVES)})"
_ATT = f"(?P<leaf>{_alt(_ATTN_LEAVES)})"
_DRES = f"(?P<leaf>{_alt(_INV_RESNET)})"
_DTMP = f"(?P<leaf>{_alt(_INV_TEMPORAL)})"
_DATT = f"(?P<leaf>{_alt(_INV_ATTN)})"

# SGM patterns, each with the kind of rename it needs.
_SGM_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?P<part>encoder|decoder)\.conv_in\.{_P}"), "same"),
    (re.compile(rf"(?P<part>encoder|decoder)\.norm_out\.{_P}"), "norm_out"),
    (re.compile(rf"(?P<part>encoder|decoder)\.conv_out\.{_P}"), "same"),
    (re.compile(rf"decoder\.conv_out\.time_mix_conv\.{_P}"), "time_conv_out"),
    (re.compile(rf"quant_conv\.{_P}"), "quant_conv"),
    (re.compile(rf"encoder\.down\.(?P<i>\d+)\.block\.(?P<j>\d+)\.{_RES}\.{_P}"), "enc_res"),
    (re.compile(rf"encoder\.down\.(?P<i>\d+)\.downsample\.conv\.{_P}"), "enc_down"),
    (re.compile(rf"encoder\.mid\.block_(?P<j>[12])\.{_RES}\.{_P}"), "enc_mid_res"),
    (re.compile(rf"(?P<part>encoder|decoder)\.mid\.attn_1\.{_ATT}\.{_P}"), "mid_attn"),
    (re.compile(rf"decoder\.mid\.block_(?P<j>[12])\.{_RES}\.{_P}"), "dec_mid_spatial"),
    (re.compile(rf"decoder\.mid\.block_(?P<j>[12])\.{_TMP}\.{_P}"), "dec_mid_temporal"),
    (re.compile(r"decoder\.mid\.block_(?P<j>[12])\.mix_factor"), "dec_mid_mix"),
    (re.compile(rf"decoder\.up\.(?P<i>\d+)\.block\.(?P<j>\d+)\.{_RES}\.{_P}"), "dec_up_spatial"),
    (re.compile(rf"decoder\.up\.(?P<i>\d+)\.block\.(?P<j>\d+)\.{_TMP}\.{_P}"), "dec_up_temporal"),
    (re.compile(r"decoder\.up\.(?P<i>\d+)\.block\.(?P<j>\d+)\.mix_factor"), "dec_up_mix"),
    (re.compile(rf"decoder\.up\.(?P<i>\d+)\.upsample\.conv\.{_P}"), "dec_upsample"),
]

_DIFFUSERS_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"(?P<part>encoder|decoder)\.conv_in\.{_P}"), "same"),
    (re.compile(rf"(?P<part>encoder|decoder)\.conv_norm_out\.{_P}"), "norm_out"),
    (re.compile(rf"(?P<part>encoder|decoder)\.conv_out\.{_P}"), "same"),
    (re.compile(rf"decoder\.time_conv_out\.{_P}"), "time_conv_out"),
    (re.compile(rf"quant_conv\.{_P}"), "quant_conv"),
    (re.compile(rf"encoder\.down_blocks\.(?P<i>\d+)\.resnets\.(?P<j>\d+)\.{_DRES}\.{_P}"), "enc_res"),
    (re.compile(rf"encoder\.down_blocks\.(?P<i>\d+)\.downsamplers\.0\.conv\.{_P}"), "enc_down"),
    (re.compile(rf"encoder\.mid_block\.resnets\.(?P<j>[01])\.{_DRES}\.{_P}"), "enc_mid_res"),
    (re.compile(rf"(?P<part>encoder|decoder)\.mid_block\.attentions\.0\.{_DATT}\.{_P}"), "mid_attn"),
    (re.compile(rf"decoder\.mid_block\.resnets\.(?P<j>[01])\.spatial_res_block\.{_DRES}\.{_P}"), "dec_mid_spatial"),
    (re.compile(rf"decoder\.mid_block\.resnets\.(?P<j>[01])\.{_DTMP}\.{_P}"), "dec_mid_temporal"),
    (re.compile(r"decoder\.mid_block\.resnets\.(?P<j>[01])\.time_mixer\.mix_factor"), "dec_mid_mix"),
    (
        re.compile(rf"decoder\.up_blocks\.(?P<i>\d+)\.resnets\.(?P<j>\d+)\.spatial_res_block\.{_DRES}\.{_P}"),
        "dec_up_spatial",
    ),
    (re.compile(rf"decoder\.up_blocks\.(?P<i>\d+)\.resnets\.(?P<j>\d+)\.{_DTMP}\.{_P}"), "dec_up_temporal"),
    (re.compile(r"decoder\.up_blocks\.(?P<i>\d+)\.resnets\.(?P<j>\d+)\.time_mixer\.mix_factor"), "dec_up_mix"),
    (re.compile(rf"decoder\.up_blocks\.(?P<i>\d+)\.upsamplers\.0\.conv\.{_P}"), "dec_upsample"),
]


def _match(rules: list[tuple[re.Pattern[str], str]], key: str) -> tuple[str, dict[str, str]] | None:
    for pattern, kind in rules:
        m = pattern.fullmatch(key)
        if m is not None:
            return kind, m.groupdict()
    return None


def _flip(index: str, num_levels: int, key: str) -> int:
    """Map a decoder level index between SGM (by resolution) and diffusers (by execution order)."""
    i = int(index)
    if not 0 <= i < num_levels:
        raise KeyError(f"VAE tensor {key!r}: decoder level {i} is outside 0..{num_levels - 1}")
    return num_levels - 1 - i


# ----------------------------------------------------------------------------- key functions


def sgm_vae_key_to_diffusers(key: str, num_levels: int = SVD_VAE_LEVELS) -> str:
    """Name in diffusers' ``AutoencoderKLTemporalDecoder`` of the SGM VAE tensor ``key``.

    ``key`` is given without the ``first_stage_model.`` prefix. ``num_levels`` is the number of
    resolution levels (4 for SVD); it is needed because SGM and diffusers number the decoder's
    up levels in opposite orders. Raises ``KeyError`` naming ``key`` when it is not a tensor of
    an SGM temporal VAE.
    """
    found = _match(_SGM_RULES, key)
    if found is None:
        hint = " (strip the 'first_stage_model.' prefix first)" if key.startswith(SGM_VAE_PREFIX) else ""
        raise KeyError(f"{key!r} is not a tensor name of an SGM temporal VAE{hint}")
    kind, g = found
    p = g.get("p")
    if kind == "same":
        return key
    if kind == "norm_out":
        return f"{g['part']}.conv_norm_out.{p}"
    if kind == "time_conv_out":
        return f"decoder.time_conv_out.{p}"
    if kind == "quant_conv":
        return f"quant_conv.{p}"
    if kind == "enc_res":
        return f"encoder.down_blocks.{g['i']}.resnets.{g['j']}.{_RESNET_LEAVES[g['leaf']]}.{p}"
    if kind == "enc_down":
        return f"encoder.down_blocks.{g['i']}.downsamplers.0.conv.{p}"
    if kind == "enc_mid_res":
        return f"encoder.mid_block.resnets.{int(g['j']) - 1}.{_RESNET_LEAVES[g['leaf']]}.{p}"
    if kind == "mid_attn":
        return f"{g['part']}.mid_block.attentions.0.{_ATTN_LEAVES[g['leaf']]}.{p}"
    if kind == "dec_mid_spatial":
        return f"decoder.mid_block.resnets.{int(g['j']) - 1}.spatial_res_block.{_RESNET_LEAVES[g['leaf']]}.{p}"
    if kind == "dec_mid_temporal":
        return f"decoder.mid_block.resnets.{int(g['j']) - 1}.{_TEMPORAL_LEAVES[g['leaf']]}.{p}"
    if kind == "dec_mid_mix":
        return f"decoder.mid_block.resnets.{int(g['j']) - 1}.time_mixer.mix_factor"
    up = _flip(g["i"], num_levels, key)  # only decoder up-level rules remain
    if kind == "dec_up_spatial":
        return f"decoder.up_blocks.{up}.resnets.{g['j']}.spatial_res_block.{_RESNET_LEAVES[g['leaf']]}.{p}"
    if kind == "dec_up_temporal":
        return f"decoder.up_blocks.{up}.resnets.{g['j']}.{_TEMPORAL_LEAVES[g['leaf']]}.{p}"
    if kind == "dec_up_mix":
        return f"decoder.up_blocks.{up}.resnets.{g['j']}.time_mixer.mix_factor"
    if kind == "dec_upsample":
        return f"decoder.up_blocks.{up}.upsamplers.0.conv.{p}"
    raise AssertionError(kind)  # pragma: no cover - every rule kind is handled above


def diffusers_vae_key_to_sgm(key: str, num_levels: int = SVD_VAE_LEVELS) -> str:
    """Inverse of :func:`sgm_vae_key_to_diffusers`: the SGM name (no prefix) of a diffusers
    ``AutoencoderKLTemporalDecoder`` tensor. Raises ``KeyError`` naming ``key`` when unknown.

    ``quant_conv.*`` maps to the name it would have in an SGM engine that has one; SVD's does
    not (see :func:`convert_diffusers_vae_state_dict_to_sgm` for how it is dropped or folded).
    """
    found = _match(_DIFFUSERS_RULES, key)
    if found is None:
        raise KeyError(f"{key!r} is not a tensor name of diffusers' AutoencoderKLTemporalDecoder")
    kind, g = found
    p = g.get("p")
    if kind == "same":
        return key
    if kind == "norm_out":
        return f"{g['part']}.norm_out.{p}"
    if kind == "time_conv_out":
        return f"decoder.conv_out.time_mix_conv.{p}"
    if kind == "quant_conv":
        return f"quant_conv.{p}"
    if kind == "enc_res":
        return f"encoder.down.{g['i']}.block.{g['j']}.{_INV_RESNET[g['leaf']]}.{p}"
    if kind == "enc_down":
        return f"encoder.down.{g['i']}.downsample.conv.{p}"
    if kind == "enc_mid_res":
        return f"encoder.mid.block_{int(g['j']) + 1}.{_INV_RESNET[g['leaf']]}.{p}"
    if kind == "mid_attn":
        return f"{g['part']}.mid.attn_1.{_INV_ATTN[g['leaf']]}.{p}"
    if kind == "dec_mid_spatial":
        return f"decoder.mid.block_{int(g['j']) + 1}.{_INV_RESNET[g['leaf']]}.{p}"
    if kind == "dec_mid_temporal":
        return f"decoder.mid.block_{int(g['j']) + 1}.{_INV_TEMPORAL[g['leaf']]}.{p}"
    if kind == "dec_mid_mix":
        return f"decoder.mid.block_{int(g['j']) + 1}.mix_factor"
    up = _flip(g["i"], num_levels, key)  # only decoder up-level rules remain
    if kind == "dec_up_spatial":
        return f"decoder.up.{up}.block.{g['j']}.{_INV_RESNET[g['leaf']]}.{p}"
    if kind == "dec_up_temporal":
        return f"decoder.up.{up}.block.{g['j']}.{_INV_TEMPORAL[g['leaf']]}.{p}"
    if kind == "dec_up_mix":
        return f"decoder.up.{up}.block.{g['j']}.mix_factor"
    if kind == "dec_upsample":
        return f"decoder.up.{up}.upsample.conv.{p}"
    raise AssertionError(kind)  # pragma: no cover


# ----------------------------------------------------------------------------- classifying


def classify_vae_keys(keys: Iterable[str]) -> VaeKind | None:
    """Which VAE layout the tensor names ``keys`` are, judged by the decoder's names.

    * ``"sgm_temporal"``: SGM names with the video decoder (SVD's ``first_stage_model``, prefix
      stripped);
    * ``"sgm_image"``: SGM/LDM names of an image VAE (SD 1.x/2.x/SDXL ``first_stage_model``);
    * ``"diffusers_temporal"``: diffusers ``AutoencoderKLTemporalDecoder``;
    * ``"diffusers_image"``: diffusers ``AutoencoderKL``;
    * ``None``: none of these (a UNet, names still carrying ``first_stage_model.``, a file with
      no decoder, ...).

    Names are taken literally: a prefix is not stripped here.
    """
    names = set(keys)
    if "decoder.conv_out.time_mix_conv.weight" in names or any(
        k.startswith(("decoder.mid.block_", "decoder.up.")) and (".time_stack." in k or k.endswith(".mix_factor"))
        for k in names
    ):
        return "sgm_temporal"
    if "decoder.time_conv_out.weight" in names or any(
        k.startswith("decoder.") and (".temporal_res_block." in k or ".spatial_res_block." in k) for k in names
    ):
        return "diffusers_temporal"
    if "decoder.mid.block_1.norm1.weight" in names and "decoder.conv_in.weight" in names:
        return "sgm_image"
    if "decoder.mid_block.resnets.0.norm1.weight" in names and "decoder.conv_in.weight" in names:
        return "diffusers_image"
    return None


def strip_sgm_prefix(tensors: Mapping[str, torch.Tensor], prefix: str = SGM_VAE_PREFIX) -> dict[str, torch.Tensor]:
    """The tensors of ``tensors`` whose names start with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
