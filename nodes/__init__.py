"""ComfyUI adapters of the VideoMaMa library (V1 node API).

Each submodule listed in ``NODE_MODULES`` exposes ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS``; they are merged here. A submodule that fails to import (e.g.
an optional dependency is missing) is logged and skipped, so the other nodes still load.
To add a node module, put it in this package and add its name to ``NODE_MODULES``.

This package must only be imported relatively (``from .nodes import ...``): inside ComfyUI,
``import nodes`` is ComfyUI's own nodes.py.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

NODE_MODULES = ("videomama_nodes", "composite_nodes", "sam2_nodes")
REQUIRED = ("videomama_nodes",)  # without these the pack is useless: let ComfyUI report IMPORT FAILED

NODE_CLASS_MAPPINGS: dict[str, Any] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
IMPORT_ERRORS: dict[str, str] = {}


def _load() -> None:
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}" and name not in REQUIRED:
                continue  # that node module is not part of this checkout
            if name in REQUIRED:
                raise
            IMPORT_ERRORS[name] = f"{type(exc).__name__}: {exc}"
            log.warning("ComfyUI-VideoMaMa: the nodes of %s are unavailable (%s)", name, exc, exc_info=True)
            continue
        except Exception as exc:
            if name in REQUIRED:
                raise
            IMPORT_ERRORS[name] = f"{type(exc).__name__}: {exc}"
            log.warning("ComfyUI-VideoMaMa: the nodes of %s are unavailable (%s)", name, exc, exc_info=True)
            continue
        NODE_CLASS_MAPPINGS.update(getattr(module, "NODE_CLASS_MAPPINGS", {}))
        NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}))


_load()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "NODE_MODULES", "IMPORT_ERRORS"]
