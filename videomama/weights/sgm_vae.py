"""Key mapping between Stability's "SGM" layout of SVD's temporal VAE and diffusers'.

Single-file Stable Video Diffusion checkpoints (``svd_xt.safetensors``,
``svd_xt_1_1.safetensors``) keep the VAE under ``first_stage_model.*`` with the names of
Stability's generative-models code (an ``AutoencodingEngine`` made of the LDM ``Encoder`` and
the temporal ``VideoDecoder``). diffusers runs the same network as
``AutoencoderKLTemporalDecoder`` under other names. This module renames (and where needed
reshapes) tensors between the two layouts, both ways, and checks that every tensor is used
exactly once.

Facts the mapping rests on (checked by ``tests/test_sgm_vae.py`` against the real key list in
``tests/data/svd_vae_sgm_keys.json``, and numerically against an independent SGM
implementation by ``tests/test_sgm_vae_comfyui.py``):

* SGM's SVD VAE has 372 tensors (97,742,775 parameters). diffusers' has 374: the same 372
  plus ``quant_conv`` (a 1x1 convolution 8 -> 8 after the encoder). SVD's
  ``AutoencodingEngine`` has no ``quant_conv`` and no ``post_quant_conv``: the encoder output
  goes straight to the Gaussian posterior. The SGM -> diffusers conversion therefore adds an
  identity ``quant_conv`` (weight = eye, bias = 0), which makes the two networks compute the
  same function.
* There is no ``post_quant_conv`` in either temporal VAE. No SGM tensor of SVD's VAE is unused,
  so there is no list of ignorable keys: anything unexpected is an error.
* The attention blocks (one in the encoder's middle, one in the decoder's) hold q/k/v/proj_out
  as 1x1 convolutions, shape ``(C, C, 1, 1)``; diffusers holds ``to_q/to_k/to_v/to_out.0`` as
  linear layers, shape ``(C, C)``. That is the only reshape.
* SGM numbers the decoder's up levels by resolution (``up.0`` is the full-resolution level,
  run last); diffusers numbers them in execution order (``up_blocks.0`` runs first). So
  ``decoder.up.{i}`` is ``decoder.up_blocks.{L-1-i}`` with ``L`` levels (4 for SVD).
* The decoder's video residual blocks: the spatial part keeps the LDM names
  (``norm1/conv1/norm2/conv2/nin_shortcut``), the temporal part is an openaimodel ``ResBlock``
  (``time_stack.in_layers.0/2``, ``time_stack.out_layers.0/3`` = norm1, conv1, norm2, conv2 of
  diffusers' ``TemporalResnetBlock``) and ``mix_factor`` is the blend logit. Both blend the same
  way: SGM computes ``s*temporal + (1-s)*spatial`` with ``s = sigmoid(mix_factor)``, and
  diffusers' ``AlphaBlender`` (learned, spatial/temporal switched) computes exactly that, so the
  value is copied unchanged.
* The decoder's final convolution ``conv_out`` carries a temporal convolution
  ``conv_out.time_mix_conv``; diffusers keeps it beside it as ``decoder.time_conv_out``.

Nothing here imports ComfyUI; diffusers is imported only to check a converted state dict
against the module it is meant for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch

from ..errors import CheckpointError
from .files import describe_mismatch

log = logging.getLogger(__name__)

SGM_VAE_PREFIX = "first_stage_model."
"""Prefix of the VAE tensors inside a single-file SGM checkpoint (strip it before converting)."""

SVD_VAE_LEVELS = 4
"""Resolution levels of SVD's VAE (block_out_channels 128, 256, 512, 512)."""

VaeKind = Literal["sgm_temporal", "sgm_image", "diffusers_temporal", "diffusers_image"]
QuantConvPolicy = Literal["identity", "fold", "keep"]

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
_ATTN_LINEAR_WEIGHT = re.compile(r"\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$")

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


# ----------------------------------------------------------------------------- state dicts


