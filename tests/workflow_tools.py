"""Build, convert and check the example workflows in ``workflows/``.

Each example exists twice: ``<name>.json`` in the canvas (drag-and-drop) format and
``<name>.api.json`` in the API (POST /prompt) format. Both are generated from one
description here, so they cannot drift apart; the tests check the files on disk anyway
(hand edits happen) against node schemas in GET /object_info form: ours from the node
classes, the core ones from ``tests/data/comfyui_core_nodes.json`` (recorded from ComfyUI
0.3.64) or, in the integration test, from a live server.

Regenerate after changing a node's inputs:  python tests/workflow_tools.py
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
CORE_NODES = Path(__file__).resolve().parent / "data" / "comfyui_core_nodes.json"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


# ----------------------------------------------------------------------------------------- schemas
def schema_from_class(cls: type) -> dict[str, Any]:
    """A V1 node class as GET /object_info describes it (the fields used here)."""
    spec = cls.INPUT_TYPES()
    return {
        "input": json.loads(json.dumps(spec, default=str)),
        "input_order": {k: list(v.keys()) for k, v in spec.items()},
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }


def core_schemas() -> dict[str, dict[str, Any]]:
    return json.loads(CORE_NODES.read_text())["nodes"]


def _input_spec(schema: dict[str, Any], name: str) -> tuple[Any, dict[str, Any]]:
    for section in ("required", "optional"):
        entry = schema["input"].get(section, {}).get(name)
        if entry is not None:
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            return entry[0], opts
    raise KeyError(name)


def input_kind(type_: Any) -> str:
    """'COMBO' for a list/COMBO, the type name for a widget type, else 'SOCKET'."""
    if isinstance(type_, list) or type_ == "COMBO":
        return "COMBO"
    return type_ if type_ in WIDGET_TYPES else "SOCKET"


def combo_options(type_: Any, opts: dict[str, Any]) -> list[Any]:
    return list(type_) if isinstance(type_, list) else list(opts.get("options", []))


def widget_layout(schema: dict[str, Any]) -> list[tuple[str, int]]:
    """(input name, extra values after it) for every widget, in canvas order.

    INTs with control_after_generate, or named seed/noise_seed, are followed by the control
    value ("fixed", ...); upload combos (image_upload/video_upload) by the upload button's value.
    """
    out = []
    for section in ("required", "optional"):
        for name in schema.get("input_order", {}).get(section, []):
            type_, opts = _input_spec(schema, name)
            kind = input_kind(type_)
            if kind == "SOCKET" or opts.get("forceInput"):
                continue
            extra = 0
            if kind == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
                extra = 1
            if kind == "COMBO" and (opts.get("image_upload") or opts.get("video_upload")):
                extra = 1
            out.append((name, extra))
    return out


def socket_inputs(schema: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(name, type, optional) of inputs drawn as sockets (no widget)."""
    out = []
    for section in ("required", "optional"):
        for name in schema.get("input_order", {}).get(section, []):
            type_, opts = _input_spec(schema, name)
            if input_kind(type_) == "SOCKET" or opts.get("forceInput"):
                out.append((name, type_, section == "optional"))
    return out


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
    note: str = ""

    def add(self, type_: str, widgets: dict[str, Any] | None = None, links: dict[str, tuple[int, int]] | None = None,
            pos: tuple[int, int] = (0, 0), size: tuple[int, int] = (320, 120), title: str | None = None) -> int:
        node_id = len(self.nodes) + 1
        self.nodes.append(_Node(node_id, type_, dict(widgets or {}), dict(links or {}), pos, size, title))
        return node_id

    # ------------------------------------------------------------------ API format
    def api(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {}
        for n in self.nodes:
            schema = self.schemas[n.type]
            inputs: dict[str, Any] = {}
            for name, _extra in widget_layout(schema):
                if name in n.links:
                    continue
                inputs[name] = self._widget_value(n, name)
            for name, (src, slot) in n.links.items():
                inputs[name] = [str(src), slot]
            entry = {"class_type": n.type, "inputs": inputs}
            if n.title:
                entry["_meta"] = {"title": n.title}
            prompt[str(n.id)] = entry
        return prompt

    def _widget_value(self, n: _Node, name: str) -> Any:
        if name in n.widgets:
            return n.widgets[name]
        _type, opts = _input_spec(self.schemas[n.type], name)
        if "default" not in opts:
            raise ValueError(f"{self.name}: node {n.id} {n.type} needs a value for '{name}' (no default)")
        return opts["default"]

    # ------------------------------------------------------------------ canvas format
    def ui(self) -> dict[str, Any]:
        links: list[list[Any]] = []
        out_links: dict[tuple[int, int], list[int]] = {}
        in_links: dict[tuple[int, str], int] = {}
        by_id = {n.id: n for n in self.nodes}
        for n in self.nodes:
            for name, (src, slot) in sorted(n.links.items(), key=lambda kv: self._input_index(n, kv[0])):
                link_id = len(links) + 1
                out_type = self.schemas[by_id[src].type]["output"][slot]
                links.append([link_id, src, slot, n.id, self._input_index(n, name), out_type])
                out_links.setdefault((src, slot), []).append(link_id)
                in_links[(n.id, name)] = link_id
        order = {n.id: i for i, n in enumerate(self._topological())}
        nodes = []
        for n in self.nodes:
            schema = self.schemas[n.type]
            inputs = []
            for name, type_, optional in socket_inputs(schema):
                entry: dict[str, Any] = {"name": name, "type": type_, "link": in_links.get((n.id, name))}
                if optional:
                    entry["shape"] = 7
                inputs.append(entry)
            for name, _extra in widget_layout(schema):
                if name in n.links:
                    type_, _opts = _input_spec(schema, name)
                    inputs.append({"name": name, "type": input_kind(type_), "widget": {"name": name},
                                   "link": in_links[(n.id, name)]})
            outputs = []
            for slot, (type_, oname) in enumerate(zip(schema["output"], schema["output_name"])):
                outputs.append({"name": oname, "type": type_, "links": out_links.get((n.id, slot)) or None,
                                "slot_index": slot})
            widgets_values: list[Any] = []
            for name, extra in widget_layout(schema):
                widgets_values.append(self._widget_value(n, name))
                if extra:
                    kind = input_kind(_input_spec(schema, name)[0])
                    widgets_values.append("fixed" if kind == "INT" else ("image"))
            node = {
                "id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {},
                "order": order[n.id], "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": n.type}, "widgets_values": widgets_values,
            }
            if n.title:
                node["title"] = n.title
            nodes.append(node)
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-videomama/{self.name}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(links),
            "nodes": nodes,
            "links": links,
            "groups": [],
            "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [40, 40]}, "videomama_note": self.note},
            "version": 0.4,
        }

    def _input_index(self, n: _Node, name: str) -> int:
        """Slot index of input ``name`` on the canvas: sockets first, then linked widgets."""
        schema = self.schemas[n.type]
        names = [s[0] for s in socket_inputs(schema)] + [w for w, _ in widget_layout(schema) if w in n.links]
        return names.index(name)

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


