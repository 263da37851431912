"""The low-memory temporal decoder on a VAE made of REAL ComfyUI comfy.ops layers.

Usage:  <comfyui python> tests/comfyui_ops_decode_probe.py COMFYUI_DIR
(run by tests/test_temporal_decode.py; prints one JSON line).

The tiny VAE's layers are switched to ComfyUI's ``comfy.ops.disable_weight_init`` twins by the
pack's own ``make_streamable`` (the pack imported as ComfyUI imports it), every twin is marked
``comfy_cast_weights`` (what ComfyUI's patcher does to layers it leaves in host memory) and
given a ``weight_function`` / ``bias_function`` patch. diffusers' decode then runs through
ComfyUI's casting code, and ``decode_chunk`` must give the same alpha.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(comfy_dir: str) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = True
    name = str(ROOT).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[name] = pack
    spec.loader.exec_module(pack)
    configs = importlib.import_module(f"{name}.videomama.weights.configs")
    temporal_decode = importlib.import_module(f"{name}.videomama.pipeline.temporal_decode")

    vae = configs.build_random_vae(seed=0)
    z = torch.randn(8, 4, 8, 8, generator=torch.Generator().manual_seed(0)) / 0.18215
    with torch.no_grad():
        plain = vae.decode(z, num_frames=8).sample
    switched = pack.nodes.host.make_streamable(vae)
    layers = [m for m in vae.decoder.modules() if hasattr(m, "comfy_cast_weights")]
    for m in layers:
        m.comfy_cast_weights = True
        m.weight_function = [lambda w: w * 1.25]
        m.bias_function = [lambda b: b + 0.05]
    with torch.no_grad():
        theirs = vae.decode(z, num_frames=8).sample
        ours = temporal_decode.decode_chunk(vae.decoder, z)

    def alpha(rgb: torch.Tensor) -> torch.Tensor:
        return (rgb.float() / 2 + 0.5).clamp(0, 1).mean(1)

    norm = vae.decoder.up_blocks[-1].resnets[0].temporal_res_block.norm1
    print(json.dumps({
        "switched": switched, "cast_layers": len(layers), "layer_module": type(norm).__module__,
        "patched_vs_plain": float((theirs - plain).abs().max()),
        "max_abs_alpha_diff": float((alpha(ours) - alpha(theirs)).abs().max()),
        "max_abs_rgb_diff": float((ours - theirs).abs().max()),
    }))


if __name__ == "__main__":
    main(sys.argv[1])
