"""Build the example workflows in ``workflows/`` (checks: workflow_checks.py).

Each example exists twice, generated from one description (``workflow_examples.py``) so they
cannot drift apart:

- ``workflows/<name>.json``: the canvas format (drag-and-drop, and ComfyUI's template browser,
  which lists every top-level ``*.json`` of a pack's ``workflows/`` folder and shows
  ``<name>.jpg`` as its thumbnail);
- ``workflows/api/<name>.api.json``: the API format (POST /prompt), in a subfolder so the
  template browser does not list it.

The tests check the files on disk anyway (hand edits happen) against node schemas in
GET /object_info form: ours from the pack (``our_schemas``), the core ones from
``tests/data/comfyui_core_nodes.json`` (``record_core_nodes.py``) or, in the integration
test, from a live server.

Regenerate after changing a node's inputs or an example:  python tests/workflow_tools.py
(thumbnails then: tests/make_thumbnails.py, which needs ComfyUI and Chromium).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import workflow_geometry as geo

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
CORE_NODES = Path(__file__).resolve().parent / "data" / "comfyui_core_nodes.json"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # drawn by the frontend, never sent to the server
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"  # the colours of ComfyUI's own note nodes
GROUP_COLORS = {"input": "#3f789e", "model": "#8A8", "matte": "#b06634", "output": "#a1309b"}

# Core nodes recorded in tests/data (record_core_nodes.py): those the examples use, and those the
# README's mask conventions send users to (InvertMask, JoinImageWithAlpha, ...).
CORE_NODES_RECORDED = (
    "CreateVideo", "GetVideoComponents", "ImageCompositeMasked", "ImageOnlyCheckpointLoader", "ImageToMask",
    "InvertMask", "JoinImageWithAlpha", "KSampler", "LoadImage", "LoadVideo", "MaskToImage", "PreviewImage",
    "SaveImage", "SaveVideo", "SaveWEBM", "SplitImageWithAlpha", "SVD_img2vid_Conditioning", "VAEDecode",
    "VideoLinearCFGGuidance",
)
# Combos whose options are files on the user's machine (checked only against a live server).
FILE_COMBOS = {("LoadVideo", "file"), ("LoadImage", "image"), ("LoadVideoMaMa", "unet"), ("LoadVideoMaMa", "vae"),
               ("LoadSAM2", "checkpoint"), ("ImageOnlyCheckpointLoader", "ckpt_name")}


# ----------------------------------------------------------------------------------------- schemas
def our_schemas() -> dict[str, dict[str, Any]]:
    """Our node schemas in GET /object_info form, from the pack's V3 node classes run through the
    stand-in host (tests/comfy_standin.py, itself checked against a recording of the real host)."""
    from comfy_standin import our_object_info

    return our_object_info()


def core_schemas() -> dict[str, dict[str, Any]]:
    return json.loads(CORE_NODES.read_text())["nodes"]


def all_schemas() -> dict[str, dict[str, Any]]:
    return {**core_schemas(), **our_schemas()}


def input_spec(schema: dict[str, Any], name: str) -> tuple[Any, dict[str, Any]]:
    for section in ("required", "optional"):
        entry = schema["input"].get(section, {}).get(name)
        if entry is not None:
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            return entry[0], opts
    raise KeyError(name)


def _section_of(schema: dict[str, Any], name: str) -> str:
    return "optional" if name in schema["input"].get("optional", {}) else "required"


def input_kind(type_: Any) -> str:
    """'COMBO' for a list/COMBO, the type name for a widget type, else 'SOCKET'."""
    if isinstance(type_, list) or type_ == "COMBO":
        return "COMBO"
    return type_ if type_ in WIDGET_TYPES else "SOCKET"


def combo_options(type_: Any, opts: dict[str, Any]) -> list[Any]:
    return list(type_) if isinstance(type_, list) else list(opts.get("options", []))


def has_control(name: str, kind: str, opts: dict[str, Any]) -> bool:
    """Whether the frontend adds a control_after_generate combo after this widget: the option
    when given (True or False), else by name (seed / noise_seed), as frontend 1.27 decides."""
    if kind != "INT":
        return False
    flag = opts.get("control_after_generate")
    return bool(flag) if flag is not None else name in ("seed", "noise_seed")


def widget_layout(schema: dict[str, Any]) -> list[tuple[str, int]]:
    """(input name, extra values after it) for every widget, in canvas order.

    A control_after_generate INT is followed by its control value ("fixed", ...); an upload
    combo (image_upload/video_upload) by the upload button's value.
    """
    out = []
    for section in ("required", "optional"):
        for name in schema.get("input_order", {}).get(section, []):
            type_, opts = input_spec(schema, name)
            kind = input_kind(type_)
            if kind == "SOCKET" or opts.get("forceInput"):
                continue
            extra = int(has_control(name, kind, opts) or (kind == "COMBO" and bool(
                opts.get("image_upload") or opts.get("video_upload"))))
            out.append((name, extra))
    return out


def socket_inputs(schema: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(name, type, optional) of inputs drawn as sockets (no widget)."""
    out = []
    for section in ("required", "optional"):
        for name in schema.get("input_order", {}).get(section, []):
            type_, opts = input_spec(schema, name)
            if input_kind(type_) == "SOCKET" or opts.get("forceInput"):
                out.append((name, type_, section == "optional"))
    return out


