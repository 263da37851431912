"""Render workflows/<name>.jpg, the template browser's thumbnail of each canvas workflow.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \\
        /path/to/venv/bin/python tests/make_thumbnails.py

A screenshot of the workflow as ComfyUI's own frontend draws it (headless Chromium, the test
inputs of comfyui_server.build_base in the loaders' previews), cropped to the workflow and
scaled down. Each JPEG's comment records the digest of the canvas file it shows, so
tests/test_workflows.py notices a thumbnail that is older than its workflow.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfyui_browser as cb
import comfyui_server as cs
import workflow_geometry as geo
import workflow_tools as wt

log = logging.getLogger("make_thumbnails")
MAX_W, MAX_H = 800, 450  # the template browser shows it at most 256 px high
RENDER_SCALE = 0.5
LEFT, TOP, PAD = 80, 90, 24  # clear of the sidebar and the top bar


def workflow_bounds(ui: dict) -> geo.Box:
    boxes = [geo.node_box(n["pos"], n["size"]) for n in ui["nodes"]] + [geo.Box(*g["bounding"]) for g in ui["groups"]]
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    return geo.Box(x0, y0, max(b.x + b.w for b in boxes) - x0, max(b.y + b.h for b in boxes) - y0)


def render(server_url: str, ui_path: Path) -> bytes:
    """The JPEG of one workflow."""
    from PIL import Image

    ui = json.loads(ui_path.read_text())
    box = workflow_bounds(ui)
    width = int(box.w * RENDER_SCALE) + LEFT + 2 * PAD
    height = int(box.h * RENDER_SCALE) + TOP + 2 * PAD
    browser = cb.Browser(server_url, width=width, height=height)
    try:
        browser.load(ui, ui_path.name)
        left, top = browser.js("const r = window.app.canvas.canvas.getBoundingClientRect(); return [r.left, r.top];")
        # screen = canvas origin + (graph + offset) * scale: put the workflow's corner at (LEFT, TOP) + PAD
        offset = [(LEFT + PAD - left) / RENDER_SCALE - box.x, (TOP + PAD - top) / RENDER_SCALE - box.y]
        browser.js("const ds = window.app.canvas.ds; ds.scale = arguments[0]; ds.offset[0] = arguments[1][0];"
                   "ds.offset[1] = arguments[1][1];", RENDER_SCALE, offset)
        time.sleep(2.0)  # loaders' previews (video, image) arrive
        browser.redraw()
        png = browser.driver.get_screenshot_as_png()
    finally:
        browser.close()
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    crop = shot.crop((LEFT + PAD // 2, TOP + PAD // 2, width - PAD // 2, height - PAD // 2))
    crop.thumbnail((MAX_W, MAX_H), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    crop.save(out, "JPEG", quality=88, optimize=True, comment=wt.canvas_digest(ui_path).encode())
    return out.getvalue()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reason = cs.skip_reason() or cb.skip_reason()
    if reason:
        log.error(reason)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        base = cs.build_base(Path(tmp))
        # text at any zoom; no render statistics or zoom buttons over the picture
        cb.write_user_settings(base, {"LiteGraph.Canvas.MinFontSizeForLOD": 0, "Comfy.Graph.CanvasInfo": False,
                                      "Comfy.Graph.CanvasMenu": False})
        server = cs.Server(base)
        try:
            server.start()
            for name, ui_path, _api in wt.workflow_files():
                wt.thumbnail_path(name).write_bytes(render(server.url, ui_path))
                log.info("wrote %s", wt.thumbnail_path(name))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
