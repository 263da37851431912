"""Loading SAM2 / SAM2.1 / SAM2-Matte checkpoints: identification from tensors, configs, the model.

Typical use (the ComfyUI node is a thin wrapper around exactly this)::

    tracker = load_sam2("models/sam2/sam2.1_hiera_tiny.pt", device="cuda")
    prompts = parse_prompts(text, num_frames=T, height=H, width=W)     # videomama.sam2.prompts
    masks = track(tracker, frames, prompts, output="soft")              # videomama.sam2.tracking

``sam2`` is imported lazily: without it this module still imports (identification works)
and :func:`require_sam2` explains how to install it. Weight files are read only through
:mod:`videomama.weights.files` (safetensors, or ``torch.load(weights_only=True)``); a config
embedded in a file may only name sam2's own classes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, InputError, VideoMaMaError
from ..weights.files import (
    SAFETENSORS_SUFFIXES,
    TensorIndex,
    describe_mismatch,
    index_tensors,
    is_pickle_bytes,
    load_pickle_weights,
    open_tensor_file,
    unwrap_state_dict,
)
from ..weights.precision import native_bf16
from .available import require_sam2
from .configs import as_model_config, build_sam2_predictor, builtin_config_name, sam2_model_config

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .predictor import VideoMaMaSAM2Predictor

log = logging.getLogger(__name__)

# Where a checkpoint may carry its own model config (safetensors metadata key, or a top-level
# key next to "model" in a .pt). Used for custom/tiny architectures; official files have none.
SAM2_CONFIG_KEY = "sam2_config"

# (trunk embed dim, blocks per stage) -> size name. These four are all the official models.
KNOWN_SIZES: dict[tuple[int, tuple[int, ...]], str] = {
    (96, (1, 2, 7, 2)): "tiny",
    (96, (1, 2, 11, 2)): "small",
    (112, (2, 3, 16, 3)): "base_plus",
    (144, (2, 6, 36, 4)): "large",
}

_TRUNK = "image_encoder.trunk."
_PATCH_KEY = _TRUNK + "patch_embed.proj.weight"
_V21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
_PREFIXES = ("module.", "model.", "sam2.", "sam.", "_orig_mod.")

# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sam2Info:
    """What a SAM2 weight file was identified as (from its tensors; the name is only a hint).

    version: "2" or "2.1". size: "tiny", "small", "base_plus", "large", or "custom" (an
    architecture that only loads with a config, e.g. the tiny test models).
    embed_dim, stages: the Hiera image encoder's first embedding width and blocks per stage.
    config_source: "builtin:<sam2 config file>", "embedded" or "caller" once loaded.
    """

    path: str
    version: str
    size: str
    embed_dim: int
    stages: tuple[int, ...]
    has_embedded_config: bool = False
    config_source: str = ""

    @property
    def name(self) -> str:
        return f"SAM{self.version} {self.size}"


def _read_sam2_file(path: str | os.PathLike[str]) -> tuple[TensorIndex, str | None]:
    """Index the tensors of a SAM2 weight file and return its embedded config text, if any."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        index = open_tensor_file(path)
        return index, index.metadata.get(SAM2_CONFIG_KEY)
    if not path.exists():
        raise CheckpointError(f"SAM2 checkpoint not found: '{path}'. Check the path (and that the download finished).")
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder; give the SAM2 checkpoint file itself (e.g. sam2.1_hiera_tiny.pt).")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not is_pickle_bytes(head):
        # Not a torch pickle: let the safetensors reader try (it names the file on failure).
        index = open_tensor_file(path)
        return index, index.metadata.get(SAM2_CONFIG_KEY)
    # Read the raw object (not open_tensor_file): the config may sit next to "model".
    obj = load_pickle_weights(path, fix="use the official SAM2 .pt file again or a .safetensors conversion of it")
    config = obj.get(SAM2_CONFIG_KEY) if isinstance(obj, Mapping) else None
    state = unwrap_state_dict(obj)
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(
            f"'{path}' holds no state dict of tensors. Give an official SAM2/SAM2.1 checkpoint "
            "(a dict with a 'model' state dict) or a .safetensors conversion of one."
        )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"'{path}' holds no tensors; it is not a model weight file.")
    return index_tensors(path, tensors), config if isinstance(config, str) else None


