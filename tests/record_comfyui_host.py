"""Record what a real ComfyUI does where the pack depends on it, for the stand-in to be checked against.

Usage (ComfyUI's own interpreter; nothing in the checkout is written):

    COMFYUI_DIR=/path/to/ComfyUI /path/to/comfyui-venv/bin/python tests/record_comfyui_host.py [--commit SHA]

writes tests/data/comfyui_host_recording.json:

* ``host``: ComfyUI's version and commit;
* ``scenarios``: tests/comfy_host_scenarios.py run on ComfyUI's real model management, model
  patcher, comfy.ops, progress bar and folder_paths (``--cpu``; the GPU is simulated on the
  meta device through a patched ``get_free_memory``);
* ``object_info``: GET /object_info of our nodes as the server builds it, after ComfyUI's own
  loader (``nodes.load_custom_node``) loaded the pack from ``custom_nodes/ComfyUI-VideoMaMa``
  of an empty temporary base directory (so model lists show their placeholders).

tests/test_comfy_standin.py checks tests/fake_comfy against this file in CI. Run this again
after changing a node's schema, or to check a newer ComfyUI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
OUT = TESTS / "data" / "comfyui_host_recording.json"
sys.path.insert(0, str(TESTS))

import comfy_host_scenarios as scenarios
from comfy_standin import PACK_FOLDER


def _commit(comfy_dir: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(comfy_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", help="ComfyUI commit, when COMFYUI_DIR is not a git checkout")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    comfy_dir = Path(os.environ["COMFYUI_DIR"]).resolve()
    torch.set_num_threads(1)

    base = Path(tempfile.mkdtemp(prefix="videomama_record_"))
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(comfy_dir))
    os.chdir(comfy_dir)
    sys.argv = [sys.argv[0]]
    from comfy.cli_args import args

    args.cpu = True
    args.base_directory = str(base)
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.ops
    import comfy.utils
    import folder_paths

    import nodes

    host = scenarios.Host(mm=mm, mp=comfy.model_patcher, ops=comfy.ops, utils=comfy.utils, folder_paths=folder_paths,
                          simulate_gpu=lambda capacity: None)
    real_free = mm.get_free_memory
    probes: weakref.WeakSet = host.probes

    def simulate_gpu(capacity: int) -> None:
        def get_free_memory(dev=None, torch_free_too=False):
            if dev is None or torch.device(dev) != scenarios.META:
                return real_free(dev, torch_free_too)
            models = {id(p.model): p for p in list(probes) if p.load_device == scenarios.META}
            free = capacity - sum(p.loaded_size() for p in models.values())
            return (free, 0) if torch_free_too else free

        mm.get_free_memory = get_free_memory

    host.simulate_gpu = simulate_gpu
    recorded = scenarios.run_all(host)
    mm.get_free_memory = real_free

    loaded = asyncio.run(nodes.load_custom_node(str(base / "custom_nodes" / PACK_FOLDER)))
    if not loaded:
        raise SystemExit("ComfyUI could not load the pack; see the log above")
    ours = [k for k, cls in nodes.NODE_CLASS_MAPPINGS.items()
            if getattr(cls, "RELATIVE_PYTHON_MODULE", "") == f"custom_nodes.{PACK_FOLDER}"]
    object_info = {k: json.loads(json.dumps(nodes.NODE_CLASS_MAPPINGS[k].GET_NODE_INFO_V1())) for k in sorted(ours)}

    import comfyui_version

    out = {
        "host": {"comfyui_version": comfyui_version.__version__, "commit": opts.commit or _commit(comfy_dir),
                 "torch": torch.__version__},
        "scenarios": recorded,
        "object_info": object_info,
    }
    opts.out.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {opts.out} ({len(object_info)} nodes, ComfyUI {out['host']['comfyui_version']})")


if __name__ == "__main__":
    main()
