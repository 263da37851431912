"""SAM2 / SAM2.1 (and SAM2-Matte) tracking over in-memory frames.

Prompt a subject once (points, a box or a mask on any frame, one or several objects) and get
a mask for every frame of the clip, at the source resolution, 1 = subject.

Typical use (the ComfyUI node is a thin wrapper around exactly this)::

    predictor = load_sam2("models/sam2/sam2.1_hiera_tiny.pt", device="cuda")
    prompts = parse_prompts(text, num_frames=T, height=H, width=W)
    masks = track(predictor, frames, prompts, output="soft")   # (T, H, W) float32, CPU

How it differs from SAM2's own video demo:

- Frames never leave memory: :func:`track` builds SAM2's inference state itself and feeds
  each frame to the model on demand (resized to the model's square input and normalised with
  SAM2's mean/std), instead of ``init_state`` reading a JPEG folder.
- Propagation covers the whole clip: forward from the earliest prompted frame to the end, then
  backward from it to frame 0 (frames between prompts see every prompted frame as memory).
- Only the memories the model can still read are kept, so a long clip costs a bounded amount
  of memory; ``offload_to_cpu`` moves even those to the CPU.
- On a CPU everything runs in float32 (SAM2 stores memories in bfloat16, which otherwise
  breaks the memory attention there); on CUDA the model runs under fp16/bf16 autocast.
- ``sam2`` is imported lazily: without it this module still imports and
  :func:`require_sam2` explains how to install it.

Prompt JSON (the ``text`` of :func:`parse_prompts`), coordinates in source pixels
(x to the right, y down, origin at the top-left corner of the frame)::

    [
      {"frame": 0, "object": 1, "points": [[320, 200], [300, 420]], "labels": [1, 0]},
      {"frame": 0, "object": 1, "positive": [[330, 210]], "negative": [{"x": 20, "y": 30}]},
      {"frame": 10, "object": 2, "box": [100, 80, 260, 400]}
    ]

- ``frame`` (default 0) and ``object`` (default 1) say where the prompt applies; entries with
  the same frame and object are merged.
- ``points`` with ``labels`` (1 = subject, 0 = background; default all 1), and/or
  ``positive`` / ``negative`` point lists; a point is ``[x, y]`` or ``{"x": x, "y": y}``.
- ``box`` is ``[x0, y0, x1, y1]`` (one per object and frame; it may be combined with points).
- A single entry may be given without the surrounding list.
- A bare list of ``{"x": .., "y": ..}`` points (what point-editor nodes such as KJNodes'
  Points Editor emit) is read as positive points of object ``points_object`` on frame
  ``points_frame``; the separate ``positive`` / ``negative`` strings of such editors go to the
  arguments of the same names.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from .errors import Cancelled, CheckpointError, InputError, VideoMaMaError
from .weights_io import SAFETENSORS_SUFFIXES, TensorIndex, describe_mismatch, is_pickle_bytes, open_tensor_file

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ._sam2_ext import VideoMaMaSAM2Predictor

log = logging.getLogger(__name__)

Output = Literal["binary", "soft"]
ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]

# SAM2's input normalisation (ImageNet statistics, as in sam2.utils.misc.load_video_frames).
SAM2_MEAN = (0.485, 0.456, 0.406)
SAM2_STD = (0.229, 0.224, 0.225)

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
_SIZE_SUFFIX = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}

# The official predictor's post-processing (build_sam2_video_predictor, apply_postprocessing).
_POSTPROCESSING: dict[str, Any] = {
    "sam_mask_decoder_extra_args": {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    },
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 8,
}

_TRUNK = "image_encoder.trunk."
_PATCH_KEY = _TRUNK + "patch_embed.proj.weight"
_V21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")
_PREFIXES = ("module.", "model.", "sam2.", "sam.", "_orig_mod.")

_INSTALL_HELP = (
    "SAM2 tracking needs the 'sam2' Python package: install it into the Python that runs "
    "ComfyUI / this library with `pip install sam2` (tip: `SAM2_BUILD_CUDA=0 pip install "
    "--no-build-isolation sam2` skips compiling its optional CUDA extension and reuses the "
    "installed torch). No CUDA build is needed: without the extension 'sam2._C' only SAM2's "
    "optional filling of tiny holes in the masks is skipped; tracking is otherwise identical."
)


class MissingDependencyError(VideoMaMaError, ImportError):
    """An optional package needed by the requested feature is not installed."""


# --------------------------------------------------------------------------------------------
# sam2 availability
# --------------------------------------------------------------------------------------------


def sam2_available() -> bool:
    """Whether the ``sam2`` package can be imported (no error raised)."""
    try:
        require_sam2()
    except MissingDependencyError:
        return False
    return True


def require_sam2() -> Any:
    """Import our ``sam2`` extension module, or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        from . import _sam2_ext
    except ImportError as exc:
        raise MissingDependencyError(f"{_INSTALL_HELP} (import failed: {exc})") from exc
    return _sam2_ext


