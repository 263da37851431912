"""The pack's V3 extension: the node list ComfyUI registers.

Every node module is imported here unconditionally: a module that fails to import is a bug
that ComfyUI must show as IMPORT FAILED, not a node that silently goes missing. Optional
dependencies (``sam2``) are imported only when a node runs, so their absence never stops the
pack from loading.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import host
from .composite_nodes import AlphaComposite
from .sam2_nodes import LoadSAM2, SAM2MatteTrack
from .save_nodes import SaveMatteSequence
from .videomama_nodes import LoadVideoMaMa, MaskToMatte

NODES: tuple[type[io.ComfyNode], ...] = (LoadVideoMaMa, MaskToMatte, LoadSAM2, SAM2MatteTrack, AlphaComposite,
                                        SaveMatteSequence)


class VideoMaMaExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


def extension() -> VideoMaMaExtension:
    """Register the model folders (models/videomama, models/sam2) and return the extension.

    Called before ComfyUI reads the node schemas, whose model lists need those folders.
    """
    host.register_model_folders()
    return VideoMaMaExtension()
