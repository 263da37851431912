"""ComfyUI-VideoMaMa: ComfyUI imports this file as the pack's entry point.

A V3 pack (ComfyUI's ``comfy_api.latest``): ComfyUI calls :func:`comfy_entrypoint`, which
registers the model folders ``models/videomama`` and ``models/sam2`` and returns the
extension listing the nodes. Importing this file does nothing else: no model is loaded, no
GPU is touched, nothing is downloaded or installed, and it imports anywhere (ComfyUI itself is
only needed once the entry point is called).

No ``NODE_CLASS_MAPPINGS`` here: ComfyUI would take that (V1) path instead of the entry point.
Only relative imports: ComfyUI imports the pack as a package by its path, and a plain
``import nodes`` would be ComfyUI's own nodes.py.
"""

WEB_DIRECTORY = "./nodes/web"  # frontend helper: a freshly added MaskToMatte keeps its seed fixed


async def comfy_entrypoint():
    from .nodes.extension import extension

    return extension()