# ----------------------------------------------------------------------------------------- conversion / checks
def api_from_ui(ui: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The API prompt a canvas workflow queues as (what the frontend's graphToPrompt does for these graphs)."""
    links = {link[0]: link for link in ui["links"]}
    prompt: dict[str, Any] = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) in (2, 4):
            continue
        schema = schemas[node["type"]]
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        k = 0
        for name, extra in widget_layout(schema):
            if k >= len(values):
                raise ValueError(f"node {node['id']} {node['type']}: widgets_values too short at '{name}'")
            inputs[name] = values[k]
            k += 1 + extra
        if k != len(values):
            raise ValueError(f"node {node['id']} {node['type']}: {len(values)} widgets_values, layout needs {k}")
        for inp in node.get("inputs") or []:
            if inp.get("link") is not None:
                link = links[inp["link"]]
                inputs[inp["name"]] = [str(link[1]), link[2]]
        entry = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    return prompt


def check_ui(ui: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[str]:
    """Structural problems of a canvas workflow (empty list: fine)."""
    problems = []
    for key in ("last_node_id", "last_link_id", "nodes", "links", "version"):
        if key not in ui:
            problems.append(f"missing top-level '{key}'")
    nodes = {n["id"]: n for n in ui.get("nodes", [])}
    for link in ui.get("links", []):
        link_id, src, slot, dst, dslot, type_ = link
        if src not in nodes or dst not in nodes:
            problems.append(f"link {link_id} joins unknown nodes")
            continue
        out = nodes[src]["outputs"][slot]
        if link_id not in (out.get("links") or []):
            problems.append(f"link {link_id} not listed on node {src} output {slot}")
        if out["type"] != type_:
            problems.append(f"link {link_id} type {type_} != output type {out['type']}")
        inp = nodes[dst]["inputs"][dslot]
        if inp.get("link") != link_id:
            problems.append(f"link {link_id} not the link of node {dst} input {dslot} ({inp['name']})")
    for node in ui.get("nodes", []):
        if node["type"] not in schemas:
            problems.append(f"node {node['id']}: unknown type {node['type']}")
            continue
        schema = schemas[node["type"]]
        if [o["type"] for o in node.get("outputs", [])] != list(schema["output"]):
            problems.append(f"node {node['id']} {node['type']}: outputs differ from the schema")
        for inp in node.get("inputs", []):
            try:
                type_, _ = _input_spec(schema, inp["name"])
            except KeyError:
                problems.append(f"node {node['id']} {node['type']}: unknown input '{inp['name']}'")
                continue
            want = type_ if input_kind(type_) == "SOCKET" else input_kind(type_)
            if inp["type"] != want and not (want == "COMBO" and isinstance(type_, list)):
                problems.append(f"node {node['id']} input {inp['name']}: type {inp['type']} != {want}")
    try:
        api_from_ui(ui, schemas)
    except (ValueError, KeyError) as exc:
        problems.append(str(exc))
    return problems


# Combos whose options are files on the user's machine (checked only against a live server).
FILE_COMBOS = {("LoadVideo", "file"), ("LoadImage", "image"), ("LoadVideoMaMa", "unet"), ("LoadVideoMaMa", "vae"),
               ("LoadSAM2", "checkpoint")}


def check_api(api: dict[str, Any], schemas: dict[str, dict[str, Any]], file_combos: bool = False) -> list[str]:
    """Problems ComfyUI's validation would report for an API prompt (types, required inputs,
    ranges, combo membership; file lists only if ``file_combos``)."""
    problems = []
    for node_id, entry in api.items():
        type_name = entry["class_type"]
        if type_name not in schemas:
            problems.append(f"{node_id}: unknown node type {type_name}")
            continue
        schema = schemas[type_name]
        for name in schema.get("input_order", {}).get("required", []):
            if name not in entry["inputs"]:
                problems.append(f"{node_id} {type_name}: required input '{name}' missing")
        for name, value in entry["inputs"].items():
            try:
                type_, opts = _input_spec(schema, name)
            except KeyError:
                problems.append(f"{node_id} {type_name}: unknown input '{name}'")
                continue
            kind = input_kind(type_)
            if isinstance(value, list):
                src, slot = value
                if src not in api:
                    problems.append(f"{node_id} {type_name}.{name}: links to missing node {src}")
                    continue
                out_type = schemas[api[src]["class_type"]]["output"][slot]
                want = type_ if kind == "SOCKET" else kind
                if out_type != want:
                    problems.append(f"{node_id} {type_name}.{name}: gets {out_type}, wants {want}")
                continue
            if kind == "SOCKET":
                problems.append(f"{node_id} {type_name}.{name}: a {type_} input needs a link, got {value!r}")
            elif kind in ("INT", "FLOAT"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "INT" and not isinstance(value, int)):
                    problems.append(f"{node_id} {type_name}.{name}: {value!r} is not {kind}")
                elif ("min" in opts and value < opts["min"]) or ("max" in opts and value > opts["max"]):
                    problems.append(f"{node_id} {type_name}.{name}: {value} outside {opts.get('min')}..{opts.get('max')}")
            elif kind == "BOOLEAN" and not isinstance(value, bool):
                problems.append(f"{node_id} {type_name}.{name}: {value!r} is not a boolean")
            elif kind == "STRING" and not isinstance(value, str):
                problems.append(f"{node_id} {type_name}.{name}: {value!r} is not a string")
            elif kind == "COMBO" and (file_combos or (type_name, name) not in FILE_COMBOS):
                options = combo_options(type_, opts)
                if value not in options:
                    problems.append(f"{node_id} {type_name}.{name}: {value!r} not in {options[:6]}")
    return problems


def workflow_files() -> list[tuple[str, Path, Path]]:
    """(name, canvas file, API file) of every example in workflows/."""
    out = []
    for ui_path in sorted(WORKFLOWS.glob("*.json")):
        if ui_path.name.endswith(".api.json"):
            continue
        out.append((ui_path.stem, ui_path, ui_path.with_name(ui_path.stem + ".api.json")))
    return out


# ----------------------------------------------------------------------------------------- the examples
# Labels of the weights as LoadVideoMaMa/LoadSAM2 list them when the files are where the README says.
UNET = "videomama/VideoMaMa/unet"
VAE = "checkpoints/svd_xt.safetensors"
SAM2 = "sam2/sam2.1_hiera_tiny.pt"
VIDEO = "clip.mp4"
MASK_VIDEO = "clip_mask.mp4"
MASK_IMAGE = "clip_mask.png"
MATTE = {"resolution": 1024, "window": 16, "overlap": 4, "seed": 42, "mask_threshold": 0.5, "posterior": "sample"}


def build(schemas: dict[str, dict[str, Any]]) -> list[Workflow]:
    """The example workflows."""
    flows = []

    # (a) a video and its mask video -> VideoMaMa -> preview and RGBA PNGs
    a = Workflow("matte_video_with_mask_video", schemas, note=(
        "Put clip.mp4 and its mask video clip_mask.mp4 (white = subject) into ComfyUI/input, VideoMaMa's unet "
        "folder into models/videomama/VideoMaMa/unet and svd_xt.safetensors into models/checkpoints."))
    v = a.add("LoadVideo", {"file": VIDEO}, pos=(0, 0), size=(300, 330), title="Load video")
    mv = a.add("LoadVideo", {"file": MASK_VIDEO}, pos=(0, 380), size=(300, 330), title="Load mask video")
    comp = a.add("GetVideoComponents", links={"video": (v, 0)}, pos=(340, 0), size=(220, 70))
    mcomp = a.add("GetVideoComponents", links={"video": (mv, 0)}, pos=(340, 380), size=(220, 70))
    to_mask = a.add("ImageToMask", {"channel": "red"}, {"image": (mcomp, 0)}, pos=(600, 380), size=(220, 60))
    loader = a.add("LoadVideoMaMa", {"unet": UNET, "vae": VAE, "precision": "auto"}, pos=(340, 150), size=(360, 110))
    matte = a.add("MaskToMatte", MATTE, {"images": (comp, 0), "masks": (to_mask, 0), "model": (loader, 0)},
                  pos=(860, 0), size=(320, 260))
    a.add("PreviewImage", links={"images": (matte, 2)}, pos=(1220, 0), size=(420, 320), title="Preview (checkerboard)")
    a.add("SaveImage", {"filename_prefix": "videomama/rgba"}, {"images": (matte, 1)}, pos=(1220, 360), size=(420, 320),
          title="Save RGBA PNGs")
    flows.append(a)

    # (c) core video chaining, no weights needed: one mask image for every frame, weight-free refiner
    c = Workflow("matte_video_core_nodes", schemas, note=(
        "Runs without any download (weight-free refiner). Connect a LoadVideoMaMa to MaskToMatte's model input for "
        "VideoMaMa quality. clip.mp4 and clip_mask.png (white = subject, used for every frame) go into ComfyUI/input."))
    v = c.add("LoadVideo", {"file": VIDEO}, pos=(0, 0), size=(300, 330))
    comp = c.add("GetVideoComponents", links={"video": (v, 0)}, pos=(340, 0), size=(220, 70))
    img = c.add("LoadImage", {"image": MASK_IMAGE}, pos=(0, 380), size=(300, 330), title="Load mask image")
    to_mask = c.add("ImageToMask", {"channel": "red"}, {"image": (img, 0)}, pos=(340, 380), size=(220, 60))
    matte = c.add("MaskToMatte", MATTE, {"images": (comp, 0), "masks": (to_mask, 0)}, pos=(600, 0), size=(320, 260))
    as_image = c.add("MaskToImage", links={"mask": (matte, 0)}, pos=(960, 0), size=(220, 30))
    matte_video = c.add("CreateVideo", {"fps": 30.0}, {"images": (as_image, 0), "fps": (comp, 2)}, pos=(1220, 0),
                        size=(270, 80), title="Matte video")
    c.add("SaveVideo", {"filename_prefix": "videomama/matte", "format": "auto", "codec": "auto"},
          {"video": (matte_video, 0)}, pos=(1530, 0), size=(420, 360))
    preview_video = c.add("CreateVideo", {"fps": 30.0}, {"images": (matte, 2), "fps": (comp, 2), "audio": (comp, 1)},
                          pos=(1220, 420), size=(270, 80), title="Checkerboard preview video")
    c.add("SaveVideo", {"filename_prefix": "videomama/preview", "format": "auto", "codec": "auto"},
          {"video": (preview_video, 0)}, pos=(1530, 420), size=(420, 360))
    flows.append(c)

    # (b) SAM2 tracking -> VideoMaMa -> composite on a new background
    b = Workflow("sam2_track_matte_composite", schemas, note=(
        "Click-free example: edit the prompt JSON (points/boxes in source pixels) of SAM2MatteTrack. Needs "
        "sam2.1_hiera_tiny.pt (or another SAM2/SAM2.1 checkpoint) in models/sam2 and the pip package 'sam2'."))
    v = b.add("LoadVideo", {"file": VIDEO}, pos=(0, 0), size=(300, 330))
    comp = b.add("GetVideoComponents", links={"video": (v, 0)}, pos=(340, 0), size=(220, 70))
    sam = b.add("LoadSAM2", {"checkpoint": SAM2, "precision": "auto"}, pos=(0, 380), size=(320, 90))
    track = b.add("SAM2MatteTrack", {
        "prompts": '[{"frame": 0, "object": 1, "box": [16, 16, 112, 112]}]',
        "output": "binary", "objects": "union", "offload_to_cpu": False, "points_frame": 0, "mask_frame": 0,
    }, {"images": (comp, 0), "sam2_model": (sam, 0)}, pos=(360, 380), size=(360, 300))
    loader = b.add("LoadVideoMaMa", {"unet": UNET, "vae": VAE, "precision": "auto"}, pos=(360, 120), size=(360, 110))
    matte = b.add("MaskToMatte", MATTE, {"images": (comp, 0), "masks": (track, 0), "model": (loader, 0)},
                  pos=(760, 0), size=(320, 260))
    composite = b.add("AlphaComposite", {
        "invert_alpha": False, "background": "color", "color": "#00B140", "fit": "cover",
        "estimate_foreground": True, "rgba_mode": "straight",
    }, {"foreground": (comp, 0), "alpha": (matte, 0)}, pos=(1120, 0), size=(320, 260))
    video = b.add("CreateVideo", {"fps": 30.0}, {"images": (composite, 0), "fps": (comp, 2), "audio": (comp, 1)},
                  pos=(1480, 0), size=(270, 80))
    b.add("SaveVideo", {"filename_prefix": "videomama/composite", "format": "auto", "codec": "auto"},
          {"video": (video, 0)}, pos=(1790, 0), size=(420, 360))
    b.add("SaveImage", {"filename_prefix": "videomama/rgba"}, {"images": (composite, 1)}, pos=(1480, 420),
          size=(420, 320), title="Save RGBA PNGs")
    flows.append(b)
    return flows


def our_schemas() -> dict[str, dict[str, Any]]:
    """Our node schemas, from the pack imported without ComfyUI (placeholder model lists)."""
    import importlib.util

    name = "comfyui_videomama_schemas"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return {k: schema_from_class(v) for k, v in sys.modules[name].NODE_CLASS_MAPPINGS.items()}


def main() -> None:
    schemas = {**core_schemas(), **our_schemas()}
    WORKFLOWS.mkdir(exist_ok=True)
    for flow in build(schemas):
        (WORKFLOWS / f"{flow.name}.json").write_text(json.dumps(flow.ui(), indent=1) + "\n")
        (WORKFLOWS / f"{flow.name}.api.json").write_text(json.dumps(flow.api(), indent=1) + "\n")
        print("wrote", flow.name)


if __name__ == "__main__":
    main()