@functools.lru_cache(maxsize=1)
def sam2_cuda_extension_available() -> bool:
    """Whether SAM2's optional CUDA extension ``sam2._C`` (connected components) is importable.

    Without it SAM2 cannot fill small holes (background islands of at most 8 pixels of the
    1/4-resolution mask); we then switch that post-processing off instead of letting SAM2
    warn on every frame. Nothing else depends on it.
    """
    try:
        from sam2 import _C  # noqa: F401
    except Exception:  # ImportError, or an ABI mismatch of a stale build
        return False
    return True


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
    obj = _torch_load_weights_only(path)
    config_text: str | None = None
    if isinstance(obj, Mapping):
        cfg = obj.get(SAM2_CONFIG_KEY)
        config_text = cfg if isinstance(cfg, str) else None
        for wrapper in ("model", "state_dict", "module"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"'{path}' holds no state dict of tensors. Give an official SAM2/SAM2.1 checkpoint "
            "(a dict with a 'model' state dict) or a .safetensors conversion of one."
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"'{path}' holds no tensors; it is not a model weight file.")
    return (
        TensorIndex(
            path=path,
            shapes={k: tuple(v.shape) for k, v in tensors.items()},
            dtypes={k: v.dtype for k, v in tensors.items()},
            read=tensors.__getitem__,
        ),
        config_text,
    )


def _torch_load_weights_only(path: Path) -> Any:
    def _load(mmap: bool) -> Any:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            return _load(mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return _load(mmap=False)  # legacy (non-zip) torch.save format cannot be memory-mapped
    except Exception as exc:  # the unpickler raises many different types
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            why = "it contains pickled Python objects other than tensors, and loading those would run code from the file"
        else:
            why = "it is probably truncated or corrupt"
        raise CheckpointError(
            f"'{path}' could not be loaded as plain weights ({type(exc).__name__}: {first}): {why}. "
            "Only safetensors files and weights-only PyTorch files are accepted (pickled code is never run): "
            "use the official SAM2 .pt file again or a .safetensors conversion of it."
        ) from exc


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
            f"in the file (see videomama.track.save_sam2_checkpoint)."
        )
    size = KNOWN_SIZES.get((embed_dim, stages), "custom")
    if size == "custom" and not has_config:
        known = ", ".join(f"{n} (dim {d}, blocks {list(s)})" for (d, s), n in KNOWN_SIZES.items())
        raise CheckpointError(
            f"'{path}' is a SAM2 checkpoint whose image encoder (embed dim {embed_dim}, blocks per stage "
            f"{list(stages)}) matches none of the official sizes: {known}. Use an official checkpoint, or a "
            f"file that carries its own model config (videomama.track.save_sam2_checkpoint)."
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


# --------------------------------------------------------------------------------------------
# Model configs
# --------------------------------------------------------------------------------------------


def builtin_config_name(version: str, size: str) -> str:
    """The sam2 package's config file for an official model, e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``."""
    if size not in _SIZE_SUFFIX or version not in ("2", "2.1"):
        raise CheckpointError(f"no built-in SAM2 config for version {version!r} size {size!r}.")
    stem = "sam2.1" if version == "2.1" else "sam2"
    return f"configs/{stem}/{stem}_hiera_{_SIZE_SUFFIX[size]}.yaml"


def sam2_model_config(version: str, size: str) -> Any:
    """The ``model`` section of an official config as an OmegaConf ``DictConfig``.

    Read from the installed sam2 package's YAML files with OmegaConf (no hydra ``compose``,
    so no hydra global state is touched).
    """
    require_sam2()
    import importlib.resources

    from omegaconf import OmegaConf

    name = builtin_config_name(version, size)
    resource = importlib.resources.files("sam2").joinpath(name)
    try:
        with resource.open("r", encoding="utf-8") as fh:
            cfg = OmegaConf.load(fh)
    except (OSError, FileNotFoundError) as exc:
        raise MissingDependencyError(
            f"the installed sam2 package has no '{name}' ({exc}); install sam2 >= 1.0 (`pip install -U sam2`)."
        ) from exc
    return cfg.model


_ALLOWED_TARGET_PREFIXES = ("sam2.modeling.", "sam2.sam2_video_predictor.")


def _as_model_config(config: Any, source: str) -> Any:
    """A model config (DictConfig) from a mapping, a DictConfig, YAML/JSON text or a YAML file path.

    Accepts either the ``model`` section or a whole file with a top-level ``model`` key. Only
    sam2 classes may be named as ``_target_`` and no interpolations are allowed, so a config
    embedded in a weight file cannot make us import or call anything else.
    """
    from omegaconf import DictConfig, OmegaConf

    try:
        if isinstance(config, DictConfig):
            cfg = config
        elif isinstance(config, Mapping):
            cfg = OmegaConf.create(dict(config))
        elif isinstance(config, (str, os.PathLike)):
            text = str(config)
            if "\n" not in text and text.lower().endswith((".yaml", ".yml", ".json")) and Path(text).is_file():
                text = Path(text).read_text(encoding="utf-8")
            cfg = OmegaConf.create(text)
        else:
            raise TypeError(f"unsupported config type {type(config).__name__}")
    except Exception as exc:
        raise CheckpointError(f"SAM2 model config from {source} is unreadable ({exc}).") from exc
    if not isinstance(cfg, DictConfig):
        raise CheckpointError(f"SAM2 model config from {source} is not a mapping.")
    if "model" in cfg and "image_encoder" not in cfg:
        cfg = cfg.model
    if "image_encoder" not in cfg:
        raise CheckpointError(f"SAM2 model config from {source} has no 'image_encoder'; give the 'model' section of a sam2 config.")
    container = OmegaConf.to_container(cfg, resolve=False)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_" and where != "model":
                    if not isinstance(value, str) or not value.startswith(_ALLOWED_TARGET_PREFIXES):
                        raise CheckpointError(f"SAM2 model config from {source}: {where}._target_={value!r} is not a sam2 class; refusing to build it.")
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, str) and "${" in node:
            raise CheckpointError(f"SAM2 model config from {source}: {where} uses an interpolation ({node!r}); write plain values.")

    walk(container, "model")
    return cfg


