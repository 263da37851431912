"""Stand-in for ``comfy_api.latest``: the V3 node API as far as this pack uses it.

``io`` holds the schema classes; :class:`ComfyExtension` is what ``comfy_entrypoint`` returns.
The /object_info this stand-in produces for our nodes is checked against the one recorded
from a real ComfyUI (tests/data/comfyui_host_recording.json, tests/test_comfy_standin.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from . import io


class ComfyExtension(ABC):
    """What a V3 pack's ``comfy_entrypoint()`` returns; ComfyUI awaits ``get_node_list()``."""

    async def on_load(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Called by hosts that support it before the node list is read."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The node classes of the extension."""


__all__ = ["ComfyExtension", "io"]
