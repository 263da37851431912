"""SAM2 model configs: the sam2 package's built-in ones, or one given by the caller / embedded in a file.

A config from a weight file is data we do not trust: only sam2's own classes may be named as
``_target_`` and interpolations are refused, so a file cannot make us import or call anything
else. Configs are read with OmegaConf and built with ``hydra.utils.instantiate`` only (no
``compose``), so no hydra global state is touched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .available import MissingDependencyError, require_sam2

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .predictor import VideoMaMaSAM2Predictor

__all__ = ["as_model_config", "build_sam2_predictor", "builtin_config_name", "sam2_model_config"]

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


def as_model_config(config: Any, source: str) -> Any:
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

    cfg = as_model_config(model_config, "caller")
    if postprocessing:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(_POSTPROCESSING))
    return instantiate(cfg, _target_=ext.VideoMaMaSAM2Predictor, _recursive_=True)