def build_sam2_predictor(model_config: Any, *, postprocessing: bool = True) -> VideoMaMaSAM2Predictor:
    """Instantiate a random-weight video predictor from the ``model`` section of a sam2 config.

    ``postprocessing`` applies the official video predictor's settings (stability-based
    multimask fallback, binarised click masks in memory, hole filling). Uses
    ``hydra.utils.instantiate`` only (no ``compose``), so no hydra global state is involved.
    """
    ext = require_sam2()
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = _as_model_config(model_config, "caller")
    if postprocessing:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(_POSTPROCESSING))
    model = instantiate(cfg, _target_=ext.VideoMaMaSAM2Predictor, _recursive_=True)
    model.videomama_fill_hole_area = int(getattr(model, "fill_hole_area", 0))
    return model


def _resolve_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is None:
        if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"SAM2 dtype {dtype} is not supported; use torch.float32, torch.float16 or torch.bfloat16.")
    return dtype


def load_sam2(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    config: Any = None,
) -> VideoMaMaSAM2Predictor:
    """Load a SAM2 / SAM2.1 / SAM2-Matte checkpoint as a video predictor, ready for :func:`track`.

    path: an official ``.pt`` (``{"model": state_dict}``, read with ``weights_only=True``) or a
        ``.safetensors`` conversion (flat state dict). The architecture is identified from the
        tensors (see :func:`identify_sam2`); a file may also carry its own config
        (:data:`SAM2_CONFIG_KEY`), and ``config`` (the ``model`` section of a sam2 config, as a
        mapping, YAML text or a YAML path) overrides both.
    device: where the model is placed. Weights are always kept in float32.
    dtype: compute dtype used by :func:`track` (autocast on CUDA): None = decide when tracking,
        from the device the model is on then: bfloat16 on a CUDA device that supports it, else
        float32. On a CPU tracking always runs in float32.

    Returns an ``nn.Module`` (a ``sam2`` ``SAM2VideoPredictor`` subclass) in eval mode with
    ``videomama_info`` (a :class:`Sam2Info`) and ``videomama_dtype`` attributes. It holds no
    per-clip state, so one loaded model can be cached and reused for any number of clips.
    """
    require_sam2()
    t0 = time.perf_counter()
    index, embedded = _read_sam2_file(path)
    info = _identify(index, has_config=embedded is not None or config is not None)
    if config is not None:
        model_cfg, source = _as_model_config(config, "the config argument"), "caller"
    elif embedded is not None:
        model_cfg, source = _as_model_config(embedded, f"'{path}' (embedded)"), "embedded"
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
    _resolve_dtype(device, dtype)  # validates
    model.videomama_info = info
    # Resolved per call against the device the model is on then (a host may move it).
    model.videomama_dtype = dtype
    log.info(
        "loaded %s from %s (%s, image size %d) on %s in %.1f s",
        info.name, path, source, model.image_size, device, time.perf_counter() - t0,
    )
    return model


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
        cfg = _as_model_config(config, "the config argument")
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


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """Every input for one object on one frame, in source pixel coordinates.

    points: ``((x, y), ...)`` with ``labels`` (1 = subject, 0 = background).
    box: ``(x0, y0, x1, y1)`` or None.
    mask: a ``(h, w)`` bool tensor (resized to the model by SAM2) or None; a mask excludes
        points and box on the same frame and object.
    """

    frame: int
    object: int = 1
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: torch.Tensor | None = field(default=None, compare=False, repr=False)


