"""The example workflows: canvas and API versions agree, match the node schemas and read well
on the canvas (no ComfyUI needed).

Core node schemas come from tests/data/comfyui_core_nodes.json (recorded from ComfyUI 0.3.64's
GET /object_info by tests/record_core_nodes.py); tests/test_comfyui_integration.py repeats the
checks against a live server and runs the API versions; tests/test_browser.py loads the canvas
versions in ComfyUI's real frontend.
"""

from __future__ import annotations

import copy
import json

import pytest
import workflow_checks as wc
import workflow_geometry as geo
import workflow_tools as wt
from workflow_examples import build

EXPECTED = {"matte_video_with_mask_video", "matte_video_core_nodes", "sam2_track_matte_composite",
            "svd_generate_track_matte_composite"}
OUR_TYPES = {"LoadVideoMaMa", "MaskToMatte", "LoadSAM2", "SAM2MatteTrack", "AlphaComposite", "SaveMatteSequence"}


@pytest.fixture(scope="module")
def schemas():
    return wt.all_schemas()


def _load(name):
    ui = json.loads((wt.WORKFLOWS / f"{name}.json").read_text())
    api = json.loads(wt.api_path(name).read_text())
    return ui, api


def _strip_meta(api):
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_templates_are_the_canvas_files_and_api_files_sit_apart():
    """ComfyUI lists workflows/*.json (top level only) as templates: only canvas files may be there."""
    listed = {p.stem for p in wt.WORKFLOWS.glob("*.json")}
    assert listed == EXPECTED
    assert {p.name for p in wt.API_DIR.glob("*.json")} == {f"{n}.api.json" for n in EXPECTED}
    for name in EXPECTED:
        ui, _api = _load(name)
        assert isinstance(ui.get("nodes"), list) and ui.get("version") == 0.4, name  # canvas format, not API


def test_recorded_core_nodes_cover_the_examples(schemas):
    used = {n["type"] for name in EXPECTED for n in _load(name)[0]["nodes"]} - wt.FRONTEND_ONLY - OUR_TYPES
    assert used <= set(wt.CORE_NODES_RECORDED) <= set(wt.core_schemas())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_canvas_and_api_versions_agree(schemas, name):
    ui, api = _load(name)
    assert wc.check_ui(ui, schemas) == []
    assert _strip_meta(wc.api_from_ui(ui, schemas)) == _strip_meta(api)
    assert wc.check_api(api, schemas) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_links_never_run_under_a_node(schemas, name):
    """Nodes left to right, every link from an output on the left to an input on the right, its
    curve clear of every node body; nodes apart; groups hold their nodes and do not overlap."""
    ui, _api = _load(name)
    assert wc.layout_problems(ui, schemas) == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_workflow_explains_itself_on_the_canvas(schemas, name):
    ui, _api = _load(name)
    notes = [n for n in ui["nodes"] if n["type"] in wt.FRONTEND_ONLY]
    assert len(notes) == 1
    text = notes[0]["widgets_values"][0]
    assert "ComfyUI/input/" in text and "**Needs**" in text
    for node in ui["nodes"]:  # every weight the workflow loads is named on the note, with its folder
        if node["type"] == "LoadVideoMaMa":
            assert "models/videomama/" in text and "models/checkpoints/" in text
        if node["type"] == "LoadSAM2":
            assert "models/sam2/" in text and "pip install" in text
        if node["type"] == "ImageOnlyCheckpointLoader":
            assert "Not run by the pack's tests" in text  # no SVD weights here: the note says so
    assert "extra" not in ui or set(ui["extra"]) == {"ds"}  # nothing hidden where the UI never shows it
    boxes = {n["id"]: geo.node_box(n["pos"], n["size"]) for n in ui["nodes"]}
    grouped = {i for g in ui["groups"] for i, b in boxes.items() if b.overlaps(geo.Box(*g["bounding"]))}
    assert len(ui["groups"]) >= 3 and set(boxes) - grouped == {notes[0]["id"]}  # every node but the note in a group
    assert boxes[notes[0]["id"]].x < min(b.x for i, b in boxes.items() if i != notes[0]["id"])  # read first


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seeds_stay_fixed(schemas, name):
    """A second Run repeats the first: every control_after_generate widget says 'fixed'."""
    ui, _api = _load(name)
    controls = 0
    for node in ui["nodes"]:
        if node["type"] in wt.FRONTEND_ONLY:
            continue
        values, k = node["widgets_values"], 0
        for wname, extra in wt.widget_layout(schemas[node["type"]]):
            type_, opts = wt.input_spec(schemas[node["type"]], wname)
            if wt.has_control(wname, wt.input_kind(type_), opts):
                assert values[k + 1] == "fixed", (node["type"], wname)
                controls += 1
            k += 1 + extra
    assert controls >= 1


