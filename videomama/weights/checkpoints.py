"""Finding, identifying and loading VideoMaMa's UNet and SVD's temporal VAE.

Layouts accepted (see README "Weights"):

UNet (VideoMaMa, 12 input channels):
  * the released diffusers folder: ``unet/config.json`` + ``diffusion_pytorch_model[.fp16].safetensors``
    (or sharded with an ``.index.json``), given as the ``unet`` folder or the folder above it;
  * one ``.safetensors`` with diffusers keys; its config comes from the file's metadata
    (written by ``python -m videomama convert``) or is inferred from the tensor shapes.

VAE (SVD's ``AutoencoderKLTemporalDecoder``):
  * SVD-XT's diffusers ``vae/`` folder (or the folder above it);
  * a single-file SVD checkpoint (``svd_xt*.safetensors``) whose ``first_stage_model.*``
    tensors use Stability's SGM names; only those tensors are read;
  * a standalone VAE file in diffusers or SGM key names.

Nothing else is loaded: no CLIP image encoder, no scheduler, no text encoders.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..errors import CheckpointError
from .files import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    TensorIndex,
    describe_mismatch,
    open_tensor_file,
    read_json,
)

log = logging.getLogger(__name__)

VIDEOMAMA_IN_CHANNELS = 12  # noise(4) + frame latent(4) + mask latent(4)
SVD_IN_CHANNELS = 8  # the base SVD UNet: noise(4) + image latent(4)
UNET_HEAD_DIM = 64  # SVD's attention head width: heads = channels / 64
SVD_VAE_SCALING = 0.18215

# SVD-XT's temporal VAE config (diffusers' class defaults describe a different, tiny model).
SVD_VAE_CONFIG: dict = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 768,
    "scaling_factor": SVD_VAE_SCALING,
    "force_upcast": True,
}

WEIGHT_FILE_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bf16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)

Kind = Literal[
    "videomama_unet",
    "svd_unet",
    "unet",
    "temporal_vae",
    "image_vae",
    "svd_checkpoint",
    "unknown",
]

KIND_DESCRIPTIONS: dict[str, str] = {
    "videomama_unet": "the VideoMaMa UNet (12 input channels)",
    "svd_unet": "the base Stable Video Diffusion UNet (8 input channels), not VideoMaMa's fine-tuned one",
    "unet": "a diffusers UNet that is not VideoMaMa's",
    "temporal_vae": "SVD's temporal VAE",
    "image_vae": "an image VAE without SVD's temporal decoder",
    "svd_checkpoint": "a single-file Stable Video Diffusion checkpoint",
    "unknown": "no model this pack knows",
}


@dataclass(frozen=True)
class WeightsInfo:
    """What a path holds, found from tensor names and shapes (never from the file name alone)."""

    path: Path
    kind: Kind
    layout: str  # 'diffusers-folder', 'diffusers-file', 'sgm-file', 'svd-single-file', 'other'
    in_channels: int | None = None
    has_vae: bool = False  # svd_checkpoint: does it carry first_stage_model.*?
    detail: str = ""

    @property
    def description(self) -> str:
        return KIND_DESCRIPTIONS[self.kind]


# ----------------------------------------------------------------------------- locating


def _weights_in_folder(folder: Path) -> list[Path]:
    """The weight file(s) of a diffusers model folder, preferring full precision safetensors."""
    for name in WEIGHT_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return [candidate]
        index = folder / f"{name}.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map", {})
            files = sorted({folder / f for f in weight_map.values()})
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise CheckpointError(
                    f"'{index}' lists shard '{missing[0].name}', which is missing: download all shards."
                )
            return files
    raise CheckpointError(
        f"no weights in '{folder}': expected one of {', '.join(WEIGHT_FILE_NAMES[:2])} next to config.json."
    )


def _diffusers_folder(path: Path, subfolder: str) -> Path | None:
    """The diffusers model folder meant by ``path`` (itself, or ``path/subfolder``), if any."""
    if (path / "config.json").is_file() and any(
        (path / n).is_file() or (path / f"{n}.index.json").is_file() for n in WEIGHT_FILE_NAMES
    ):
        return path
    nested = path / subfolder
    if (nested / "config.json").is_file():
        return nested
    if (path / "config.json").is_file():
        return path
    return None


def _check_exists(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{what} path not found: '{p}'. Check the path; see README 'Weights' for what goes where.")
    return p


def _open_files(files: list[Path]) -> TensorIndex:
    if len(files) == 1:
        return open_tensor_file(files[0])
    parts = [open_tensor_file(f) for f in files]
    owner = {k: part for part in parts for k in part.keys()}
    return TensorIndex(
        path=files[0].parent,
        shapes={k: v for part in parts for k, v in part.shapes.items()},
        dtypes={k: v for part in parts for k, v in part.dtypes.items()},
        read=lambda name: owner[name].read(name),
    )


# ----------------------------------------------------------------------------- identifying


def _classify_index(index: TensorIndex) -> tuple[Kind, str, int | None, bool]:
    from . import sgm_vae

    keys = set(index.keys())
    if "conv_in.weight" in keys and "time_embedding.linear_1.weight" in keys:
        channels = index.shapes["conv_in.weight"][1]
        if channels == VIDEOMAMA_IN_CHANNELS and "add_embedding.linear_1.weight" in keys:
            return "videomama_unet", "diffusers-file", channels, False
        if channels == SVD_IN_CHANNELS and "add_embedding.linear_1.weight" in keys:
            return "svd_unet", "diffusers-file", channels, False
        return "unet", "diffusers-file", channels, False
    if any(k.startswith("model.diffusion_model.") for k in keys):
        has_vae = any(k.startswith(sgm_vae.SGM_VAE_PREFIX) for k in keys)
        w = index.shapes.get("model.diffusion_model.input_blocks.0.0.weight")
        return "svd_checkpoint", "svd-single-file", (w[1] if w else None), has_vae
    vae_kind = sgm_vae.classify_vae_keys(keys)
    if vae_kind is None and any(k.startswith(sgm_vae.SGM_VAE_PREFIX) for k in keys):
        inner = {k[len(sgm_vae.SGM_VAE_PREFIX) :] for k in keys if k.startswith(sgm_vae.SGM_VAE_PREFIX)}
        vae_kind = sgm_vae.classify_vae_keys(inner)
        if vae_kind is not None:
            kind: Kind = "temporal_vae" if vae_kind.endswith("temporal") else "image_vae"
            return kind, "sgm-prefixed-file", None, True
    if vae_kind is not None:
        kind = "temporal_vae" if vae_kind.endswith("temporal") else "image_vae"
        layout = "sgm-file" if vae_kind.startswith("sgm") else "diffusers-file"
        return kind, layout, None, True
    return "unknown", "other", None, False


def identify(path: str | os.PathLike[str]) -> WeightsInfo:
    """Say what ``path`` holds: a VideoMaMa UNet, SVD's UNet, a temporal or image VAE, ...

    Folders are recognised by their diffusers ``config.json`` (``unet/`` and ``vae/`` subfolders
    included); files by their tensor names and shapes.
    """
    p = _check_exists(path, "weights")
    if p.is_dir():
        for sub in ("unet", "vae"):
            folder = _diffusers_folder(p, sub)
            if folder is None:
                continue
            config = read_json(folder / "config.json")
            cls = config.get("_class_name", "")
            if cls == "UNetSpatioTemporalConditionModel" or (cls == "" and "addition_time_embed_dim" in config):
                ch = int(config.get("in_channels", 8))
                kind: Kind = "videomama_unet" if ch == VIDEOMAMA_IN_CHANNELS else "svd_unet" if ch == SVD_IN_CHANNELS else "unet"
                return WeightsInfo(p, kind, "diffusers-folder", ch, detail=str(folder))
            if cls == "AutoencoderKLTemporalDecoder":
                return WeightsInfo(p, "temporal_vae", "diffusers-folder", has_vae=True, detail=str(folder))
            if cls.startswith("AutoencoderKL"):
                return WeightsInfo(p, "image_vae", "diffusers-folder", has_vae=True, detail=str(folder))
            if "unet" in cls.lower():
                return WeightsInfo(p, "unet", "diffusers-folder", config.get("in_channels"), detail=str(folder))
        return WeightsInfo(p, "unknown", "other", detail="folder without a diffusers config.json")
    if p.suffix.lower() not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        raise CheckpointError(
            f"'{p}' is not a weight file (expected .safetensors, or a weights-only .pt/.bin/.ckpt)."
        )
    index = open_tensor_file(p)
    kind, layout, channels, has_vae = _classify_index(index)
    return WeightsInfo(p, kind, layout, channels, has_vae)


def _wrong_file(path: Path, expected: str, info: WeightsInfo, fix: str) -> CheckpointError:
    return CheckpointError(f"'{path}' holds {info.description}, but {expected} was expected. {fix}")


# ----------------------------------------------------------------------------- building


def _materialise(
    model_factory, state: Mapping[str, torch.Tensor], source: Path, what: str
) -> torch.nn.Module:
    """Build ``model_factory()`` without allocating weights, then adopt ``state`` (strict)."""
    with torch.device("meta"):
        model = model_factory()
    mismatch = describe_mismatch(
        {k: tuple(v.shape) for k, v in model.state_dict().items()}, {k: tuple(v.shape) for k, v in state.items()}
    )
    if mismatch:
        raise CheckpointError(
            f"'{source}' does not match {what}: tensors {mismatch}. Is it the right file, complete and unmodified?"
        )
    model.load_state_dict(state, strict=True, assign=True)
    leftovers = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftovers:
        raise CheckpointError(f"'{source}': no values for {leftovers[:3]} of {what}.")
    return model.eval().requires_grad_(False)


def _read_all(index: TensorIndex, names, dtype: torch.dtype, rename=lambda k: k) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in names:
        tensor = index.read(name)
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[rename(name)] = tensor
    return out


def _config_from_metadata(index: TensorIndex) -> dict | None:
    """The model config ``python -m videomama convert`` stores in a file's metadata, if any."""
    if "config" not in index.metadata:
        return None
    try:
        config = json.loads(index.metadata["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"'{index.path}': the config in its metadata is not valid JSON ({exc}).") from exc
    return config if isinstance(config, dict) else None


def infer_unet_config(index: TensorIndex) -> dict:
    """Rebuild a ``UNetSpatioTemporalConditionModel`` config from tensor shapes.

    Heads are not visible in shapes; SVD uses 64-wide heads everywhere, so heads = width / 64.
    A config stored in the file's metadata (``python -m videomama convert`` writes one) wins.
    """
    stored = _config_from_metadata(index)
    if stored:
        return stored
    shapes = index.shapes
    blocks = sorted({int(m.group(1)) for k in shapes if (m := re.match(r"down_blocks\.(\d+)\.", k))})
    if not blocks:
        raise CheckpointError(f"'{index.path}' has no down_blocks.*: not a diffusers UNet.")
    widths = [shapes[f"down_blocks.{i}.resnets.0.spatial_res_block.conv1.weight"][0] for i in blocks]
    layers = len({m.group(1) for k in shapes if (m := re.match(r"down_blocks\.0\.resnets\.(\d+)\.", k))})
    cross = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in shapes) for i in blocks]
    attn_key = next(k for k in shapes if k.endswith("attn2.to_k.weight"))
    tlayers = len({m.group(1) for k in shapes if (m := re.match(r"down_blocks\.0\.attentions\.0\.transformer_blocks\.(\d+)\.", k))}) or 1
    proj_in = shapes["add_embedding.linear_1.weight"][1]
    heads = [max(1, w // UNET_HEAD_DIM) for w in widths]
    return {
        "in_channels": shapes["conv_in.weight"][1],
        "out_channels": shapes["conv_out.weight"][0],
        "block_out_channels": widths,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlockSpatioTemporal" if c else "DownBlockSpatioTemporal" for c in cross],
        "up_block_types": ["CrossAttnUpBlockSpatioTemporal" if c else "UpBlockSpatioTemporal" for c in reversed(cross)],
        "cross_attention_dim": shapes[attn_key][1],
        "projection_class_embeddings_input_dim": proj_in,
        "addition_time_embed_dim": proj_in // 3,  # three ids: fps, motion bucket, noise augmentation
        "transformer_layers_per_block": tlayers,
        "num_attention_heads": heads,
    }


_UNET_CONFIG_KEYS = (
    "in_channels out_channels block_out_channels layers_per_block down_block_types up_block_types "
    "cross_attention_dim projection_class_embeddings_input_dim addition_time_embed_dim "
    "transformer_layers_per_block num_attention_heads num_frames sample_size"
).split()


def _unet_from(config: dict, index: TensorIndex, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import UNetSpatioTemporalConditionModel

    kwargs = {k: config[k] for k in _UNET_CONFIG_KEYS if k in config}
    state = _read_all(index, list(index.keys()), dtype)
    return _materialise(lambda: UNetSpatioTemporalConditionModel(**kwargs), state, index.path, "the VideoMaMa UNet")


def load_unet(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32):
    """Load VideoMaMa's UNet (diffusers folder or single file) on the CPU in ``dtype``."""
    p = _check_exists(path, "UNet")
    info = identify(p)
    fix_unet = (
        "Give VideoMaMa's UNet: the 'unet' folder of the SammyLim/VideoMaMa release (or the folder above it), "
        "or a single file made from it with `python -m videomama convert`."
    )
    if info.kind != "videomama_unet":
        if info.kind in ("temporal_vae", "image_vae") or (info.kind == "svd_checkpoint" and info.has_vae and p.is_file()):
            raise _wrong_file(p, "a UNet", info, "It looks like a VAE was given as the UNet (swap --unet and --vae?). " + fix_unet)
        raise _wrong_file(p, "VideoMaMa's UNet", info, fix_unet)
    if info.layout == "diffusers-folder":
        folder = Path(info.detail)
        config = read_json(folder / "config.json")
        index = _open_files(_weights_in_folder(folder))
        if "conv_in.weight" in index and index.shapes["conv_in.weight"][1] != config.get("in_channels"):
            raise CheckpointError(f"'{folder}': config.json and the weights disagree on input channels; download again.")
    else:
        index = open_tensor_file(p)
        config = infer_unet_config(index)
    unet = _unet_from(config, index, dtype)
    log.info("loaded VideoMaMa UNet from %s (%s, %s)", p, info.layout, dtype)
    return unet


_VAE_CONFIG_KEYS = (
    "in_channels out_channels down_block_types block_out_channels layers_per_block latent_channels "
    "sample_size scaling_factor force_upcast"
).split()


def load_vae(path: str | os.PathLike[str], dtype: torch.dtype = torch.float32):
    """Load SVD's temporal VAE from any supported layout, on the CPU in ``dtype``."""
    from diffusers import AutoencoderKLTemporalDecoder

    from . import sgm_vae

    p = _check_exists(path, "VAE")
    info = identify(p)
    fix_vae = (
        "Give SVD-XT's VAE: the svd_xt.safetensors / svd_xt_1_1.safetensors checkpoint you already have, "
        "the 'vae' folder of stable-video-diffusion-img2vid-xt, or a VAE file extracted from them."
    )
    if info.kind in ("videomama_unet", "svd_unet", "unet") or (info.kind == "svd_checkpoint" and not info.has_vae):
        raise _wrong_file(p, "a VAE", info, "It looks like a UNet was given as the VAE (swap --unet and --vae?). " + fix_vae)
    if info.kind == "image_vae":
        raise _wrong_file(
            p, "SVD's temporal VAE", info,
            "VideoMaMa decodes with SVD's temporal decoder; an image VAE (SD 1.5/SDXL) cannot be used. " + fix_vae,
        )
    if info.kind not in ("temporal_vae", "svd_checkpoint"):
        raise _wrong_file(p, "SVD's temporal VAE", info, fix_vae)

    if info.layout == "diffusers-folder":
        folder = Path(info.detail)
        config = {**SVD_VAE_CONFIG, **read_json(folder / "config.json")}
        index = _open_files(_weights_in_folder(folder))
        state = _read_all(index, list(index.keys()), dtype)
    else:
        index = open_tensor_file(p)
        prefix = sgm_vae.SGM_VAE_PREFIX
        names = [k for k in index.keys() if k.startswith(prefix)] or list(index.keys())
        strip = (lambda k: k[len(prefix) :]) if names[0].startswith(prefix) else (lambda k: k)
        raw = _read_all(index, names, dtype, rename=strip)
        kind = sgm_vae.classify_vae_keys(set(raw))
        if kind == "sgm_temporal":
            state = sgm_vae.convert_sgm_vae_state_dict(raw)
        elif kind == "diffusers_temporal":
            state = raw
        else:
            raise _wrong_file(p, "SVD's temporal VAE", info, fix_vae)
        config = _config_from_metadata(index) or {
            **SVD_VAE_CONFIG,
            **sgm_vae.temporal_vae_config_from_shapes({k: tuple(v.shape) for k, v in state.items()}),
        }
    kwargs = {k: config[k] for k in _VAE_CONFIG_KEYS if k in config}
    vae = _materialise(lambda: AutoencoderKLTemporalDecoder(**kwargs), state, p, "SVD's temporal VAE")
    log.info("loaded temporal VAE from %s (%s, %s)", p, info.layout, dtype)
    return vae


def load_model(
    unet_path: str | os.PathLike[str],
    vae_path: str | os.PathLike[str],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    compute_device: torch.device | str | None = None,
):
    """Load both parts into a :class:`~videomama.pipeline.model.VideoMaMaModel` on ``device``.

    compute_device: where the model will run (default ``device``); an fp16 VAE whose config
    asks for ``force_upcast`` is loaded in bf16 or fp32 for it (:mod:`.precision`).
    """
    from ..pipeline.model import VideoMaMaModel
    from .precision import upcast_vae

    vae = upcast_vae(load_vae(vae_path, dtype), compute_device if compute_device is not None else device)
    model = VideoMaMaModel(load_unet(unet_path, dtype), vae)
    return model.to(device)
