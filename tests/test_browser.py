"""The example workflows in ComfyUI's real frontend (headless Chromium driven by Selenium).

Runs when ``COMFYUI_DIR`` names a ComfyUI checkout (as test_comfyui_integration.py) and
Chromium, chromedriver and selenium are present (see comfyui_browser.py); skipped with the
reason otherwise. Example:

    apt-get install chromium chromium-driver && /work/comfyui-venv/bin/pip install selenium
    COMFYUI_DIR=/work/comfyui COMFYUI_PYTHON=/work/comfyui-venv/bin/python \\
        /work/comfyui-venv/bin/python -m pytest tests/test_browser.py -q -rs -s

Checks, in the frontend ComfyUI ships (1.27.10 for 0.3.64): the template browser lists exactly
the canvas workflows, each with its thumbnail; every workflow opens (dropped as a file and
from the template browser) with no dialog, no console error, no node resized or moved, no
link under a node (measured on the live canvas); the weight-free workflow runs from the Run
button to its two videos, queues exactly its API version, and keeps its seed. Screenshots go
to ``$BROWSER_SHOTS`` (default: a pytest temporary folder, printed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import comfyui_browser as cb
import comfyui_server as cs
import pytest
import workflow_checks as wc
import workflow_geometry as geo
import workflow_tools as wt

_REASON = cs.skip_reason() or cb.skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

PACK = "ComfyUI-VideoMaMa"  # the folder build_base links the repo as
NAMES = [name for name, _ui, _api in wt.workflow_files()]
WEIGHT_FREE = "matte_video_core_nodes"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = cs.build_base(tmp_path_factory.mktemp("browser_base"))
    cb.write_user_settings(base)
    srv = cs.Server(base)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(server):
    b = cb.Browser(server.url + "/")
    b.startup_console = b.console()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ["BROWSER_SHOTS"]) if os.environ.get("BROWSER_SHOTS") else \
        tmp_path_factory.mktemp("browser_shots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\n[screenshots: {folder}]")
    return folder


def _errors(entries: list[dict]) -> list[str]:
    """Console errors that matter: everything at SEVERE level except failed requests to hosts or
    files outside this test (the frontend asks the internet for release notes and the user folder
    for files a fresh user does not have)."""
    out = []
    for e in entries:
        if e["level"] != "SEVERE":
            continue
        msg = e["message"]
        if e.get("source") == "network" and "workflow_templates" not in msg and (
                "ERR_NAME_NOT_RESOLVED" in msg or "/api/userdata" in msg or "user.css" in msg or "favicon" in msg):
            continue
        out.append(msg[:400])
    return out


def _check_loaded(browser: cb.Browser, ui: dict, name: str, shots: Path, how: str) -> None:
    time.sleep(1.5)  # loaders' previews arrive; a node that grows for them would show here
    browser.redraw()
    browser.screenshot(shots / f"{how}_{name}.png")
    assert browser.dialogs() == [], f"{name} ({how}): a dialog opened"
    assert _errors(browser.console()) == [], f"{name} ({how}): console errors"
    graph = browser.geometry()
    saved = {n["id"]: n for n in ui["nodes"]}
    assert {n["id"] for n in graph["nodes"]} == set(saved)
    for node in graph["nodes"]:  # the frontend kept the layout as written (the CI checks model it)
        s = saved[node["id"]]
        assert node["pos"] == s["pos"] and [round(v, 3) for v in node["size"]] == s["size"], (name, node["type"])
        if s.get("title"):
            assert node["title"] == s["title"]
    nodes, links, groups = geo.from_frontend(graph)
    assert len(links) == len(ui["links"]) and len(groups) == len(ui["groups"])
    assert geo.layout_problems(nodes, links, groups) == [], f"{name} ({how}): as the frontend draws it"
    ours = wc.canvas_geometry(ui, wt.all_schemas())[1]  # the CI model puts every socket where the frontend does
    live = {k.id: k for k in links}
    for link in ours:
        assert live[link.id].start == pytest.approx(link.start) and live[link.id].end == pytest.approx(link.end), link
    serialized = {n["id"]: n for n in browser.serialized()["nodes"]}
    for node_id, s in saved.items():  # no widget value migrated or reset on load
        assert serialized[node_id]["widgets_values"] == s["widgets_values"], (name, s["type"])


def test_template_browser_lists_the_canvas_workflows_with_thumbnails(server, browser, shots):
    print(f"\n[ComfyUI frontend {browser.frontend_version}]")
    assert not [m for m in _errors(browser.startup_console) if "VideoMaMa" in m or PACK in m]
    listed = server.get("/workflow_templates")
    assert sorted(listed[PACK]) == sorted(NAMES)  # the API files in workflows/api/ are not templates
    browser.command("Comfy.BrowseTemplates")
    try:
        browser.wait_for("document.querySelector('.p-dialog li.p-listbox-option')", 30, "the template browser")
        options = browser.js("return [...document.querySelectorAll('.p-dialog li.p-listbox-option')]"
                             ".map(e => e.innerText.trim())")
        assert PACK in options, f"the template browser does not list the pack: {options}"
        browser.js("[...document.querySelectorAll('.p-dialog li.p-listbox-option')]"
                   ".find(e => e.innerText.trim() === arguments[0]).click()", PACK)
        cards_js = ("return [...document.querySelectorAll('.p-dialog [data-testid^=\"template-workflow-\"]')]"
                    ".map(c => [c.dataset.testid.slice(18), (c.querySelector('img') || {}).naturalWidth || 0])")
        try:
            browser.wait_for(f"document.querySelectorAll('.p-dialog [data-testid^=\"template-workflow-\"]').length == "
                             f"{len(NAMES)}", 30, "our templates")
        except TimeoutError as exc:
            browser.screenshot(shots / "template_browser_timeout.png")
            raise AssertionError(f"{exc}; cards shown: {browser.js(cards_js)}") from None
        time.sleep(1.0)
        browser.screenshot(shots / "template_browser.png")
        cards = browser.js(cards_js)
        assert sorted(c[0] for c in cards) == sorted(NAMES)
        assert all(width > 0 for _name, width in cards), f"a thumbnail did not load: {cards}"
    finally:  # a failure here must not leave the dialog over the canvas for the tests after it
        browser.js("document.querySelector('.p-dialog button[aria-label]')?.click()")
        browser.js("window.app.extensionManager.dialog?.closeDialog?.()")


@pytest.mark.parametrize("name", NAMES)
def test_canvas_workflow_opens_cleanly(browser, shots, name):
    """As when the file is dropped on the canvas."""
    ui = json.loads((wt.WORKFLOWS / f"{name}.json").read_text())
    browser.console()
    browser.load(ui, f"{name}.json")
    _check_loaded(browser, ui, name, shots, "dropped")


@pytest.mark.parametrize("name", NAMES)
def test_template_opens_cleanly(browser, shots, name):
    """Clicked in the template browser, as a user does."""
    ui = json.loads((wt.WORKFLOWS / f"{name}.json").read_text())
    browser.console()
    browser.command("Comfy.BrowseTemplates")
    browser.wait_for("document.querySelector('.p-dialog li.p-listbox-option')", 30, "the template browser")
    browser.js("[...document.querySelectorAll('.p-dialog li.p-listbox-option')]"
               ".find(e => e.innerText.trim() === arguments[0]).click()", PACK)
    card = f"document.querySelector('.p-dialog [data-testid=\"template-workflow-{name}\"]')"
    browser.wait_for(card, 30, f"the {name} card")
    browser.js(f"{card}.click()")
    browser.wait_for(f"window.app.graph.nodes.length === {len(ui['nodes'])} && !document.querySelector('.p-dialog')",
                     30, f"{name} to open")
    _check_loaded(browser, ui, name, shots, "template")


def test_weight_free_workflow_runs_from_the_run_button(server, browser, shots):
    from selenium.webdriver.common.by import By

    ui = json.loads((wt.WORKFLOWS / f"{WEIGHT_FREE}.json").read_text())
    api = json.loads(wt.api_path(WEIGHT_FREE).read_text())
    browser.load(ui, f"{WEIGHT_FREE}.json")
    browser.console()
    before = set(server.get("/history"))
    browser.driver.find_element(By.CSS_SELECTOR, "[data-testid='queue-button'] button[aria-label='Run']").click()
    deadline = time.time() + 300
    while time.time() < deadline:
        new = {k: v for k, v in server.get("/history").items() if k not in before}
        if new and all(v["status"].get("completed") is not None for v in new.values()) and \
                not server.get("/queue")["queue_running"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the run did not finish in 300 s:\n{server.log_tail()}")
    assert len(new) == 1
    entry = next(iter(new.values()))
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[:3000]
    # the prompt the frontend built from the canvas is the API file (plus values of the frontend's own
    # widgets that no node defines, such as LoadVideo's 'video-preview', which the server ignores)
    info = server.get("/object_info")
    queued = {k: (v["class_type"], {name: value for name, value in v["inputs"].items()
                                    if name in wt.canvas_inputs(info[v["class_type"]])})
              for k, v in entry["prompt"][2].items()}
    assert queued == {k: (v["class_type"], v["inputs"]) for k, v in api.items()}
    videos = sorted(item["filename"] for out in entry["outputs"].values() for item in out.get("images", []))
    assert len(videos) == 2 and all(v.endswith(".mp4") for v in videos)
    for out in entry["outputs"].values():
        for item in out.get("images", []):
            frames = cs.read_video(server.base / "output" / item["subfolder"] / item["filename"])
            assert frames.shape[:3] == (cs.CLIP_FRAMES, cs.CLIP_H, cs.CLIP_W)
    time.sleep(2.0)  # the result previews load into the Save Video nodes
    browser.redraw()
    browser.screenshot(shots / f"after_run_{WEIGHT_FREE}.png")
    saves = next(g for g in ui["groups"] if g["title"].startswith("Step 3"))
    browser.view(saves["bounding"])
    time.sleep(1.0)
    browser.screenshot(shots / f"after_run_{WEIGHT_FREE}_outputs.png")
    assert browser.dialogs() == [] and _errors(browser.console()) == []
    seed = browser.js("const n = window.app.graph.nodes.find(n => n.type === 'MaskToMatte');"
                      "return [n.widgets.find(w => w.name === 'seed').value, n.widgets.find(w => w.name === "
                      "'control_after_generate').value]")
    assert seed == [42, "fixed"]  # the next Run repeats this one


def test_the_live_checks_see_what_they_guard(server, browser, shots):
    """Not vacuous: on the live canvas a node moved into a link's lane is reported, and an API
    file opened like a template (what the old top-level *.api.json files did) shows up as a
    dialog or a console error."""
    ui = json.loads((wt.WORKFLOWS / f"{WEIGHT_FREE}.json").read_text())
    node = next(n for n in ui["nodes"] if n["type"] == "MaskToImage")
    node["pos"] = [node["pos"][0], 20]  # into the lane of the clip's fps and audio
    browser.load(ui, "moved.json")
    nodes, links, groups = geo.from_frontend(browser.geometry())
    assert any(f"runs under node {node['id']}" in p for p in geo.layout_problems(nodes, links, groups))
    browser.console()
    api = json.loads(wt.api_path(WEIGHT_FREE).read_text())
    try:
        browser.js("return window.app.loadGraphData(arguments[0], true, true, 'api.json')", api)
    except Exception:
        pass
    time.sleep(1.5)
    browser.screenshot(shots / "api_file_as_canvas.png")
    assert browser.dialogs() or _errors(browser.console())
    browser.js("document.querySelectorAll('.p-dialog-close-button, .p-toast-close-button').forEach(b => b.click())")
