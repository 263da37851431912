"""The example workflows: canvas and API versions agree and match the node schemas (no ComfyUI needed).

Core node schemas come from tests/data/comfyui_core_nodes.json (recorded from ComfyUI 0.3.64's
GET /object_info); tests/test_comfyui_integration.py repeats the checks against a live server
and runs the API versions.
"""

from __future__ import annotations

import copy
import json

import pytest
import workflow_tools as wt

EXPECTED = {"matte_video_with_mask_video", "matte_video_core_nodes", "sam2_track_matte_composite"}


@pytest.fixture(scope="module")
def schemas():
    return {**wt.core_schemas(), **wt.our_schemas()}


def _strip_meta(api):
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_every_example_exists_in_both_formats():
    names = {name for name, ui, api in wt.workflow_files() if api.exists()}
    assert names == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_canvas_and_api_versions_agree(schemas, name):
    ui = json.loads((wt.WORKFLOWS / f"{name}.json").read_text())
    api = json.loads((wt.WORKFLOWS / f"{name}.api.json").read_text())
    assert wt.check_ui(ui, schemas) == []
    assert _strip_meta(wt.api_from_ui(ui, schemas)) == _strip_meta(api)
    assert wt.check_api(api, schemas) == []
    types = {n["type"] for n in ui["nodes"]}
    assert types <= set(schemas)
    # seeds carry the control value the canvas expects, fixed so examples repeat
    for node in ui["nodes"]:
        if node["type"] == "MaskToMatte":
            assert node["widgets_values"][3:5] == [42, "fixed"]


def test_files_are_what_the_generator_makes(schemas):
    """Hand edits that break the pairing, or schema changes not yet regenerated, show here."""
    hint = "workflows/ differ from tests/workflow_tools.py's description: run `python tests/workflow_tools.py`"
    for flow in wt.build(schemas):
        ui = json.loads((wt.WORKFLOWS / f"{flow.name}.json").read_text())
        api = json.loads((wt.WORKFLOWS / f"{flow.name}.api.json").read_text())
        assert ui == json.loads(json.dumps(flow.ui())), f"{flow.name}: {hint}"
        assert api == json.loads(json.dumps(flow.api())), f"{flow.name}: {hint}"


def test_checks_catch_broken_workflows(schemas):
    """The checkers are not vacuous: typical mistakes are reported."""
    ui = json.loads((wt.WORKFLOWS / "matte_video_with_mask_video.json").read_text())
    api = json.loads((wt.WORKFLOWS / "matte_video_with_mask_video.api.json").read_text())
    bad = copy.deepcopy(ui)
    matte = next(n for n in bad["nodes"] if n["type"] == "MaskToMatte")
    matte["widgets_values"].pop(4)  # the seed's "fixed" forgotten
    assert any("widgets_values" in p for p in wt.check_ui(bad, schemas))
    bad_api = copy.deepcopy(api)
    node = next(v for v in bad_api.values() if v["class_type"] == "MaskToMatte")
    node["inputs"]["resolution"] = 10
    node["inputs"]["posterior"] = "median"
    node["inputs"]["masks"] = [node["inputs"]["images"][0], 0]  # IMAGE into MASK
    problems = wt.check_api(bad_api, schemas)
    assert any("resolution" in p for p in problems) and any("posterior" in p for p in problems)
    assert any("masks: gets IMAGE, wants MASK" in p for p in problems)
    del next(v for v in bad_api.values() if v["class_type"] == "LoadVideoMaMa")["inputs"]["vae"]
    assert any("required input 'vae' missing" in p for p in wt.check_api(bad_api, schemas))