_ENTRY_KEYS = {"frame", "object", "points", "labels", "positive", "negative", "box"}
_EXAMPLE = '[{"frame": 0, "object": 1, "points": [[320, 200]], "labels": [1]}, {"frame": 0, "object": 2, "box": [10, 20, 200, 300]}]'


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputError(f"{where} must be a finite number, got {value!r}.")
    return float(value)


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise InputError(f"{where} must be an integer, got {value!r}.")
    return int(value)


def _check_frame(frame: int, num_frames: int, where: str) -> None:
    if not 0 <= frame < num_frames:
        raise InputError(f"{where}: frame {frame} is out of range; the clip has {num_frames} frames (0 to {num_frames - 1}).")


def _check_object(obj: int, where: str) -> None:
    if obj < 0:
        raise InputError(f"{where}: object id {obj} must be 0 or more (objects are numbered 1, 2, ...).")


def _check_xy(x: float, y: float, width: int, height: int, where: str) -> None:
    if not (0.0 <= x <= width and 0.0 <= y <= height):
        raise InputError(
            f"{where}: point ({x:g}, {y:g}) is outside the {width}x{height} frame; coordinates are source pixels "
            "with x in [0, width] and y in [0, height] (use normalized=True for fractions of the size)."
        )


def _parse_point(value: Any, where: str, scale: tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, Mapping):
        if "x" not in value or "y" not in value:
            raise InputError(f"{where} must be [x, y] or {{\"x\": x, \"y\": y}}, got {value!r}.")
        x, y = value["x"], value["y"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        x, y = value
    else:
        raise InputError(f"{where} must be [x, y] or {{\"x\": x, \"y\": y}}, got {value!r}.")
    return _number(x, f"{where}.x") * scale[0], _number(y, f"{where}.y") * scale[1]


def _parse_points(value: Any, where: str, scale: tuple[float, float]) -> list[tuple[float, float]]:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where} must be a list of points [[x, y], ...], got {type(value).__name__}.")
    return [_parse_point(p, f"{where}[{i}]", scale) for i, p in enumerate(value)]


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if "'" in text and '"' not in text:  # Python repr of a list of dicts, as some nodes emit
            try:
                return json.loads(text.replace("'", '"'))
            except json.JSONDecodeError:
                pass
        raise InputError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (character {exc.pos}). "
            f"Example of the expected form: {_EXAMPLE}"
        ) from exc


def _is_xy_list(data: Any) -> bool:
    return (
        isinstance(data, list)
        and len(data) > 0
        and all(isinstance(p, Mapping) and set(p) == {"x", "y"} for p in data)
    )


@dataclass
class _Draft:
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: torch.Tensor | None = None
    where: str = ""


