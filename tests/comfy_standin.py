"""The pack inside the stand-in host (tests/fake_comfy), handled the way ComfyUI handles it.

What ComfyUI does and this module imitates for tests without ComfyUI:

* loading (ComfyUI's ``nodes.load_custom_node``): the pack's ``__init__.py`` is imported as a
  package named by its path; having no ``NODE_CLASS_MAPPINGS``, its ``comfy_entrypoint()`` is
  awaited, then ``get_node_list()``; each class gets ``RELATIVE_PYTHON_MODULE =
  "custom_nodes.<folder>"`` and its schema is read once (``GET_SCHEMA``);
* GET /object_info (ComfyUI's server): ``GET_NODE_INFO_V1()`` of each class, as JSON;
* running a node (ComfyUI's ``execution``): ``EXECUTE_NORMALIZED`` on a clone of the class whose
  attributes cannot be set (V3 nodes have no instance and must keep no state), inside
  ``torch.inference_mode()``.

:func:`our_object_info` gives our nodes' /object_info without ComfyUI (for workflow checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).resolve().parent / "fake_comfy"
PACK_FOLDER = "ComfyUI-VideoMaMa"  # the folder name under custom_nodes/ (the README's install name)
HOST_MODULES = ("folder_paths", "comfy", "comfy_api")


def _is_host_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in HOST_MODULES)


@contextlib.contextmanager
def standin_host() -> Iterator[None]:
    """The stand-in's folder_paths / comfy / comfy_api importable; a real ComfyUI imported
    earlier in this process is set aside and put back afterwards."""
    stashed = {name: sys.modules.pop(name) for name in list(sys.modules) if _is_host_module(name)}
    sys.path.insert(0, str(FAKE))
    try:
        yield
    finally:
        sys.path.remove(str(FAKE))
        for name in [n for n in sys.modules if _is_host_module(n)]:
            del sys.modules[name]
        sys.modules.update(stashed)


def import_pack(module_name: str, root: Path = ROOT) -> Any:
    """Import the pack's __init__.py as a package, as ComfyUI does (every import inside is relative)."""
    spec = importlib.util.spec_from_file_location(module_name, root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def forget_pack(module_name: str) -> None:
    for name in [n for n in sys.modules if n == module_name or n.startswith(module_name + ".")]:
        del sys.modules[name]


def load_nodes(pack: Any, folder: str = PACK_FOLDER) -> dict[str, type]:
    """What ComfyUI registers from the pack: node id -> class."""
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS"), "a V1 mapping would make ComfyUI skip comfy_entrypoint"

    async def load() -> list[type]:
        extension = await pack.comfy_entrypoint()
        return await extension.get_node_list()

    registered = {}
    for cls in asyncio.run(load()):
        cls.RELATIVE_PYTHON_MODULE = f"custom_nodes.{folder}"
        registered[cls.GET_SCHEMA().node_id] = cls
    return registered


def object_info(nodes: dict[str, type]) -> dict[str, dict[str, Any]]:
    """GET /object_info of these nodes, as the server serialises it."""
    return {node_id: json.loads(json.dumps(cls.GET_NODE_INFO_V1())) for node_id, cls in nodes.items()}


class _Locked(type):
    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"cannot set '{name}' on {cls.__name__}: V3 nodes run on a locked class clone")


def run_node_output(cls: type, **inputs: Any) -> Any:
    """Run a node as ComfyUI's executor does; returns its NodeOutput (outputs and ``ui``)."""
    meta = type(f"Locked{type(cls).__name__}", (_Locked, type(cls)), {})
    clone = meta(f"{cls.__name__}Clone", (cls,), {})
    with torch.inference_mode():
        return clone.EXECUTE_NORMALIZED(**inputs)


def run_node(cls: type, **inputs: Any) -> tuple:
    """Run a node as ComfyUI's executor does; returns its outputs."""
    return tuple(run_node_output(cls, **inputs).args)


def our_object_info() -> dict[str, dict[str, Any]]:
    """/object_info of our nodes from the stand-in host with no model files (placeholder lists)."""
    name = "comfyui_videomama_object_info"
    with standin_host():
        try:
            pack = import_pack(name)
            return object_info(load_nodes(pack))
        finally:
            forget_pack(name)


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where JSON value ``a`` (what we got) first differs from ``b`` (what was expected), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}/{key}: {'missing' if key in b else 'not expected'}"
            found = first_difference(a[key], b[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items, expected {len(b)} ({a!r:.300} vs {b!r:.300})"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: got {a!r:.200}, expected {b!r:.200}"
