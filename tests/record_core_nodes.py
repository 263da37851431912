"""Re-record tests/data/comfyui_core_nodes.json from a real ComfyUI's GET /object_info.

    COMFYUI_DIR=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/venv/bin/python \\
        /path/to/venv/bin/python tests/record_core_nodes.py

(``COMFYUI_COMMIT=a125cd84`` names the commit of a checkout that has no .git.)

Starts ComfyUI headless (--cpu, a temporary base directory with this pack linked in), keeps the
entries of the core nodes in ``workflow_tools.CORE_NODES_RECORDED`` and
empties the lists of files on this machine (loaders' combos), so CI checks the workflows'
structure without ComfyUI; tests/test_comfyui_integration.py checks them against a live server.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfyui_server as cs
import workflow_tools as wt

log = logging.getLogger("record_core_nodes")


def record(object_info: dict, version: str) -> dict:
    nodes = {}
    for name in sorted(wt.CORE_NODES_RECORDED):
        entry = json.loads(json.dumps(object_info[name]))
        for section in ("required", "optional"):
            for input_name, spec in entry["input"].get(section, {}).items():
                if (name, input_name) not in wt.FILE_COMBOS:
                    continue
                if isinstance(spec[0], list):
                    spec[0] = []
                elif len(spec) > 1 and isinstance(spec[1], dict) and "options" in spec[1]:
                    spec[1]["options"] = []
        nodes[name] = entry
    return {
        "_comment": f"GET /object_info entries of the core nodes the example workflows use (and InvertMask & co.), "
                    f"recorded from {version} by tests/record_core_nodes.py. File lists (loaders' combos) are emptied; "
                    "tests/test_comfyui_integration.py checks the workflows against a live /object_info instead.",
        "nodes": nodes,
    }


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    reason = cs.skip_reason()
    if reason:
        log.error(reason)
        return 2
    version = "ComfyUI " + subprocess.run(
        [cs.COMFYUI_PYTHON, "-c", "import comfyui_version; print(comfyui_version.__version__)"],
        cwd=cs.COMFYUI_DIR, capture_output=True, text=True, check=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], cwd=cs.COMFYUI_DIR, capture_output=True, text=True,
                            check=False)
    label = commit.stdout.strip() if commit.returncode == 0 else os.environ.get("COMFYUI_COMMIT", "")
    if label:  # a checkout without .git: say its commit with COMFYUI_COMMIT=...
        version += f" (commit {label})"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "custom_nodes").mkdir()
        (base / "custom_nodes" / "ComfyUI-VideoMaMa").symlink_to(cs.ROOT, target_is_directory=True)
        server = cs.Server(base)
        try:
            server.start()
            info = server.get("/object_info", timeout=120)
        finally:
            server.stop()
    wt.CORE_NODES.write_text(json.dumps(record(info, version), indent=1, sort_keys=True) + "\n")
    log.info("wrote %s (%d nodes, %s)", wt.CORE_NODES, len(wt.CORE_NODES_RECORDED), version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