def parse_prompts(
    text: str | None,
    num_frames: int,
    height: int,
    width: int,
    *,
    positive: str | None = None,
    negative: str | None = None,
    points_frame: int = 0,
    points_object: int = 1,
    box: Sequence[float] | None = None,
    mask: Any = None,
    mask_frame: int = 0,
    mask_object: int = 1,
    normalized: bool = False,
) -> list[Prompt]:
    """Parse and check tracking prompts; see the module docstring for the JSON form.

    text: the prompt JSON (may be empty/None when the other arguments give prompts).
    num_frames, height, width: the clip the prompts are for (used for the range checks).
    positive, negative: point-editor strings such as ``'[{"x": 100, "y": 200}, ...]'``
        (or ``[[x, y], ...]``), applied to object ``points_object`` on frame ``points_frame``.
    box: ``(x0, y0, x1, y1)`` for the same object and frame (e.g. the first BBOX of an editor).
    mask: a keyframe mask ``(h, w)`` or ``(1, h, w)`` (tensor or array, > 0.5 = subject) for
        object ``mask_object`` on frame ``mask_frame``; resized to the model as needed.
    normalized: coordinates of points and boxes are fractions of width/height instead of pixels.

    Returns one :class:`Prompt` per (frame, object), sorted. Raises :class:`InputError` saying
    where the problem is: malformed JSON, unknown keys, points outside the frame, frame out of
    range, a mask together with points for the same object and frame, or no prompt at all.
    """
    if num_frames < 1:
        raise InputError("the clip has no frames; give at least one frame to track.")
    scale = (float(width), float(height)) if normalized else (1.0, 1.0)
    drafts: dict[tuple[int, int], _Draft] = {}

    def draft(frame: int, obj: int, where: str) -> _Draft:
        _check_frame(frame, num_frames, where)
        _check_object(obj, where)
        d = drafts.setdefault((frame, obj), _Draft(where=where))
        return d

    def add_points(d: _Draft, pts: list[tuple[float, float]], labels: list[int], where: str) -> None:
        for i, (x, y) in enumerate(pts):
            _check_xy(x, y, width, height, f"{where}[{i}]")
        d.points.extend(pts)
        d.labels.extend(labels)

    def set_box(d: _Draft, value: Any, where: str, frame: int, obj: int) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != 4:
            raise InputError(f"{where} must be [x0, y0, x1, y1], got {value!r}.")
        x0, y0, x1, y1 = (_number(v, f"{where}[{i}]") for i, v in enumerate(value))
        x0, x1 = x0 * scale[0], x1 * scale[0]
        y0, y1 = y0 * scale[1], y1 * scale[1]
        _check_xy(x0, y0, width, height, where)
        _check_xy(x1, y1, width, height, where)
        if not (x1 > x0 and y1 > y0):
            raise InputError(f"{where}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is empty; give [x0, y0, x1, y1] with x1 > x0 and y1 > y0.")
        if d.box is not None:
            raise InputError(f"{where}: object {obj} already has a box on frame {frame}; SAM2 takes one box per object and frame (use another object id).")
        d.box = (x0, y0, x1, y1)

    # 1. the JSON text
    if text is not None and text.strip():
        data = _loads(text.strip(), "prompts")
        if isinstance(data, Mapping):
            data = [data]
        if _is_xy_list(data):
            pts = _parse_points(data, "prompts", scale)
            add_points(draft(points_frame, points_object, "prompts"), pts, [1] * len(pts), "prompts")
            data = []
        if not isinstance(data, list):
            raise InputError(f"prompts must be a JSON list of prompt objects, got {type(data).__name__}. Example: {_EXAMPLE}")
        for n, entry in enumerate(data):
            where = f"prompts[{n}]"
            if not isinstance(entry, Mapping):
                raise InputError(f"{where} must be an object like {{\"frame\": 0, \"object\": 1, \"points\": [[x, y]]}}, got {entry!r}.")
            unknown = sorted(set(entry) - _ENTRY_KEYS)
            if unknown:
                raise InputError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(_ENTRY_KEYS)}.")
            frame = _integer(entry.get("frame", 0), f"{where}.frame")
            obj = _integer(entry.get("object", 1), f"{where}.object")
            d = draft(frame, obj, where)
            if not any(k in entry for k in ("points", "positive", "negative", "box")):
                raise InputError(f"{where} has no 'points', 'positive', 'negative' or 'box'; give at least one.")
            if "points" in entry:
                pts = _parse_points(entry["points"], f"{where}.points", scale)
                labels_raw = entry.get("labels", [1] * len(pts))
                if not isinstance(labels_raw, (list, tuple)) or len(labels_raw) != len(pts):
                    raise InputError(f"{where}.labels must be a list with one label per point ({len(pts)}), got {labels_raw!r}.")
                labels = [_integer(v, f"{where}.labels[{i}]") for i, v in enumerate(labels_raw)]
                if any(v not in (0, 1) for v in labels):
                    raise InputError(f"{where}.labels must be 1 (subject) or 0 (background), got {labels}.")
                add_points(d, pts, labels, f"{where}.points")
            elif "labels" in entry:
                raise InputError(f"{where} has 'labels' but no 'points'.")
            for key, label in (("positive", 1), ("negative", 0)):
                if key in entry:
                    pts = _parse_points(entry[key], f"{where}.{key}", scale)
                    add_points(d, pts, [label] * len(pts), f"{where}.{key}")
            if "box" in entry:
                set_box(d, entry["box"], f"{where}.box", frame, obj)

    # 2. point-editor strings and a box for (points_frame, points_object)
    for name, label, value in (("positive", 1, positive), ("negative", 0, negative)):
        if value is None or not str(value).strip():
            continue
        data = _loads(str(value).strip(), name)
        pts = _parse_points(data, name, scale)
        if pts:
            add_points(draft(points_frame, points_object, name), pts, [label] * len(pts), name)
    if box is not None:
        set_box(draft(points_frame, points_object, "box"), list(box), "box", points_frame, points_object)

    # 3. a keyframe mask
    if mask is not None:
        d = draft(mask_frame, mask_object, "mask")
        d.mask = _mask_prompt(mask, "mask")

    prompts = _finish(drafts)
    validate_prompts(prompts, num_frames, height, width)
    return prompts


def _mask_prompt(mask: Any, where: str) -> torch.Tensor:
    m = torch.as_tensor(mask)
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise InputError(f"{where} must be one (H, W) mask, got shape {tuple(m.shape)}; pick one frame of a MASK batch.")
    if m.dtype != torch.bool:
        m = m.float()
        if not torch.isfinite(m).all():
            raise InputError(f"{where} contains NaN or infinite values.")
        m = m > 0.5
    return m.cpu()


