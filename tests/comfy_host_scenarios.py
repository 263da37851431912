"""Scenarios that exercise the part of ComfyUI the pack relies on, for a real host or the stand-in.

Each scenario takes a :class:`Host` (ComfyUI's modules, or tests/fake_comfy's) and returns plain
JSON data. tests/record_comfyui_host.py runs them on a real ComfyUI and writes
tests/data/comfyui_host_recording.json; tests/test_comfy_standin.py runs them on the stand-in
and compares. The numbers are ComfyUI's own rules, so they must match exactly.

The GPU is simulated: models live on the ``meta`` device (no memory is used, any size is
possible) and a device of ``capacity`` bytes has ``capacity`` minus the bytes the scenario's
patchers have loaded free. The real host gets that through a patched ``get_free_memory`` (as
tests/comfyui_host_probe.py does); the stand-in computes it itself.
"""

from __future__ import annotations

import gc
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

GiB = 1024**3
META = torch.device("meta")


@dataclass
class Host:
    mm: Any  # comfy.model_management
    mp: Any  # comfy.model_patcher
    ops: Any  # comfy.ops
    utils: Any  # comfy.utils
    folder_paths: Any
    simulate_gpu: Callable[[int], None]  # give the meta device this many bytes
    probes: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)  # the patchers scenarios made
    events: list = field(default_factory=list)  # [call, model name, ...] as model management made them
    probe_class: Any = None


# ------------------------------------------------------------------------------------------ helpers
def _probe_class(host: Host) -> type:
    """The host's ModelPatcher, logging the calls model management makes on it into host.events."""
    if host.probe_class is None:
        events = host.events

        class Probe(host.mp.ModelPatcher):
            scenario_name = "?"

            def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
                got = super().partially_load(device_to, extra_memory, force_patch_weights=force_patch_weights)
                events.append(["load", self.scenario_name, _num(extra_memory), int(got)])
                return got

            def partially_unload(self, device_to, memory_to_free=0):
                freed = super().partially_unload(device_to, memory_to_free)
                events.append(["partial_unload", self.scenario_name, _num(memory_to_free), int(freed)])
                return freed

            def detach(self, unpatch_all=True):
                events.append(["detach", self.scenario_name, bool(unpatch_all)])
                return super().detach(unpatch_all)

        host.probe_class = Probe
    return host.probe_class


