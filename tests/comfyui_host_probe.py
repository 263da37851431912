"""Run the pack's model management against a REAL ComfyUI in-process, in every VRAM state.

Usage:  <comfyui python> tests/comfyui_host_probe.py COMFYUI_DIR OUT.json
(run by tests/test_comfyui_integration.py; prints nothing useful itself).

A CPU-only machine cannot start ComfyUI with --lowvram/--novram/--highvram (those flags
exclude --cpu, and without --cpu ComfyUI needs a GPU at import). So this probe imports
ComfyUI's real model management with --cpu and then drives ``load_models_gpu`` as it
behaves on a GPU:

1. compute: the CPU plays the GPU. While ``load_models_gpu`` runs, ``is_device_cpu`` answers
   False and ``get_free_memory`` reports a chosen amount, so ComfyUI applies its real budget
   rules of each VRAM state (full, partial, 0.1 byte for --novram) to our patcher. The matte of
   every state must equal the --cpu run bit for bit (which matches the plain library), and streamed layers must exist
   where a partial budget was given.
2. placement: the load device is ``meta`` (a device where nothing can be computed, so any tensor
   that reaches it shows). After each state's load, every tensor must be on it, or be owned by
   a layer ComfyUI marked to cast its weights per call.
3. eviction: ``free_memory`` (what ComfyUI calls before loading another model) unloads ours fully
   or partly; the next run reloads it and still gives the same matte.

The UNet is mid-sized (60 M parameters, 240 MB in fp32) so that ComfyUI's 128 MiB minimum
weight budget really is partial.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(comfy_dir: str, out_path: str) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.model_management as mm
    import comfy.model_patcher

    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger().addHandler(Capture())
    logging.getLogger().setLevel(logging.INFO)

    # the pack, imported the way ComfyUI imports it (a package named by its path)
    name = str(ROOT).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules[name] = pack
    spec.loader.exec_module(pack)
    from importlib import import_module

    host = import_module(f"{name}.nodes.host")

    configs = import_module(f"{name}.videomama.weights.configs")
    model_mod = import_module(f"{name}.videomama.pipeline.model")
    video = import_module(f"{name}.videomama.pipeline.matte")
    options = import_module(f"{name}.videomama.options")
    mid = {**configs.TINY_UNET_CONFIG, "block_out_channels": [128, 256, 256, 256], "num_attention_heads": [2, 4, 4, 4]}

    def fresh():
        return model_mod.VideoMaMaModel(configs.build_random_unet(mid, seed=0), configs.build_random_vae(seed=0))

    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 40, 56, 3, generator=gen)
    masks = torch.zeros(3, 40, 56)
    masks[:, 10:30, 15:40] = 1.0
    import asyncio

    async def node_list():
        return await (await pack.comfy_entrypoint()).get_node_list()

    matte = next(cls for cls in asyncio.run(node_list()) if cls.GET_SCHEMA().node_id == "MaskToMatte")

    def run(hosted):
        with torch.inference_mode():
            return matte.execute(frames, masks, resolution=64, window=3, overlap=1, seed=42, mask_threshold=0.5,
                                 posterior="sample", model=hosted)[0]

    result: dict = {"comfy_vram_state_under_cpu": mm.vram_state.name,
                    "auto_dtypes_on_cpu": [str(d) for d in host.model_dtypes("auto", mm.get_torch_device())]}

    # plain library, no ComfyUI involved: the numbers every state must reproduce
    plain = fresh()
    with torch.inference_mode():
        reference = video.matte_clip(plain, frames, masks, options.MatteOptions(
            resolution=64, window=3, overlap=1, seed=42, posterior="sample"))
    del plain
    model_bytes = None

    real_is_cpu, real_free, real_load = mm.is_device_cpu, mm.get_free_memory, mm.load_models_gpu

    def simulate(state, free_bytes, device):
        mm.vram_state = state

        def free(dev=None, torch_free_too=False):
            return (free_bytes, free_bytes) if torch_free_too else free_bytes

        def load_models_gpu(*a, **kw):
            mm.is_device_cpu, mm.get_free_memory = (lambda d: False), free
            try:
                return real_load(*a, **kw)
            finally:
                mm.is_device_cpu, mm.get_free_memory = real_is_cpu, real_free

        mm.load_models_gpu = load_models_gpu
        mm.get_torch_device = lambda: torch.device(device)

    real_get_device = mm.get_torch_device

    def restore():
        mm.vram_state = mm.VRAMState.DISABLED
        mm.load_models_gpu = real_load
        mm.get_torch_device = real_get_device
        for lm in list(mm.current_loaded_models):
            if lm.model is not None and lm.model.load_device.type != "meta":
                lm.model_unload()
        mm.current_loaded_models.clear()

    small_free = int(mm.minimum_inference_memory() + 64 * 2**20)  # -> the 128 MiB minimum budget
    states = [
        ("cpu (--cpu, DISABLED)", None, None),
        ("HIGH_VRAM (--highvram)", mm.VRAMState.HIGH_VRAM, 64 * 2**30),
        ("NORMAL_VRAM, plenty free", mm.VRAMState.NORMAL_VRAM, 64 * 2**30),
        ("NORMAL_VRAM, little free", mm.VRAMState.NORMAL_VRAM, small_free),
        ("LOW_VRAM (--lowvram)", mm.VRAMState.LOW_VRAM, small_free),
        ("NO_VRAM (--novram)", mm.VRAMState.NO_VRAM, 64 * 2**30),
    ]

    # 1. compute on the CPU standing in for the GPU; the --cpu run is the reference of the others
    compute = {}
    cpu_reference = None
    for label, state, free_bytes in states:
        records.clear()
        if state is not None:
            simulate(state, free_bytes, "cpu")
        hosted = host.host_model(fresh(), streamable=True, description=label, unet_dtype=torch.float32)
        model_bytes = hosted.patcher.model_size()
        alpha = run(hosted)
        if cpu_reference is None:
            cpu_reference = alpha
            result["cpu_vs_plain_library_max_abs_diff"] = float((alpha - reference).abs().max())
        m = hosted.model
        compute[label] = {
            "bit_identical_to_cpu_reference": bool(torch.equal(alpha, cpu_reference)),
            "streamed_layers": sum(1 for x in m.modules() if getattr(x, "comfy_cast_weights", False)),
            "loaded_bytes": int(hosted.patcher.loaded_size()),
            "model_bytes": int(model_bytes),
            "model_lowvram": bool(getattr(m, "model_lowvram", False)),
            "load_log": [r for r in records if r.startswith(("loaded ", "Requested"))],
        }
        if label.startswith("LOW_VRAM"):
            # 3. eviction by another model's load: partial, then full; the next run reloads
            lm = next(x for x in mm.current_loaded_models if x.model is hosted.patcher)
            lm.model_unload(memory_to_free=16 * 2**20)
            after_partial = run(hosted)
            lm = next(x for x in mm.current_loaded_models if x.model is hosted.patcher)
            lm.model_unload()
            mm.current_loaded_models.remove(lm)
            unloaded_bytes = int(hosted.patcher.loaded_size())
            after_full = run(hosted)
            compute[label]["after_partial_unload_identical"] = bool(torch.equal(after_partial, cpu_reference))
            compute[label]["loaded_bytes_after_full_unload"] = unloaded_bytes
            compute[label]["after_full_unload_identical"] = bool(torch.equal(after_full, cpu_reference))
        restore()
    result["compute"] = compute

    # 2. placement on a device that cannot compute
    placement = {}
    for label, state, free_bytes in states[1:]:
        simulate(state, free_bytes, "meta")
        hosted = host.host_model(fresh(), streamable=True, description=label)
        assert hosted.patcher.load_device.type == "meta"
        with torch.inference_mode():
            m = host.load_for_inference(hosted, memory_required=0)
        wrong = []
        for mod_name, mod in m.named_modules():
            if getattr(mod, "comfy_cast_weights", False):
                continue
            for pname, t in list(mod._parameters.items()) + list(mod._buffers.items()):
                if t is not None and t.device.type != "meta":
                    wrong.append(f"{mod_name}.{pname}")
        placement[label] = {
            "misplaced_tensors": wrong[:10],
            "misplaced_count": len(wrong),
            "streamed_layers": sum(1 for x in m.modules() if getattr(x, "comfy_cast_weights", False)),
            "compute_device": str(m.compute_device),
        }
        mm.current_loaded_models.clear()
        restore()
    result["placement_meta"] = placement

    # the same partial load with ComfyUI's own patcher and no help: what goes wrong without the pack's fixes
    simulate(mm.VRAMState.LOW_VRAM, small_free, "meta")
    bare = fresh()
    patcher = comfy.model_patcher.ModelPatcher(bare, load_device=torch.device("meta"), offload_device=torch.device("cpu"))
    try:
        mm.load_models_gpu([patcher])
        left = [n for n, p in bare.named_parameters() if p.device.type != "meta"]
        result["plain_modelpatcher_lowvram"] = {"error": None, "params_left_on_cpu": len(left), "examples": left[:3]}
    except Exception as exc:
        result["plain_modelpatcher_lowvram"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    mm.current_loaded_models.clear()
    restore()

    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