def _finish(drafts: Mapping[tuple[int, int], _Draft]) -> list[Prompt]:
    prompts = []
    for (frame, obj), d in sorted(drafts.items()):
        if d.mask is not None and (d.points or d.box is not None):
            raise InputError(
                f"object {obj} on frame {frame} has both a mask and points/box ({d.where}); SAM2 takes one or the "
                "other per object and frame: drop one, or prompt the other on another frame or object."
            )
        prompts.append(
            Prompt(frame=frame, object=obj, points=tuple(d.points), labels=tuple(d.labels), box=d.box, mask=d.mask)
        )
    if not prompts:
        raise InputError(
            "no prompts: give at least one point, box or mask (prompts JSON, positive/negative points, box or mask). "
            f"Example: {_EXAMPLE}"
        )
    return prompts


def validate_prompts(prompts: Sequence[Prompt], num_frames: int, height: int, width: int) -> None:
    """Check prompts (e.g. built by hand) against a clip; raises :class:`InputError`."""
    if not prompts:
        raise InputError(f"no prompts: give at least one point, box or mask. Example: {_EXAMPLE}")
    seen: set[tuple[int, int]] = set()
    for p in prompts:
        where = f"prompt for object {p.object} on frame {p.frame}"
        _check_frame(p.frame, num_frames, where)
        _check_object(p.object, where)
        if (p.frame, p.object) in seen:
            raise InputError(f"{where} is given twice; merge them into one Prompt.")
        seen.add((p.frame, p.object))
        if len(p.points) != len(p.labels):
            raise InputError(f"{where}: {len(p.points)} points but {len(p.labels)} labels.")
        for i, (x, y) in enumerate(p.points):
            _check_xy(x, y, width, height, f"{where}, point {i}")
        if any(v not in (0, 1) for v in p.labels):
            raise InputError(f"{where}: labels must be 1 (subject) or 0 (background), got {list(p.labels)}.")
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            _check_xy(x0, y0, width, height, f"{where}, box")
            _check_xy(x1, y1, width, height, f"{where}, box")
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"{where}: box {list(p.box)} is empty; x1 > x0 and y1 > y0 are needed.")
        if p.mask is not None:
            if p.points or p.box is not None:
                raise InputError(f"{where} has both a mask and points/box; SAM2 takes one or the other.")
            if p.mask.dim() != 2:
                raise InputError(f"{where}: the mask must be (H, W), got shape {tuple(p.mask.shape)}.")
            mh, mw = p.mask.shape
            if abs(mh / mw - height / width) > 0.02 * height / width:
                log.warning("%s: the mask is %dx%d but frames are %dx%d; it is stretched to the frame.", where, mw, mh, width, height)
            if not bool(p.mask.any()):
                log.warning("%s: the mask is empty, which tells SAM2 the object is absent on that frame.", where)
        elif not p.points and p.box is None:
            raise InputError(f"{where} has no points, box or mask.")
    by_object: dict[int, bool] = {}
    for p in prompts:
        positive = p.mask is not None or p.box is not None or any(v == 1 for v in p.labels)
        by_object[p.object] = by_object.get(p.object, False) or positive
    for obj, ok in by_object.items():
        if not ok:
            log.warning("object %d has only background (label 0) points; SAM2 will probably find nothing for it.", obj)


def prompt_objects(prompts: Sequence[Prompt]) -> list[int]:
    """The object ids the prompts define, sorted."""
    return sorted({p.object for p in prompts})


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _frame_at(frames: Any, i: int) -> torch.Tensor:
    frame = torch.as_tensor(frames[i])
    if frame.dim() != 3 or frame.shape[-1] != 3:
        raise InputError(f"frames[{i}] has shape {tuple(frame.shape)}; frames must be (H, W, 3) RGB.")
    if frame.dtype == torch.uint8:
        frame = frame.float() / 255.0
    elif not frame.is_floating_point():
        raise InputError(f"frames[{i}] has dtype {frame.dtype}; give float frames in [0, 1] (or uint8).")
    return frame


def _clip_size(frames: Any) -> tuple[int, int, int]:
    try:
        num_frames = len(frames)
    except TypeError as exc:
        raise InputError("frames must be a (T, H, W, 3) tensor/array or a sequence of (H, W, 3) frames.") from exc
    if num_frames < 1:
        raise InputError("frames is empty; give at least one frame.")
    first = _frame_at(frames, 0)
    return num_frames, int(first.shape[0]), int(first.shape[1])