def test_our_nodes_keep_their_display_names(schemas):
    """Our nodes show their own display names (no workflow title hides them)."""
    for name in EXPECTED:
        for node in _load(name)[0]["nodes"]:
            if node["type"] in OUR_TYPES:
                assert "title" not in node, (name, node["type"])


def test_display_names_say_videomama(schemas):
    """Searching the node list for 'VideoMaMa' finds every node of the pack."""
    assert all("VideoMaMa" in schemas[t]["display_name"] for t in OUR_TYPES), \
        {t: schemas[t]["display_name"] for t in OUR_TYPES}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_thumbnail_shows_the_current_canvas(name):
    """The template browser shows workflows/<name>.jpg; it must be a JPEG rendered from this file."""
    from PIL import Image

    path = wt.thumbnail_path(name)
    hint = "re-render it: tests/make_thumbnails.py (needs ComfyUI and Chromium)"
    assert path.is_file(), f"{path.name} missing: {hint}"
    with Image.open(path) as im:
        assert im.format == "JPEG" and 400 <= im.width <= 1024 and 150 <= im.height <= 600
        assert im.info.get("comment", b"").decode() == wt.canvas_digest(wt.WORKFLOWS / f"{name}.json"), \
            f"{path.name} was rendered from another version of {name}.json: {hint}"


def test_files_are_what_the_generator_makes(schemas):
    """Hand edits that break the pairing, or schema changes not yet regenerated, show here."""
    hint = "workflows/ differ from tests/workflow_examples.py: run `python tests/workflow_tools.py`"
    flows = build(schemas)
    assert {f.name for f in flows} == EXPECTED
    for flow in flows:
        ui, api = _load(flow.name)
        assert ui == json.loads(json.dumps(flow.ui())), f"{flow.name}: {hint}"
        assert api == json.loads(json.dumps(flow.api())), f"{flow.name}: {hint}"


def test_checks_catch_broken_workflows(schemas):
    """The checkers are not vacuous: typical mistakes are reported."""
    ui, api = _load("matte_video_with_mask_video")
    bad = copy.deepcopy(ui)
    matte = next(n for n in bad["nodes"] if n["type"] == "MaskToMatte")
    matte["widgets_values"].pop(4)  # the seed's "fixed" forgotten
    assert any("widgets_values" in p for p in wc.check_ui(bad, schemas))
    bad_api = copy.deepcopy(api)
    node = next(v for v in bad_api.values() if v["class_type"] == "MaskToMatte")
    node["inputs"]["resolution"] = 10
    node["inputs"]["posterior"] = "median"
    node["inputs"]["masks"] = [node["inputs"]["images"][0], 0]  # IMAGE into MASK
    problems = wc.check_api(bad_api, schemas)
    assert any("resolution" in p for p in problems) and any("posterior" in p for p in problems)
    assert any("masks: gets IMAGE, wants MASK" in p for p in problems)
    del next(v for v in bad_api.values() if v["class_type"] == "LoadVideoMaMa")["inputs"]["vae"]
    assert any("required input 'vae' missing" in p for p in wc.check_api(bad_api, schemas))


def test_layout_check_catches_links_under_nodes(schemas):
    """Moving a node into a link's path, a consumer left of its source, or two nodes onto each
    other is reported (the geometric check is not vacuous)."""
    ui, _api = _load("matte_video_core_nodes")
    by_type = {n["type"]: n for n in ui["nodes"]}
    blocker = copy.deepcopy(ui)  # MaskToImage lifted into the fps/audio lane above the matte
    node = next(n for n in blocker["nodes"] if n["type"] == "MaskToImage")
    node["pos"] = [node["pos"][0], 20]
    assert any("runs under node" in p and f"node {node['id']}" in p for p in wc.layout_problems(blocker, schemas))
    backwards = copy.deepcopy(ui)  # the matte's consumer moved left of MaskToMatte
    node = next(n for n in backwards["nodes"] if n["type"] == "MaskToImage")
    node["pos"] = [by_type["MaskToMatte"]["pos"][0] - 300, node["pos"][1]]
    assert any("right to left" in p for p in wc.layout_problems(backwards, schemas))
    stacked = copy.deepcopy(ui)
    stacked["nodes"][2]["pos"] = list(stacked["nodes"][1]["pos"])
    assert any("overlap" in p for p in wc.layout_problems(stacked, schemas))
    # the curve model itself: a link that passes a node's body, one that passes well clear of it
    box = {1: geo.Box(0, 0, 100, 40), 2: geo.Box(400, 0, 100, 40), 3: geo.Box(200, -20, 100, 60)}
    assert geo.links_under_nodes(box, [geo.Link(1, 1, 2, (91, 14), (410, 14))]) == ["link 1 (1 -> 2) runs under node 3"]
    assert geo.links_under_nodes(box, [geo.Link(1, 1, 2, (91, -90), (410, -90))]) == []
