"""What every node of the pack declares the same way (ComfyUI's V3 schema, ``comfy_api.latest``).

* ``CATEGORY``: the "Add Node" menu entry of all our nodes.
* ``VideoMaMaModel`` / ``Sam2Model``: the socket types of the loaders' outputs. Their wire
  types are the strings ``VIDEOMAMA_MODEL`` / ``SAM2_MODEL``, so saved workflows and other
  packs keep connecting to them.
* :func:`node_schema`: an ``io.Schema`` with our category and, on hosts that know them
  (``Schema.search_aliases`` came after ComfyUI 0.3.64), search aliases. Display names end in
  "(VideoMaMa)" so searching for the pack finds every node on any host.
* :data:`SEED_CONTROL`: the seed widget's "control after generate" mode. A seed must stay fixed
  unless the user asks (the matte would change on every Run otherwise). Hosts with
  ``io.ControlAfterGenerate`` take "fixed" from the schema; older frontends only accept
  ``True`` (a string makes them drop the node) and default the control to "randomize", so
  ``nodes/web/videomama.js`` sets freshly added nodes to "fixed" there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from comfy_api.latest import io

CATEGORY = "VideoMaMa"
SEED_MAX = 0xFFFFFFFFFFFFFFFF  # as ComfyUI's samplers; the library folds it into 0..2**63-1

VideoMaMaModel = io.Custom("VIDEOMAMA_MODEL")
Sam2Model = io.Custom("SAM2_MODEL")


def seed_control(io_module: Any = io) -> Any:
    """The seed's control-after-generate value: "fixed" where the host's schema can say so, else True."""
    control = getattr(io_module, "ControlAfterGenerate", None)
    return control.fixed if control is not None else True


SEED_CONTROL: Any = seed_control()


def node_schema(node_id: str, display_name: str, description: str, inputs: list, outputs: list,
                search_aliases: tuple[str, ...] = (), output_node: bool = False) -> io.Schema:
    """The schema of one of our nodes; ``search_aliases`` are passed where the host supports them.
    output_node: the node writes files (ComfyUI runs it even when nothing consumes its outputs)."""
    fields = {f.name for f in dataclasses.fields(io.Schema)}
    extra: dict[str, Any] = {"search_aliases": list(search_aliases)} if "search_aliases" in fields else {}
    return io.Schema(node_id=node_id, display_name=display_name, category=CATEGORY, description=description,
                     inputs=inputs, outputs=outputs, is_output_node=output_node, **extra)