class ModelFrames(Sequence):
    """The clip as SAM2's model input, computed frame by frame on demand.

    ``self[i]`` is frame ``i`` resized (bicubic, antialiased; SAM2 stretches to a square) to
    ``image_size x image_size``, normalised with SAM2's mean/std, as a ``(3, S, S)`` float32
    tensor on ``device``. Nothing is precomputed, so a long clip costs no extra memory.
    """

    def __init__(self, frames: Any, num_frames: int, height: int, width: int, image_size: int, device: torch.device):
        self.frames = frames
        self.num_frames = num_frames
        self.size = (height, width)
        self.image_size = int(image_size)
        self.device = device
        self.mean = torch.tensor(SAM2_MEAN, dtype=torch.float32, device=device)[:, None, None]
        self.std = torch.tensor(SAM2_STD, dtype=torch.float32, device=device)[:, None, None]

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        frame = _frame_at(self.frames, i)
        if tuple(frame.shape[:2]) != self.size:
            raise InputError(f"frames[{i}] is {frame.shape[1]}x{frame.shape[0]} but frame 0 is {self.size[1]}x{self.size[0]}; all frames must have one size.")
        x = frame.to(self.device, torch.float32, non_blocking=True).permute(2, 0, 1)[None]  # (1, 3, H, W)
        s = self.image_size
        x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)
        return (x[0] - self.mean) / self.std  # (3, S, S)


# --------------------------------------------------------------------------------------------
# Tracking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackStep:
    """One tracked frame: ``logits`` is ``(num_objects, H, W)`` float32 at the source
    resolution on the compute device, objects in the order of ``object_ids``."""

    frame: int
    object_ids: tuple[int, ...]
    logits: torch.Tensor
    reverse: bool


def _memory_window(predictor: Any) -> int:
    """How many frames behind the current one SAM2 may still read memories or pointers from."""
    stride = max(1, int(getattr(predictor, "memory_temporal_stride_for_eval", 1)))
    return int(predictor.num_maskmem) * stride + int(getattr(predictor, "max_obj_ptrs_in_encoder", 16)) + 1


def _prune(state: dict[str, Any], keep: Callable[[int], bool]) -> None:
    for obj_out in state["output_dict_per_obj"].values():
        stored = obj_out["non_cond_frame_outputs"]
        for f in [f for f in stored if not keep(f)]:
            del stored[f]


def _add_prompt(predictor: Any, state: dict[str, Any], p: Prompt) -> None:
    if p.mask is not None:
        predictor.add_new_mask(state, frame_idx=p.frame, obj_id=p.object, mask=p.mask)
        return
    points = torch.tensor(p.points, dtype=torch.float32).reshape(-1, 2) if p.points else None
    labels = torch.tensor(p.labels, dtype=torch.int32) if p.points else None
    box = torch.tensor(p.box, dtype=torch.float32) if p.box is not None else None
    predictor.add_new_points_or_box(
        state, frame_idx=p.frame, obj_id=p.object, points=points, labels=labels, box=box, normalize_coords=True
    )