def _levels_from(keys: Iterable[str], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _is_identity_1x1(weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    w = weight.reshape(weight.shape[0], -1)
    if w.shape[0] != w.shape[1]:
        return False
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    return bool(torch.equal(w, eye)) and (bias is None or not bool(bias.any()))


def identity_quant_conv(
    latent_channels: int = 4, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """``quant_conv`` tensors (diffusers names) that leave the encoder's moments unchanged."""
    c = 2 * latent_channels
    weight = torch.eye(c, dtype=dtype, device=device).reshape(c, c, 1, 1)
    return {"quant_conv.weight": weight, "quant_conv.bias": torch.zeros(c, dtype=dtype, device=device)}


def temporal_vae_config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """The ``AutoencoderKLTemporalDecoder`` constructor arguments that fit diffusers-named tensor
    shapes (scaling factor and sample size are not stored in weights: SVD's defaults apply)."""
    levels = _levels_from(shapes, r"encoder\.down_blocks\.(\d+)\.")
    if levels == 0 or "decoder.conv_in.weight" not in shapes or "encoder.conv_in.weight" not in shapes:
        raise CheckpointError(
            "VAE weights: the encoder's or decoder's first convolution is missing, so this is not a complete "
            "temporal VAE. Give SVD's complete VAE (svd_xt*.safetensors or the diffusers 'vae' folder)."
        )
    widths = [int(shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0]) for i in range(levels)]
    layers = _levels_from(shapes, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    return {
        "in_channels": int(shapes["encoder.conv_in.weight"][1]),
        "out_channels": int(shapes["decoder.conv_out.weight"][0]),
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "block_out_channels": widths,
        "layers_per_block": layers,
        "latent_channels": int(shapes["decoder.conv_in.weight"][1]),
        "sample_size": 768,
        "scaling_factor": 0.18215,
    }


def _check_against_diffusers(shapes: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Compare diffusers-named ``shapes`` with the module they describe, built on the meta device."""
    from diffusers import AutoencoderKLTemporalDecoder

    config = temporal_vae_config_from_shapes(shapes)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in AutoencoderKLTemporalDecoder(**config).state_dict().items()}
    except Exception as exc:  # an inconsistent set of widths makes the constructor itself fail
        raise CheckpointError(f"{what}: its tensor shapes do not describe a temporal VAE ({exc}).") from exc
    mismatch = describe_mismatch(expected, shapes, examples=4)
    if mismatch:
        raise CheckpointError(
            f"{what}: does not match SVD's temporal VAE layout: {mismatch}. "
            "Give SVD's complete VAE (svd_xt*.safetensors or the diffusers 'vae' folder)."
        )


def _to_linear(name: str, t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 4 and t.shape[2:] == (1, 1):
        return t.reshape(t.shape[0], t.shape[1])
    if t.ndim == 2:
        return t
    raise CheckpointError(f"VAE tensor {name!r} has shape {tuple(t.shape)}; an attention projection must be "
                          "(C, C, 1, 1) or (C, C).")


def convert_sgm_vae_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert SVD's VAE from SGM names (``first_stage_model.`` already stripped) to a state
    dict that ``AutoencoderKLTemporalDecoder`` loads with ``strict=True``.

    Renames every tensor (reshaping attention projections from 1x1 convolutions to linears),
    adds the identity ``quant_conv`` that SGM's engine lacks (an SGM ``quant_conv``, if a file
    has one, is used as is), and checks the result tensor by tensor, shape by shape, against
    the module diffusers builds for the inferred config. Tensors keep their dtype and device
    (the returned tensors may be views of the inputs).

    Raises :class:`~videomama.errors.CheckpointError` for an image VAE, unknown or missing
    tensors, a non-identity ``post_quant_conv`` or wrong shapes.
    """
    what = "SGM VAE weights"
    kind = classify_vae_keys(tensors.keys())
    if kind != "sgm_temporal":
        described = {
            "sgm_image": "an image-only VAE (no temporal decoder, e.g. SD 1.x/SDXL)",
            "diffusers_temporal": "already in diffusers layout",
            "diffusers_image": "a diffusers image VAE (AutoencoderKL)",
            None: "not a VAE state dict" + (
                " (names still start with 'first_stage_model.': strip that prefix first)"
                if any(k.startswith(SGM_VAE_PREFIX) for k in tensors) else ""
            ),
        }[kind]
        raise CheckpointError(
            f"{what}: expected SVD's temporal VAE in SGM layout, got {described}. "
            "Give SVD-XT's VAE (svd_xt.safetensors / svd_xt_1_1.safetensors)."
        )
    source = dict(tensors)
    post_w = source.pop("post_quant_conv.weight", None)
    post_b = source.pop("post_quant_conv.bias", None)
    if post_w is not None or post_b is not None:
        # SVD's engine has no post_quant_conv. A 1x1 conv before the decoder's zero-padded 3x3
        # conv_in cannot be folded into it exactly (its bias would leak into the padding), so only
        # an identity one can be dropped without changing the output.
        if post_w is None or not _is_identity_1x1(post_w, post_b):
            raise CheckpointError(
                f"{what}: a non-identity 'post_quant_conv' is present; diffusers' temporal VAE has no such layer, "
                "so these weights are not SVD's temporal VAE."
            )
        log.info("dropping identity post_quant_conv from the SGM VAE")

    num_levels = max(_levels_from(source, r"decoder\.up\.(\d+)\."), _levels_from(source, r"encoder\.down\.(\d+)\."))
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in source.items():
        try:
            new = sgm_vae_key_to_diffusers(key, num_levels)
        except KeyError:
            unknown.append(key)
            continue
        if new in out:  # cannot happen for a bijective mapping; guards against future rule edits
            raise CheckpointError(f"{what}: two tensors map to {new!r}")
        if _ATTN_LINEAR_WEIGHT.search(new):
            value = _to_linear(key, value)
        out[new] = value
    if unknown:
        unknown.sort()
        raise CheckpointError(
            f"{what}: {len(unknown)} tensor(s) are not part of SVD's temporal VAE "
            f"(e.g. {', '.join(unknown[:4])}). Only SVD's 'first_stage_model.*' tensors can be converted."
        )
    if "quant_conv.weight" not in out and "quant_conv.bias" not in out and "encoder.conv_out.weight" in out:
        ref = out["encoder.conv_out.weight"]
        out.update(identity_quant_conv(ref.shape[0] // 2, ref.dtype, ref.device))
    _check_against_diffusers({k: tuple(v.shape) for k, v in out.items()}, what)
    return out


def convert_diffusers_vae_state_dict_to_sgm(
    tensors: Mapping[str, torch.Tensor], quant_conv: QuantConvPolicy = "identity"
) -> dict[str, torch.Tensor]:
    """Convert an ``AutoencoderKLTemporalDecoder`` state dict to SGM names (no prefix).

    The inverse of :func:`convert_sgm_vae_state_dict`: attention projections become 1x1
    convolutions again. diffusers' ``quant_conv`` has no place in SVD's SGM engine, so
    ``quant_conv`` says what to do with it:

    * ``"identity"`` (default): it must be the identity (as in every VAE converted from SGM) and
      is dropped; anything else raises :class:`~videomama.errors.CheckpointError`;
    * ``"fold"``: it is folded into the encoder's ``conv_out`` (a 1x1 convolution after a
      convolution composes exactly into one convolution; equal up to float rounding);
    * ``"keep"``: it is written as SGM ``quant_conv.*`` (loadable by
      :func:`convert_sgm_vae_state_dict`, but not by SGM/ComfyUI engines that lack the layer).
    """
    what = "diffusers VAE weights"
    if classify_vae_keys(tensors.keys()) != "diffusers_temporal":
        raise CheckpointError(f"{what}: expected an AutoencoderKLTemporalDecoder state dict.")
    _check_against_diffusers({k: tuple(v.shape) for k, v in tensors.items()}, what)
    source = dict(tensors)
    q_w = source.pop("quant_conv.weight")
    q_b = source.pop("quant_conv.bias")
    if quant_conv == "identity":
        if not _is_identity_1x1(q_w, q_b):
            raise CheckpointError(
                f"{what}: quant_conv is not the identity, so SVD's SGM layout (which has no quant_conv) cannot hold it "
                "unchanged. Pass quant_conv='fold' to fold it into encoder.conv_out, or 'keep'."
            )
    elif quant_conv == "fold":
        q = q_w.reshape(q_w.shape[0], q_w.shape[1])
        w = source["encoder.conv_out.weight"]
        b = source["encoder.conv_out.bias"]
        if not _is_identity_1x1(q_w, q_b):
            acc = torch.float64
            q64 = q.to(acc)
            source["encoder.conv_out.weight"] = torch.einsum("ok,kchw->ochw", q64, w.to(acc)).to(w.dtype)
            source["encoder.conv_out.bias"] = (q64 @ b.to(acc) + q_b.to(acc)).to(b.dtype)
    elif quant_conv != "keep":
        raise ValueError(f"quant_conv must be 'identity', 'fold' or 'keep', not {quant_conv!r}")

    num_levels = _levels_from(source, r"decoder\.up_blocks\.(\d+)\.")
    out: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        new = diffusers_vae_key_to_sgm(key, num_levels)  # every key was validated above
        if new in out:  # pragma: no cover - the mapping is bijective
            raise CheckpointError(f"{what}: two tensors map to {new!r}")
        if _ATTN_LINEAR_WEIGHT.search(key) and value.ndim == 2:
            value = value.reshape(value.shape[0], value.shape[1], 1, 1)
        out[new] = value
    if quant_conv == "keep":
        out["quant_conv.weight"] = q_w
        out["quant_conv.bias"] = q_b
    return out
