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


# ----------------------------------------------------------------------------- the rules

# One table, read in both directions: each row names the same tensor in SGM and in diffusers.
# Placeholders: {part} encoder|decoder; {i} an encoder level and {j} a block, the same on both
# sides; {u} a decoder up level (numbered by resolution in SGM, by execution order in
# diffusers, so it is flipped); {m} a middle block (block_1/2 in SGM, resnets.0/1 in
# diffusers); {res}, {tmp}, {att} leaf names translated by the tables above; {p} weight|bias.
_RULES: tuple[tuple[str, str], ...] = (
    ("{part}.conv_in.{p}", "{part}.conv_in.{p}"),
    ("{part}.norm_out.{p}", "{part}.conv_norm_out.{p}"),
    ("{part}.conv_out.{p}", "{part}.conv_out.{p}"),
    ("decoder.conv_out.time_mix_conv.{p}", "decoder.time_conv_out.{p}"),
    ("quant_conv.{p}", "quant_conv.{p}"),  # SVD's VAE has none; see sgm_vae for how it is handled
    ("encoder.down.{i}.block.{j}.{res}.{p}", "encoder.down_blocks.{i}.resnets.{j}.{res}.{p}"),
    ("encoder.down.{i}.downsample.conv.{p}", "encoder.down_blocks.{i}.downsamplers.0.conv.{p}"),
    ("encoder.mid.block_{m}.{res}.{p}", "encoder.mid_block.resnets.{m}.{res}.{p}"),
    ("{part}.mid.attn_1.{att}.{p}", "{part}.mid_block.attentions.0.{att}.{p}"),
    ("decoder.mid.block_{m}.{res}.{p}", "decoder.mid_block.resnets.{m}.spatial_res_block.{res}.{p}"),
    ("decoder.mid.block_{m}.{tmp}.{p}", "decoder.mid_block.resnets.{m}.{tmp}.{p}"),
    ("decoder.mid.block_{m}.mix_factor", "decoder.mid_block.resnets.{m}.time_mixer.mix_factor"),
    ("decoder.up.{u}.block.{j}.{res}.{p}", "decoder.up_blocks.{u}.resnets.{j}.spatial_res_block.{res}.{p}"),
    ("decoder.up.{u}.block.{j}.{tmp}.{p}", "decoder.up_blocks.{u}.resnets.{j}.{tmp}.{p}"),
    ("decoder.up.{u}.block.{j}.mix_factor", "decoder.up_blocks.{u}.resnets.{j}.time_mixer.mix_factor"),
    ("decoder.up.{u}.upsample.conv.{p}", "decoder.up_blocks.{u}.upsamplers.0.conv.{p}"),
)

_LEAVES = {"res": _RESNET_LEAVES, "tmp": _TEMPORAL_LEAVES, "att": _ATTN_LEAVES}
_FIELD = re.compile(r"\{(\w+)\}")


def _alt(names: Iterable[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


def _field_pattern(name: str, to_diffusers: bool) -> str:
    """What a placeholder matches on the side a name is read from."""
    if name in _LEAVES:
        table = _LEAVES[name]
        return _alt(table if to_diffusers else table.values())
    return {"part": "encoder|decoder", "p": "weight|bias", "m": "[12]" if to_diffusers else "[01]"}.get(name, r"\d+")


def _compile(template: str, to_diffusers: bool) -> re.Pattern[str]:
    parts, pos = [], 0
    for f in _FIELD.finditer(template):
        parts += [re.escape(template[pos:f.start()]), f"(?P<{f[1]}>{_field_pattern(f[1], to_diffusers)})"]
        pos = f.end()
    return re.compile("".join(parts) + re.escape(template[pos:]))


# (pattern read, template written) per direction.
_TO_DIFFUSERS = [(_compile(sgm, True), dif) for sgm, dif in _RULES]
_TO_SGM = [(_compile(dif, False), sgm) for sgm, dif in _RULES]


def _flip(index: str, num_levels: int, key: str) -> str:
    """Map a decoder level index between SGM (by resolution) and diffusers (by execution order)."""
    i = int(index)
    if not 0 <= i < num_levels:
        raise KeyError(f"VAE tensor {key!r}: decoder level {i} is outside 0..{num_levels - 1}")
    return str(num_levels - 1 - i)


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]], to_diffusers: bool, num_levels: int) -> str | None:
    for pattern, target in rules:
        m = pattern.fullmatch(key)
        if m is None:
            continue
        fields = dict(m.groupdict())
        for name, value in m.groupdict().items():
            if name in _LEAVES:
                table = _LEAVES[name] if to_diffusers else {v: k for k, v in _LEAVES[name].items()}
                fields[name] = table[value]
            elif name == "m":
                fields[name] = str(int(value) + (-1 if to_diffusers else 1))
            elif name == "u":
                fields[name] = _flip(value, num_levels, key)
        return target.format(**fields)
    return None


# ----------------------------------------------------------------------------- key functions


def sgm_vae_key_to_diffusers(key: str, num_levels: int = SVD_VAE_LEVELS) -> str:
    """Name in diffusers' ``AutoencoderKLTemporalDecoder`` of the SGM VAE tensor ``key``.

    ``key`` is given without the ``first_stage_model.`` prefix. ``num_levels`` is the number of
    resolution levels (4 for SVD); it is needed because SGM and diffusers number the decoder's
    up levels in opposite orders. Raises ``KeyError`` naming ``key`` when it is not a tensor of
    an SGM temporal VAE.
    """
    name = _rename(key, _TO_DIFFUSERS, True, num_levels)
    if name is None:
        hint = " (strip the 'first_stage_model.' prefix first)" if key.startswith(SGM_VAE_PREFIX) else ""
        raise KeyError(f"{key!r} is not a tensor name of an SGM temporal VAE{hint}")
    return name


def diffusers_vae_key_to_sgm(key: str, num_levels: int = SVD_VAE_LEVELS) -> str:
    """Inverse of :func:`sgm_vae_key_to_diffusers`: the SGM name (no prefix) of a diffusers
    ``AutoencoderKLTemporalDecoder`` tensor. Raises ``KeyError`` naming ``key`` when unknown.

    ``quant_conv.*`` maps to the name it would have in an SGM engine that has one; SVD's does
    not (see :func:`convert_diffusers_vae_state_dict_to_sgm` for how it is dropped or folded).
    """
    name = _rename(key, _TO_SGM, False, num_levels)
    if name is None:
        raise KeyError(f"{key!r} is not a tensor name of diffusers' AutoencoderKLTemporalDecoder")
    return name


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