def iter_track(
    predictor: Any,
    frames: Any,
    prompts: Sequence[Prompt] | str,
    *,
    dtype: torch.dtype | None = None,
    offload_to_cpu: bool = False,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    prune_memory: bool = True,
) -> Iterator[TrackStep]:
    """Track the prompted objects through the clip, yielding each frame's logits once.

    Order: forward from the earliest prompted frame ``k`` to the last frame, then backward from
    ``k`` to frame 0 (``TrackStep.reverse``); frame ``k`` is yielded by the backward pass when
    ``k > 0``. Prompted frames keep their prompt's mask.

    predictor: a model from :func:`load_sam2` (on any device; tracking runs where it is).
    frames: ``(T, H, W, 3)`` float in [0, 1] (tensor, array, or a sequence of ``(H, W, 3)``).
    prompts: from :func:`parse_prompts`, or the prompt JSON text itself.
    dtype: compute dtype on CUDA (autocast); None = the one chosen at load. CPU runs float32.
    offload_to_cpu: keep SAM2's per-frame state on the CPU (frames are never copied to the
        device as a whole anyway; each is moved when the model needs it).
    progress: ``progress(done, total)`` after each frame (total = T).
    should_cancel: checked before each frame; True raises :class:`Cancelled`.
    prune_memory: drop stored memories the model can no longer read (bounded memory on long
        clips, same results); False keeps everything as SAM2's demo does.
    """
    ext = require_sam2()
    if not isinstance(predictor, ext.VideoMaMaSAM2Predictor):
        raise InputError(
            f"predictor is a {type(predictor).__name__}; load the SAM2 checkpoint with videomama.track.load_sam2."
        )
    num_frames, height, width = _clip_size(frames)
    if isinstance(prompts, str):
        prompts = parse_prompts(prompts, num_frames, height, width)
    validate_prompts(prompts, num_frames, height, width)

    device = predictor.device
    dtype = _resolve_dtype(device, dtype if dtype is not None else getattr(predictor, "videomama_dtype", None))
    autocast = device.type == "cuda" and dtype != torch.float32
    if device.type != "cuda":
        dtype = torch.float32
    amp = (lambda: torch.autocast("cuda", dtype=dtype)) if autocast else nullcontext
    # SAM2 keeps memories in bf16; without autocast (CPU, or fp32 on CUDA) keep them in fp32.
    memory_dtype = None if autocast else torch.float32
    storage = torch.device("cpu") if offload_to_cpu else device

    configured = int(getattr(predictor, "videomama_fill_hole_area", 0))
    use_fill = configured > 0 and device.type == "cuda" and sam2_cuda_extension_available()
    predictor.fill_hole_area = configured if use_fill else 0
    if configured > 0 and device.type == "cuda" and not use_fill:
        log.info("sam2._C (optional CUDA extension) is not built: SAM2's filling of tiny mask holes is skipped.")

    images = ModelFrames(frames, num_frames, height, width, predictor.image_size, device)
    state = ext.new_inference_state(images, height, width, device, storage, memory_dtype)
    window = _memory_window(predictor)

    def check_cancel(where: str) -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"SAM2 tracking cancelled {where}.")

    t0 = time.perf_counter()
    log.info(
        "tracking %d object(s) through %d frames (%dx%d) with %s on %s (%s%s)",
        len(prompt_objects(prompts)), num_frames, width, height,
        getattr(getattr(predictor, "videomama_info", None), "name", "SAM2"), device,
        str(dtype).replace("torch.", ""), ", state on CPU" if offload_to_cpu else "",
    )
    for p in sorted(prompts, key=lambda q: (q.object, q.frame)):  # object ids come out ascending
        check_cancel(f"while adding the prompt on frame {p.frame}")
        with amp():
            _add_prompt(predictor, state, p)

    start = min(p.frame for p in prompts)
    done = 0
    for reverse in (False, True):
        if reverse and start == 0:
            break
        gen = predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse)
        try:
            while True:
                check_cancel(f"after {done} of {num_frames} frames")
                with amp():
                    item = next(gen, None)
                if item is None:
                    break
                frame_idx, obj_ids, video_res_masks = item
                if prune_memory:
                    if reverse:
                        _prune(state, lambda j, f=frame_idx: j <= f + window)
                    else:
                        _prune(state, lambda j, f=frame_idx: j >= f - window or j <= start + window)
                if frame_idx == start and not reverse and start > 0:
                    # The backward pass starts on this frame again and, for objects not prompted
                    # here, recomputes it with the memories of the frames after it: yield that.
                    continue
                done += 1
                yield TrackStep(
                    frame=int(frame_idx),
                    object_ids=tuple(int(o) for o in obj_ids),
                    logits=video_res_masks[:, 0].float(),
                    reverse=reverse,
                )
                if progress is not None:
                    progress(done, num_frames)
        finally:
            gen.close()
    elapsed = time.perf_counter() - t0
    log.info("tracked %d frames in %.1f s (%.2f frames/s)", done, elapsed, done / max(elapsed, 1e-9))


def track(
    predictor: Any,
    frames: Any,
    prompts: Sequence[Prompt] | str,
    *,
    output: Output = "binary",
    objects: str | int = "union",
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    offload_to_cpu: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Masks of the prompted subject(s) on every frame: ``(T, H, W)`` float32 on the CPU, 1 = subject.

    output: "binary" (logits > 0, exactly 0 or 1) or "soft" (sigmoid of the logits; what a
        SAM2-Matte checkpoint is made for).
    objects: "union" (elementwise max over all prompted objects) or one object id (int, or
        its decimal string) to return that object alone.
    Other arguments: see :func:`iter_track`.
    """
    if output not in ("binary", "soft"):
        raise InputError(f"output must be 'binary' or 'soft', got {output!r}.")
    num_frames, height, width = _clip_size(frames)
    if isinstance(prompts, str):
        prompts = parse_prompts(prompts, num_frames, height, width)
    validate_prompts(prompts, num_frames, height, width)
    known = prompt_objects(prompts)
    selected: int | None
    if isinstance(objects, str) and objects.strip().lower() == "union":
        selected = None
    else:
        try:
            selected = _integer(int(objects.strip()) if isinstance(objects, str) else objects, "objects")
        except (ValueError, InputError) as exc:
            raise InputError(f"objects must be 'union' or an object id, got {objects!r}.") from exc
        if selected not in known:
            raise InputError(
                f"object {selected} was selected for output, but the prompts only define object(s) "
                f"{', '.join(map(str, known))}; pick one of those or 'union'."
            )

    masks = torch.zeros(num_frames, height, width, dtype=torch.float32)
    for step in iter_track(
        predictor, frames, prompts, dtype=dtype, offload_to_cpu=offload_to_cpu,
        progress=progress, should_cancel=should_cancel,
    ):
        if selected is None:
            logits = step.logits.max(dim=0).values
        else:
            logits = step.logits[step.object_ids.index(selected)]
        result = (logits > 0).float() if output == "binary" else torch.sigmoid(logits)
        masks[step.frame] = result.cpu()
    return masks
