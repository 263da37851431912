"""ComfyUI-VideoMaMa: ComfyUI imports this file as the pack's entry point.

Registers the nodes (``NODE_CLASS_MAPPINGS``) and the model folders ``models/videomama`` and
``models/sam2``. Importing it is cheap and safe anywhere: no model is loaded, no GPU is
touched, nothing is downloaded or installed. Outside ComfyUI (no ``folder_paths``) the node
classes are still exposed but no host call is made.

Only relative imports here: ComfyUI imports the pack as a package by its path, and a plain
``import nodes`` would be ComfyUI's own nodes.py.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes import host as _host

_host.register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
