"""Checks of the example workflows: what ComfyUI's validation and frontend would find.

- ``api_from_ui``: the API prompt a canvas workflow queues as (the frontend's graphToPrompt for
  these graphs), to compare with the API file;
- ``check_ui`` / ``check_api``: structural problems of a canvas file, and what the server's
  prompt validation would refuse in an API file;
- ``canvas_geometry`` / ``layout_problems``: where frontend 1.27 draws a canvas file (see
  workflow_geometry), and what makes it hard to read.
"""

from __future__ import annotations

from typing import Any

import workflow_geometry as geo
from workflow_tools import (
    FILE_COMBOS,
    FRONTEND_ONLY,
    canvas_inputs,
    combo_options,
    input_kind,
    input_spec,
    socket_inputs,
    widget_layout,
)


def api_from_ui(ui: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The API prompt a canvas workflow queues as (what the frontend's graphToPrompt does for these graphs)."""
    links = {link[0]: link for link in ui["links"]}
    prompt: dict[str, Any] = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) in (2, 4) or node["type"] in FRONTEND_ONLY:
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
        entry: dict[str, Any] = {"class_type": node["type"], "inputs": inputs}
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
        if node["type"] in FRONTEND_ONLY:
            continue
        if node["type"] not in schemas:
            problems.append(f"node {node['id']}: unknown type {node['type']}")
            continue
        schema = schemas[node["type"]]
        if [o["type"] for o in node.get("outputs", [])] != list(schema["output"]):
            problems.append(f"node {node['id']} {node['type']}: outputs differ from the schema")
        if [i["name"] for i in node.get("inputs", [])] != canvas_inputs(schema):
            problems.append(f"node {node['id']} {node['type']}: inputs are not in the frontend's slot order")
        for inp in node.get("inputs", []):
            try:
                type_, _ = input_spec(schema, inp["name"])
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
                type_, opts = input_spec(schema, name)
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


def canvas_geometry(ui: dict[str, Any], schemas: dict[str, dict[str, Any]]):
    """Node boxes, link end points and groups of a canvas file, where frontend 1.27 draws them
    (the sizes in the file are the ones the frontend keeps: test_browser checks that)."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    boxes = {i: geo.node_box(n["pos"], n["size"]) for i, n in nodes.items()}
    links = []
    for link_id, src, slot, dst, dslot, _type in ui["links"]:
        s, d = nodes[src], nodes[dst]
        start = geo.output_pos(s["pos"], s["size"], slot)
        schema = schemas[d["type"]]
        sockets = [x[0] for x in socket_inputs(schema)]
        name = d["inputs"][dslot]["name"]
        if name in sockets:
            end = geo.input_pos(d["pos"], sockets.index(name))
        else:
            row = 0
            for wname, extra in widget_layout(schema):
                if wname == name:
                    break
                if input_spec(schema, wname)[1].get("multiline"):
                    raise ValueError(f"{d['type']}.{name} follows a multiline widget: its row is not modelled")
                row += 1 + extra
            end = geo.widget_input_pos(d["pos"], max(len(sockets), len(schema["output"])), row)
        links.append(geo.Link(link_id, src, dst, start, end))
    groups = {}
    for g in ui.get("groups", []):
        box = geo.Box(*g["bounding"])
        members = {i for i, b in boxes.items() if b.overlaps(box)}
        groups[g["title"]] = (box, members)
    return boxes, links, groups


def layout_problems(ui: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[str]:
    boxes, links, groups = canvas_geometry(ui, schemas)
    return geo.layout_problems(boxes, links, groups)