def _strip_prefix(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The key prefix (e.g. 'module.') in front of SAM2's own key names, '' if none."""
    if _PATCH_KEY in shapes:
        return ""
    for prefix in _PREFIXES:
        if prefix + _PATCH_KEY in shapes:
            return prefix
    return ""


def _not_sam2_error(path: Path, keys: Sequence[str]) -> CheckpointError:
    keyset = set(keys)
    if "image_encoder.patch_embed.proj.weight" in keyset or any(k.startswith("image_encoder.blocks.") for k in keys):
        what = "a Segment Anything (SAM v1) checkpoint"
    elif any(k.startswith(("vision_encoder.", "sam2.vision_encoder", "model.vision_encoder")) for k in keys):
        what = "a Hugging Face transformers SAM2 conversion (different key names)"
    elif any("down_blocks" in k or "conv_in" in k for k in keys[:200]):
        what = "a diffusion model (UNet/VAE) file"
    else:
        what = f"not a SAM2 checkpoint (first keys: {', '.join(sorted(keys)[:3])})"
    return CheckpointError(
        f"'{path}' is {what}. SAM2 tracking needs an original SAM2 / SAM2.1 / SAM2-Matte checkpoint "
        "(sam2.1_hiera_tiny.pt, _small, _base_plus, _large, from the facebookresearch/sam2 release) "
        "or a .safetensors conversion that keeps its key names; put it in models/sam2."
    )


def _trunk_stages(shapes: Mapping[str, tuple[int, ...]], prefix: str) -> tuple[int, ...]:
    """Blocks per Hiera stage, read from the keys: a stage starts where a block changes width."""
    head = prefix + _TRUNK + "blocks."
    indices = sorted({int(k[len(head) :].split(".", 1)[0]) for k in shapes if k.startswith(head)})
    if not indices or indices != list(range(len(indices))):
        return ()
    starts = [0] + [i for i in indices if f"{head}{i}.proj.weight" in shapes]
    starts = sorted(set(starts))
    ends = starts[1:] + [len(indices)]
    return tuple(e - s for s, e in zip(starts, ends))


def _identify(index: TensorIndex, has_config: bool) -> Sam2Info:
    path = index.path
    shapes = index.shapes
    prefix = _strip_prefix(shapes)
    if prefix + _PATCH_KEY not in shapes:
        raise _not_sam2_error(path, list(shapes))
    embed_dim = int(shapes[prefix + _PATCH_KEY][0])
    stages = _trunk_stages(shapes, prefix)
    v21 = [prefix + k in shapes for k in _V21_KEYS]
    if all(v21):
        version = "2.1"
    elif not any(v21):
        version = "2"
    elif has_config:
        version = "custom"
    else:
        raise CheckpointError(
            f"'{path}' is a SAM2 checkpoint of an unknown variant (it has only some of the SAM2.1 tensors "
            f"{', '.join(_V21_KEYS)}). Use an official SAM2 or SAM2.1 checkpoint, or embed the model config "
            f"in the file (see videomama.sam2.loading.save_sam2_checkpoint)."
        )
    size = KNOWN_SIZES.get((embed_dim, stages), "custom")
    if size == "custom" and not has_config:
        known = ", ".join(f"{n} (dim {d}, blocks {list(s)})" for (d, s), n in KNOWN_SIZES.items())
        raise CheckpointError(
            f"'{path}' is a SAM2 checkpoint whose image encoder (embed dim {embed_dim}, blocks per stage "
            f"{list(stages)}) matches none of the official sizes: {known}. Use an official checkpoint, or a "
            f"file that carries its own model config (videomama.sam2.loading.save_sam2_checkpoint)."
        )
    info = Sam2Info(str(path), version, size, embed_dim, stages, has_embedded_config=has_config)
    _check_name_hint(info)
    return info


def _check_name_hint(info: Sam2Info) -> None:
    name = Path(info.path).name.lower().replace("-", "_")
    hinted = None
    for size, words in (
        ("base_plus", ("base_plus", "b+", "baseplus", "base")),
        ("large", ("large", "_l.")),
        ("small", ("small", "_s.")),
        ("tiny", ("tiny", "_t.")),
    ):
        if any(w in name for w in words):
            hinted = size
            break
    if hinted and info.size not in ("custom", hinted):
        log.warning("%s: the file name suggests SAM2 %s, but its tensors are %s; using the tensors.", info.path, hinted, info.name)
    if info.version == "2" and "2.1" in name or info.version == "2.1" and "sam2_" in name and "2.1" not in name:
        log.warning("%s: the file name suggests another SAM2 version than its tensors (%s); using the tensors.", info.path, info.name)


def identify_sam2(path: str | os.PathLike[str]) -> Sam2Info:
    """Identify a SAM2 weight file from its tensors (version, size), without building the model.

    Raises :class:`CheckpointError` naming the file and the fix for anything that is not a
    loadable SAM2 / SAM2.1 / SAM2-Matte checkpoint.
    """
    index, config_text = _read_sam2_file(path)
    return _identify(index, has_config=config_text is not None)


def identify_sam2_shapes(shapes: Mapping[str, Sequence[int]], name: str = "<state dict>") -> Sam2Info:
    """:func:`identify_sam2` for a mapping of tensor names to shapes (e.g. of a meta-device model)."""
    index = TensorIndex(path=Path(name), shapes={k: tuple(v) for k, v in shapes.items()}, dtypes={})
    return _identify(index, has_config=False)



SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def compute_dtype(device: torch.device, requested: torch.dtype | None) -> torch.dtype:
    """The dtype tracking computes in on ``device`` (the device the model is on now).

    None picks bfloat16 on CUDA devices with native bf16 (compute capability 8.0 and later;
    T4/V100/RTX 20xx only emulate it, slowly) and float32 everywhere else. The CPU always
    tracks in float32 (autocast is only used on CUDA).
    """
    if requested is not None and requested not in SUPPORTED_DTYPES:
        raise InputError(f"SAM2 dtype {requested} is not supported; use torch.float32, torch.float16 or torch.bfloat16.")
    if device.type != "cuda":
        return torch.float32
    if requested is not None:
        return requested
    return torch.bfloat16 if native_bf16(device) else torch.float32


@dataclass
class Sam2Tracker:
    """A loaded SAM2 video predictor and what is known about it. The caller owns it (one per loaded
    file); it holds no per-clip state, so it can be cached and reused for any number of clips.

    predictor: the ``nn.Module`` (a ``sam2`` ``SAM2VideoPredictor`` subclass) in eval mode,
        float32 weights; a host may move it between devices.
    info: what the weights were identified as.
    dtype: requested compute dtype on CUDA (autocast); None = :func:`compute_dtype` decides
        from the device the predictor is on when tracking starts.
    """

    predictor: VideoMaMaSAM2Predictor
    info: Sam2Info
    dtype: torch.dtype | None = None

    @property
    def device(self) -> torch.device:
        return self.predictor.device


def load_sam2(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    config: Any = None,
) -> Sam2Tracker:
    """Load a SAM2 / SAM2.1 / SAM2-Matte checkpoint as a video predictor, ready for tracking.

    path: an official ``.pt`` (``{"model": state_dict}``, read with ``weights_only=True``) or a
        ``.safetensors`` conversion (flat state dict). The architecture is identified from the
        tensors (see :func:`identify_sam2`); a file may also carry its own config
        (:data:`SAM2_CONFIG_KEY`), and ``config`` (the ``model`` section of a sam2 config, as a
        mapping, YAML text or a YAML path) overrides both.
    device: where the model is placed. Weights are always kept in float32.
    dtype: compute dtype on CUDA (see :class:`Sam2Tracker`).
    """
    require_sam2()
    compute_dtype(torch.device("cpu"), dtype)  # validates the request before the slow part
    t0 = time.perf_counter()
    index, embedded = _read_sam2_file(path)
    info = _identify(index, has_config=embedded is not None or config is not None)
    if config is not None:
        model_cfg, source = as_model_config(config, "the config argument"), "caller"
    elif embedded is not None:
        model_cfg, source = as_model_config(embedded, f"'{path}' (embedded)"), "embedded"
    else:
        model_cfg = sam2_model_config(info.version, info.size)
        source = "builtin:" + builtin_config_name(info.version, info.size)
    info = dataclasses.replace(info, config_source=source)

    try:
        model = build_sam2_predictor(model_cfg)
    except VideoMaMaError:
        raise
    except Exception as exc:
        raise CheckpointError(f"could not build the SAM2 model for '{path}' from its config ({type(exc).__name__}: {exc}).") from exc

    prefix = _strip_prefix(index.shapes)
    state = {k[len(prefix) :]: index.read(k) for k in index.keys() if k.startswith(prefix)}
    expected = model.state_dict()
    mismatch = describe_mismatch({k: tuple(v.shape) for k, v in expected.items()},
                                 {k: tuple(v.shape) for k, v in state.items()})
    if mismatch:
        raise CheckpointError(
            f"'{path}' does not match the {info.name} architecture ({source}): tensors {mismatch}. "
            "The file is probably a modified or partial checkpoint; use an official SAM2/SAM2.1 file or give the matching config."
        )
    model.load_state_dict(state, strict=True)  # copies into the float32 parameters
    del state
    device = torch.device(device)
    model = model.to(device).eval().requires_grad_(False)
    log.info(
        "loaded %s from %s (%s, image size %d) on %s in %.1f s",
        info.name, path, source, model.image_size, device, time.perf_counter() - t0,
    )
    return Sam2Tracker(model, info, dtype)


def save_sam2_checkpoint(
    weights: torch.nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    config: Any = None,
) -> Path:
    """Write SAM2 weights as ``.safetensors`` (by suffix) or as an official-style ``.pt``.

    config: optional ``model`` section of the sam2 config to embed (needed for architectures
        other than the official four, e.g. tiny test models). It is stored as JSON in the
        safetensors metadata / next to ``"model"`` in the ``.pt`` under :data:`SAM2_CONFIG_KEY`.
    """
    from omegaconf import OmegaConf

    path = Path(path)
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else dict(weights)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    config_text = None
    if config is not None:
        cfg = as_model_config(config, "the config argument")
        config_text = json.dumps(OmegaConf.to_container(cfg, resolve=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        from safetensors.torch import save_file

        metadata = {"format": "pt"}
        if config_text is not None:
            metadata[SAM2_CONFIG_KEY] = config_text
        save_file(state, str(path), metadata=metadata)
    else:
        payload: dict[str, Any] = {"model": state}
        if config_text is not None:
            payload[SAM2_CONFIG_KEY] = config_text
        torch.save(payload, str(path))
    return path

