"""ComfyUI's real frontend in headless Chromium (Selenium), for test_browser.py and make_thumbnails.py.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium chromium-driver``;
other paths through ``CHROMIUM`` / ``CHROMEDRIVER``) and the ``selenium`` package in the Python
that runs the test. Nothing is downloaded: Selenium is given the driver's path, so its driver
manager never runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or ""
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or ""
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
# Settings of a user who has seen the first-run template browser (it would cover the canvas) and
# closed the minimap (it covers the canvas's corner in screenshots).
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
LOAD_TIMEOUT = 90


def skip_reason() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "the 'selenium' package is not installed in this Python (pip install selenium)"
    if not CHROMIUM or not Path(CHROMIUM).exists():
        return "no Chromium found (apt-get install chromium chromium-driver, or set CHROMIUM)"
    if not CHROMEDRIVER or not Path(CHROMEDRIVER).exists():
        return "no chromedriver found (apt-get install chromium-driver, or set CHROMEDRIVER)"
    return None


def write_user_settings(base: Path, extra: dict[str, Any] | None = None) -> None:
    """ComfyUI keeps the frontend's settings per user under the base directory."""
    path = base / "user" / "default" / "comfy.settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**SETTINGS, **(extra or {})}))


# Geometry as the frontend draws it: node bounds (title included), socket positions of each link.
# A node is laid out (its widget sockets placed) when it is drawn, so the whole graph is drawn
# once in view before measuring, and the user's view is put back.
_GEOMETRY_JS = """
const c = window.app.canvas, g = window.app.graph;
const view = [c.ds.scale, c.ds.offset[0], c.ds.offset[1]];
const x0 = Math.min(...g.nodes.map(n => n.pos[0])), y0 = Math.min(...g.nodes.map(n => n.pos[1] - 40));
const x1 = Math.max(...g.nodes.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...g.nodes.map(n => n.pos[1] + n.size[1]));
c.ds.scale = Math.min(c.canvas.width / (x1 - x0), c.canvas.height / (y1 - y0));
c.ds.offset[0] = -x0; c.ds.offset[1] = -y0;
c.setDirty(true, true); c.draw(true, true);
for (const group of g.groups) group.recomputeInsideNodes();
const out = {
  nodes: g.nodes.map(n => ({id: n.id, type: n.type, title: n.title, pos: Array.from(n.pos), size: Array.from(n.size),
                            bounding: Array.from(n.getBounding())})),
  links: [...g.links.values()].map(l => ({id: l.id, src: l.origin_id, dst: l.target_id,
      start: Array.from(g.getNodeById(l.origin_id).getOutputPos(l.origin_slot)),
      end: Array.from(g.getNodeById(l.target_id).getInputPos(l.target_slot))})),
  groups: g.groups.map(gr => ({title: gr.title, bounding: Array.from(gr._bounding),
                               nodes: [...gr.children].filter(c => c.id !== undefined && g.getNodeById(c.id) === c)
                                                      .map(c => c.id)})),
};
c.ds.scale = view[0]; c.ds.offset[0] = view[1]; c.ds.offset[1] = view[2];
c.setDirty(true, true); c.draw(true, true);
return out;
"""

# Visible dialogs and error toasts (PrimeVue), e.g. missing nodes or "does not contain a valid version".
_DIALOGS_JS = """
const visible = el => el.offsetParent !== null || getComputedStyle(el).position === 'fixed';
const dialogs = [...document.querySelectorAll('.p-dialog')].filter(visible)
  .map(d => 'dialog: ' + d.innerText.slice(0, 300));
const toasts = [...document.querySelectorAll('.p-toast-message')].filter(visible)
  .map(t => 'toast: ' + t.innerText.slice(0, 300));
return dialogs.concat(toasts);
"""


class Browser:
    """One headless Chromium on ComfyUI's page."""

    def __init__(self, url: str, width: int = 1600, height: int = 900):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.url = url
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.driver.get(url)
        self.wait_for("window.app && window.app.graph && window.app.canvas && window.app.vueAppReady !== false"
                      " && document.querySelector('canvas#graph-canvas')", LOAD_TIMEOUT, "ComfyUI's page to start")
        time.sleep(1.5)  # extensions finish registering after the canvas appears
        self.console_seen: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_for(self, condition: str, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if self.js(f"return !!({condition})"):
                    return
            except Exception:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}")

    @property
    def frontend_version(self) -> str:
        return str(self.js("return window.__COMFYUI_FRONTEND_VERSION__ || ''"))

    def console(self) -> list[dict[str, Any]]:
        """Console entries since the last call."""
        entries = self.driver.get_log("browser")
        self.console_seen += entries
        return entries

    def load(self, ui: dict[str, Any], name: str) -> None:
        """Open a canvas workflow the way dropping its file does (app.loadGraphData)."""
        self.js("return window.app.loadGraphData(arguments[0], true, true, arguments[1])", ui, name)
        time.sleep(1.0)
        self.redraw()

    def redraw(self) -> None:
        self.js("window.app.canvas.setDirty(true, true); window.app.canvas.draw(true, true);")
        time.sleep(0.3)

    def view(self, box: tuple[float, float, float, float], margin: float = 30) -> None:
        """Show the canvas area ``box`` (x, y, w, h in graph units) as large as the canvas allows."""
        self.js("""const c = window.app.canvas, [x, y, w, h] = arguments[0], m = arguments[1];
                   const r = c.canvas.getBoundingClientRect();
                   c.ds.scale = Math.min((r.width - 2 * m) / w, (r.height - 2 * m) / h, 1);
                   c.ds.offset[0] = m / c.ds.scale - x; c.ds.offset[1] = m / c.ds.scale - y;""", list(box), margin)
        self.redraw()

    def serialized(self) -> dict[str, Any]:
        return self.js("return window.app.graph.serialize()")

    def geometry(self) -> dict[str, Any]:
        return self.js(_GEOMETRY_JS)

    def dialogs(self) -> list[str]:
        return self.js(_DIALOGS_JS)

    def command(self, command_id: str) -> None:
        self.js("return window.app.extensionManager.command.execute(arguments[0])", command_id)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

    def canvas_png(self) -> bytes:
        """The canvas area only (with the DOM widgets drawn over it, e.g. notes), as PNG bytes."""
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, "canvas#graph-canvas").screenshot_as_png