def new_patcher(host: Host, name: str, model: torch.nn.Module, load: torch.device = META,
                offload: torch.device = META) -> Any:
    """A (logging) ModelPatcher of the host for ``model``."""
    patcher = _probe_class(host)(model, load_device=load, offload_device=offload)
    patcher.scenario_name = name
    host.probes.add(patcher)
    return patcher


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def layered_model(host: Host, total_bytes: int, layers: int = 24) -> torch.nn.Module:
    """A model of about ``total_bytes`` on the meta device: comfy.ops Linear layers of equal size
    (the host can stream them) and one plain torch Linear (it cannot)."""
    n = max(1, int(math.sqrt(total_bytes / layers / 4)))
    ops = host.ops.disable_weight_init
    blocks = [ops.Linear(n, n, bias=False, device=META) for _ in range(layers - 1)]
    blocks.append(torch.nn.Linear(n // 2, n // 2, bias=False, device=META))
    return torch.nn.Sequential(*blocks)


def fresh(host: Host, state: str, capacity: int, ratio: float = 0.4) -> None:
    """A GPU with nothing loaded, in a VRAM state, with ComfyUI's weight-memory ratio."""
    mm = host.mm
    for lm in list(mm.current_loaded_models):
        if lm.model is not None:
            lm.model.detach()
    mm.current_loaded_models.clear()
    mm.vram_state = mm.VRAMState[state]
    mm.MIN_WEIGHT_MEMORY_RATIO = ratio
    host.simulate_gpu(capacity)
    host.events.clear()


def _loaded(host: Host) -> list:
    """current_loaded_models, newest first: [name, loaded bytes, model_lowvram]."""
    out = []
    for lm in host.mm.current_loaded_models:
        p = lm.model
        out.append(None if p is None else [_name(host, p), int(p.loaded_size()), bool(p.model.model_lowvram)])
    return out


def _name(host: Host, patcher: Any) -> str:
    return getattr(patcher, "scenario_name", "?")


# ------------------------------------------------------------------------------------------ scenarios
BUDGET_CASES = [  # (GiB free, GiB of weights, GiB of activations asked for)
    (8, 6, 6), (8, 6, 0), (8, 2, 0), (4, 6, 1), (24, 20, 2), (1.5, 6, 0), (1, 6, 0), (12, 10, 9),
]


def budgets(host: Host) -> dict:
    """The weight budget load_models_gpu gives one model, per VRAM state and weight-memory ratio."""
    out = {}
    for ratio in (0.4, 0.0):  # 0.0 is ComfyUI's value on NVIDIA GPUs
        for state in ("NORMAL_VRAM", "LOW_VRAM", "NO_VRAM", "HIGH_VRAM"):
            for free_gb, model_gb, asked_gb in BUDGET_CASES:
                fresh(host, state, int(free_gb * GiB), ratio)
                p = new_patcher(host, "m", layered_model(host, int(model_gb * GiB)))
                host.mm.load_models_gpu([p], memory_required=int(asked_gb * GiB))
                key = f"{state} ratio={ratio} free={free_gb}G weights={model_gb}G asked={asked_gb}G"
                out[key] = {
                    "budget": next(e[2] for e in host.events if e[0] == "load"),
                    "model_bytes": int(p.model_size()),
                    "loaded_bytes": int(p.loaded_size()),
                    "streamed_layers": sum(1 for m in p.model.modules() if getattr(m, "comfy_cast_weights", False)),
                }
                del p
    return out


def eviction(host: Host) -> dict:
    """Several models on one GPU: who is unloaded (fully or partly) for whom, in which order."""
    out = {}
    for state in ("NORMAL_VRAM", "HIGH_VRAM"):
        fresh(host, state, 10 * GiB)
        models = {}
        steps = []
        plan = [("A", 3, 0), ("B", 2, 0), ("C", 1.5, 0), ("D", 5, 1), ("A", None, 2), ("B", None, 0), ("C", None, 3)]
        for name, size_gb, asked_gb in plan:
            if name not in models:
                models[name] = new_patcher(host, name, layered_model(host, int(size_gb * GiB)))
            host.events.clear()
            host.mm.load_models_gpu([models[name]], memory_required=int(asked_gb * GiB))
            steps.append({"load": name, "asked": asked_gb, "calls": list(host.events), "loaded": _loaded(host)})
        out[state] = steps
        models.clear()
    return out


def weak_reference(host: Host) -> dict:
    """ComfyUI holds a loaded model's patcher only weakly."""
    fresh(host, "NORMAL_VRAM", 8 * GiB)
    p = new_patcher(host, "P", layered_model(host, GiB))
    host.mm.load_models_gpu([p])
    before = len(host.mm.current_loaded_models)
    del p
    gc.collect()
    after_drop = len(host.mm.current_loaded_models)

    q = new_patcher(host, "Q", layered_model(host, GiB))
    host.mm.load_models_gpu([q])
    module = q.model  # the module outlives its patcher
    del q
    gc.collect()
    entry_patcher_gone = [lm.model is None for lm in host.mm.current_loaded_models]
    r = new_patcher(host, "R", layered_model(host, GiB))
    host.mm.load_models_gpu([r])
    after_next_load = [None if lm.model is None else _name(host, lm.model) for lm in host.mm.current_loaded_models]
    del module, r
    gc.collect()
    return {"entries_after_load": before, "entries_after_dropping_the_patcher": after_drop,
            "patcher_dropped_module_kept": entry_patcher_gone, "entries_after_next_load": after_next_load}


class _Block(torch.nn.Module):
    """Layers of every kind the patcher treats differently: comfy.ops layers, a plain torch layer,
    a parameter held by a module with children, a buffer."""

    def __init__(self, ops: Any):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(16))
        self.big = ops.Linear(64, 64)
        self.mid = ops.Linear(32, 32)
        self.small = ops.Linear(8, 8)
        self.plain = torch.nn.Linear(24, 24)
        self.norm = ops.GroupNorm(2, 16)
        self.register_buffer("table", torch.zeros(10))


def placement(host: Host) -> dict:
    """Where ModelPatcher.load leaves each tensor of a CPU model (meta = the GPU), which layers it
    marks to cast per call; then what partially_unload and detach change (offload device: meta
    as well, since meta tensors cannot come back)."""

    def where(model: torch.nn.Module) -> dict:
        tensors = {n: t.device.type for n, t in list(model.named_parameters()) + list(model.named_buffers())}
        cast = sorted(n for n, m in model.named_modules() if getattr(m, "comfy_cast_weights", False))
        return {"devices": tensors, "cast_per_call": cast, "loaded_bytes": int(model.model_loaded_weight_memory),
                "lowvram": bool(model.model_lowvram)}

    out = {}
    for label, budget, full in (("budget 1 byte", 1, False), ("budget 20000 bytes", 20000, False),
                                ("budget 40000 bytes", 40000, False), ("full load", 0, True)):
        model = _Block(host.ops.disable_weight_init)
        p = new_patcher(host, "block", model, load=META, offload=META)
        p.load(META, lowvram_model_memory=budget, full_load=full)
        out[label] = where(model)
        if label == "budget 40000 bytes":
            freed = p.partially_unload(META, 5000)
            out["then partially_unload 5000 bytes"] = {"freed": int(freed), **where(model)}
            p.detach()
            out["then detach"] = where(model)
    model = _Block(host.ops.disable_weight_init)
    p = new_patcher(host, "block", model, load=META, offload=META)
    p.load(META, lowvram_model_memory=40000)
    smallest = min(_bytes(m) for m in (model.norm, model.small))
    out["partially_unload exactly the smallest layer"] = {"asked": smallest, "freed": int(p.partially_unload(META, smallest)),
                                                          **where(model)}
    return out



def progress(host: Host) -> list:
    """Calls the progress hook gets, and when a bar picks the hook up."""
    calls: list = []
    utils = host.utils
    old = utils.PROGRESS_BAR_HOOK
    try:
        early = utils.ProgressBar(3)  # made before the hook is set: never calls it
        utils.set_progress_bar_global_hook(lambda *a, **k: calls.append({"args": list(a), "kwargs": k}))
        early.update(1)
        bar = utils.ProgressBar(5)
        bar.update_absolute(2)
        bar.update_absolute(7, 10, None)
        bar.update_absolute(12)
        bar.update(1)
        utils.ProgressBar(4, node_id="17").update(2)
    finally:
        utils.set_progress_bar_global_hook(old)
    return calls


def interrupts(host: Host) -> dict:
    mm = host.mm
    mm.interrupt_current_processing(True)
    flagged = mm.processing_interrupted()
    try:
        mm.throw_exception_if_processing_interrupted()
        raised = None
    except mm.InterruptProcessingException as exc:
        raised = type(exc).__name__
    return {"flag_after_interrupt": flagged, "raised": raised, "flag_after_raise": mm.processing_interrupted()}


def folders(host: Host) -> dict:
    """add_model_folder_path on a new name, again, with is_default, and the legacy name 'unet'."""
    fp = host.folder_paths
    name = "videomama_scenario"
    steps = [("/a", False), ("/b", False), ("/a", False), ("/c", True), ("/b", True)]
    seen = []
    try:
        for path, default in steps:
            fp.add_model_folder_path(name, path, is_default=default)
            seen.append(fp.get_folder_paths(name))
    finally:
        fp.folder_names_and_paths.pop(name, None)
    return {"paths_after_each_add": seen, "unet_is_diffusion_models": fp.get_folder_paths("unet") ==
            fp.get_folder_paths("diffusion_models")}


def save_paths(host: Host) -> dict:
    """get_save_image_path's counter over names a sequence writer leaves, and a prefix that
    leaves the output folder."""
    import os
    import tempfile

    fp = host.folder_paths
    seen = []
    with tempfile.TemporaryDirectory() as out:
        out = os.path.realpath(out)
        for files in ([], ["matte_00001_.1001.png"], ["matte_00003_.1001.png", "matte_00007.png", "matte_x_.png",
                      "other_00009_.png", "matte_5"], ["matte_00012_.0001.exr"]):
            for name in files:
                os.makedirs(os.path.join(out, "vm"), exist_ok=True)
                open(os.path.join(out, "vm", name), "w").close()
            folder, filename, counter, subfolder, _prefix = fp.get_save_image_path("vm/matte", out)
            seen.append([os.path.relpath(folder, out), filename, counter, subfolder])
        try:
            fp.get_save_image_path("../escape/matte", out)
            escaped = "allowed"
        except Exception:
            escaped = "refused"
    return {"after_each": seen, "outside_output_folder": escaped}


def devices(host: Host) -> dict:
    """With --cpu: where models compute and wait, and the dtypes 'auto' gets on the CPU."""
    mm = host.mm
    cpu = torch.device("cpu")
    offload = {}
    for state in ("DISABLED", "NORMAL_VRAM", "HIGH_VRAM"):
        mm.vram_state = mm.VRAMState[state]
        offload[state] = str(mm.unet_offload_device())
    mm.vram_state = mm.VRAMState.DISABLED
    return {
        "torch_device": str(mm.get_torch_device()),
        "intermediate_device": str(mm.intermediate_device()),
        "unet_offload_device": offload,
        "unet_dtype_cpu": str(mm.unet_dtype(device=cpu, supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])),
        "vae_dtype_cpu": str(mm.vae_dtype(device=cpu, allowed_dtypes=[torch.bfloat16, torch.float32])),
        "minimum_inference_memory": _num(mm.minimum_inference_memory()),
        "extra_reserved_memory": _num(mm.extra_reserved_memory()),
    }


SCENARIOS: dict[str, Callable[[Host], Any]] = {
    "devices": devices, "budgets": budgets, "eviction": eviction, "weak_reference": weak_reference,
    "placement": placement, "progress": progress, "interrupts": interrupts, "folders": folders,
    "save_paths": save_paths,
}


def run_all(host: Host) -> dict:
    out = {}
    for name, scenario in SCENARIOS.items():
        out[name] = scenario(host)
    fresh(host, "DISABLED", 0)
    return out