def canvas_inputs(schema: dict[str, Any]) -> list[str]:
    """Input slot names in the frontend's order: sockets, then one per widget."""
    return [s[0] for s in socket_inputs(schema)] + [w for w, _ in widget_layout(schema)]


# ----------------------------------------------------------------------------------------- building
@dataclass
class _Node:
    id: int
    type: str
    widgets: dict[str, Any]
    links: dict[str, tuple[int, int]]  # input name -> (source node id, output index)
    pos: tuple[int, int]
    size: tuple[int, int]
    title: str | None = None


@dataclass
class Workflow:
    """A workflow description from which both file formats are produced."""

    name: str
    schemas: dict[str, dict[str, Any]]
    nodes: list[_Node] = field(default_factory=list)
    groups: list[tuple[str, str, list[int]]] = field(default_factory=list)  # title, colour key, node ids

    def add(self, type_: str, widgets: dict[str, Any] | None = None, links: dict[str, tuple[int, int]] | None = None,
            pos: tuple[int, int] = (0, 0), size: tuple[int, int] = (320, 120), title: str | None = None) -> int:
        node_id = len(self.nodes) + 1
        self.nodes.append(_Node(node_id, type_, dict(widgets or {}), dict(links or {}), pos, size, title))
        return node_id

    def note(self, text: str, pos: tuple[int, int], size: tuple[int, int], title: str = "Read me") -> int:
        """A note on the canvas (ComfyUI's MarkdownNote): what the workflow needs, where files go."""
        return self.add("MarkdownNote", {"text": text}, pos=pos, size=size, title=title)

    def group(self, title: str, color: str, node_ids: list[int]) -> None:
        self.groups.append((title, color, list(node_ids)))

    # ------------------------------------------------------------------ API format
    def api(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {}
        for n in self.nodes:
            if n.type in FRONTEND_ONLY:
                continue
            inputs: dict[str, Any] = {}
            for name, _extra in widget_layout(self.schemas[n.type]):
                if name not in n.links:
                    inputs[name] = self._widget_value(n, name)
            for name, (src, slot) in n.links.items():
                inputs[name] = [str(src), slot]
            entry: dict[str, Any] = {"class_type": n.type, "inputs": inputs}
            if n.title:
                entry["_meta"] = {"title": n.title}
            prompt[str(n.id)] = entry
        return prompt

    def _widget_value(self, n: _Node, name: str) -> Any:
        if name in n.widgets:
            return n.widgets[name]
        _type, opts = input_spec(self.schemas[n.type], name)
        if "default" not in opts:
            raise ValueError(f"{self.name}: node {n.id} {n.type} needs a value for '{name}' (no default)")
        return opts["default"]

    # ------------------------------------------------------------------ canvas format
    def ui(self) -> dict[str, Any]:
        by_id = {n.id: n for n in self.nodes}
        links: list[list[Any]] = []
        out_links: dict[tuple[int, int], list[int]] = {}
        in_links: dict[tuple[int, str], int] = {}
        for n in self.nodes:
            if n.type in FRONTEND_ONLY:
                continue
            slots = canvas_inputs(self.schemas[n.type])
            for name, (src, slot) in sorted(n.links.items(), key=lambda kv: slots.index(kv[0])):
                link_id = len(links) + 1
                out_type = self.schemas[by_id[src].type]["output"][slot]
                links.append([link_id, src, slot, n.id, slots.index(name), out_type])
                out_links.setdefault((src, slot), []).append(link_id)
                in_links[(n.id, name)] = link_id
        order = {n.id: i for i, n in enumerate(self._topological())}
        nodes = [self._ui_node(n, order[n.id], in_links, out_links) for n in self.nodes]
        boxes = {n.id: geo.node_box(n.pos, n.size) for n in self.nodes}
        groups, group_boxes = [], []
        for i, (title, color, members) in enumerate(self.groups, start=1):
            box = geo.group_box(boxes[m] for m in members)
            group_boxes.append(box)
            groups.append({"id": i, "title": title, "bounding": [box.x, box.y, box.w, box.h],
                           "color": GROUP_COLORS[color], "font_size": 24, "flags": {}})
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-videomama/{self.name}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(links),
            "nodes": nodes,
            "links": links,
            "groups": groups,
            "config": {},
            "extra": {"ds": _fit_view(list(boxes.values()) + group_boxes)},
            "version": 0.4,
        }

    def _ui_node(self, n: _Node, order: int, in_links: dict, out_links: dict) -> dict[str, Any]:
        node: dict[str, Any] = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {},
                                "order": order, "mode": 0}
        if n.type in FRONTEND_ONLY:
            node.update({"inputs": [], "outputs": [], "properties": {}, "widgets_values": [n.widgets["text"]],
                         "color": NOTE_COLOR, "bgcolor": NOTE_BGCOLOR})
        else:
            schema = self.schemas[n.type]
            inputs = []
            for name, type_, optional in socket_inputs(schema):
                entry: dict[str, Any] = {"name": name, "type": type_, "link": in_links.get((n.id, name))}
                if optional:
                    entry["shape"] = 7
                inputs.append(entry)
            for name, _extra in widget_layout(schema):
                type_, _opts = input_spec(schema, name)
                entry = {"name": name, "type": input_kind(type_), "widget": {"name": name},
                         "link": in_links.get((n.id, name))}
                if _section_of(schema, name) == "optional":
                    entry["shape"] = 7
                inputs.append(entry)
            outputs = [{"name": oname, "type": type_, "links": out_links.get((n.id, slot)) or None, "slot_index": slot}
                       for slot, (type_, oname) in enumerate(zip(schema["output"], schema["output_name"]))]
            values: list[Any] = []
            for name, extra in widget_layout(schema):
                values.append(self._widget_value(n, name))
                if extra:  # a seed's control stays "fixed" so the example repeats; an upload button's value
                    values.append("fixed" if input_kind(input_spec(schema, name)[0]) == "INT" else "image")
            node.update({"inputs": inputs, "outputs": outputs, "properties": {"Node name for S&R": n.type},
                         "widgets_values": values})
        if n.title:
            node["title"] = n.title
        return node

    def _topological(self) -> list[_Node]:
        done: list[_Node] = []
        seen: set[int] = set()
        by_id = {n.id: n for n in self.nodes}

        def visit(n: _Node) -> None:
            if n.id in seen:
                return
            seen.add(n.id)
            for src, _slot in n.links.values():
                visit(by_id[src])
            done.append(n)

        for n in self.nodes:
            visit(n)
        return done


