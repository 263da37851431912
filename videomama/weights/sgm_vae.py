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
from .sgm_vae_keys import (
    ATTN_LINEAR_WEIGHT,
    SGM_VAE_PREFIX,
    SVD_VAE_LEVELS,
    classify_vae_keys,
    diffusers_vae_key_to_sgm,
    sgm_vae_key_to_diffusers,
    strip_sgm_prefix,
)

log = logging.getLogger(__name__)

# The key functions live in .sgm_vae_keys; callers reach all of the conversion through this module.
__all__ = [
    "SGM_VAE_PREFIX", "SVD_VAE_LEVELS", "classify_vae_keys", "convert_diffusers_vae_state_dict_to_sgm",
    "convert_sgm_vae_state_dict", "diffusers_vae_key_to_sgm", "identity_quant_conv", "sgm_vae_key_to_diffusers",
    "strip_sgm_prefix", "temporal_vae_config_from_shapes",
]

QuantConvPolicy = Literal["identity", "fold", "keep"]

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
        if ATTN_LINEAR_WEIGHT.search(new):
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
        if ATTN_LINEAR_WEIGHT.search(key) and value.ndim == 2:
            value = value.reshape(value.shape[0], value.shape[1], 1, 1)
        out[new] = value
    if quant_conv == "keep":
        out["quant_conv.weight"] = q_w
        out["quant_conv.bias"] = q_b
    return out
