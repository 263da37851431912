"""ComfyUI adapters of the VideoMaMa library (ComfyUI's V3 node schema, ``comfy_api.latest``).

Nothing is imported here: the node modules need ComfyUI's ``comfy_api`` and are imported by
:mod:`.extension` when ComfyUI calls the pack's ``comfy_entrypoint``. :mod:`.host` (model
folders, model management, progress) imports ComfyUI lazily and works anywhere.

This package must only be imported relatively (``from .nodes import ...``): inside ComfyUI,
``import nodes`` is ComfyUI's own nodes.py.
"""