def _fit_view(boxes: list[geo.Box], width: int = 1500, height: int = 760) -> dict[str, Any]:
    """The initial view (extra.ds): the whole workflow if it fits a 1500x760 canvas area at a zoom
    where the frontend still draws text (>= 0.65), else its left part (the note first)."""
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    x1, y1 = max(b.x + b.w for b in boxes), max(b.y + b.h for b in boxes)
    scale = round(min(1.0, max(0.65, min(width / (x1 - x0), height / (y1 - y0)))), 3)
    left, top = 30, 30  # from the canvas's corner (the canvas starts right of the sidebar, below the top bar)
    return {"scale": scale, "offset": [round(left / scale - x0), round(top / scale - y0)]}


# ----------------------------------------------------------------------------------------- files
def api_path(name: str) -> Path:
    return API_DIR / f"{name}.api.json"


def thumbnail_path(name: str) -> Path:
    return WORKFLOWS / f"{name}.jpg"


def workflow_files() -> list[tuple[str, Path, Path]]:
    """(name, canvas file, API file) of every example: the canvas files ComfyUI lists as templates."""
    return [(p.stem, p, api_path(p.stem)) for p in sorted(WORKFLOWS.glob("*.json"))]


def canvas_digest(ui_path: Path) -> str:
    """What a thumbnail records of the canvas file it was rendered from (its JPEG comment)."""
    return "videomama-canvas-sha256:" + hashlib.sha256(ui_path.read_bytes()).hexdigest()


def main() -> None:
    from workflow_examples import build

    schemas = all_schemas()
    API_DIR.mkdir(parents=True, exist_ok=True)
    for flow in build(schemas):
        (WORKFLOWS / f"{flow.name}.json").write_text(json.dumps(flow.ui(), indent=1) + "\n")
        api_path(flow.name).write_text(json.dumps(flow.api(), indent=1) + "\n")
        print("wrote", flow.name)


if __name__ == "__main__":
    main()
