"""Stand-in for comfy.model_management: devices, dtypes, load_models_gpu, eviction, interrupts.

The simulated GPU is any device ``is_device_cpu`` says is not the CPU: ``GPU_MEMORY`` bytes, minus
what the live patchers have loaded onto it (``get_free_memory``). Tests steer it through the module globals
``DEVICE`` (what ``get_torch_device`` answers; ``torch.device("meta")`` simulates a GPU on which
nothing can be computed), ``vram_state``, ``GPU_MEMORY`` and ``MIN_WEIGHT_MEMORY_RATIO`` (0.4;
ComfyUI uses 0.0 on NVIDIA). ``LOAD_CALLS`` records every load_models_gpu call.

Behaviour imitated (checked against ComfyUI 0.3.64 by tests/test_comfy_standin.py):

* ``load_models_gpu(models, memory_required)`` keeps ``max(0.8 GiB + 0.4 GiB,
  memory_required + 0.4 GiB)`` free for inference. It first frees 1.1 x what the models still
  need plus that reserve, then, if less than the reserve is free, frees up to the reserve.
  In LOW_VRAM/NORMAL_VRAM the weights get ``max(128 MiB, free - reserve, min(free * ratio,
  free - 1.2 GiB))`` where free counts the model's own loaded bytes, minus those bytes;
  NO_VRAM gets 0.1 byte; HIGH_VRAM, a CPU load device or ``force_full_load`` a full load.
* Eviction (``free_memory``) considers the loaded models of that device, the model being
  loaded excepted, most offloaded bytes first, then fewest references, then smallest, then
  oldest; each one is unloaded only as far as needed (a partial unload when that suffices).
* ``current_loaded_models`` holds weak references to the patchers: a patcher nobody holds
  disappears from it.
"""

from __future__ import annotations

import sys
import threading
import weakref
from enum import Enum

import torch

from . import model_patcher


class VRAMState(Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


GiB = 1024**3
MiB = 1024**2
EXTRA_RESERVED_VRAM = 400 * MiB
MIN_WEIGHT_MEMORY_RATIO = 0.4
CPU_FREE_MEMORY = 64 * GiB

DEVICE = torch.device("cpu")
vram_state = VRAMState.DISABLED
GPU_MEMORY = 8 * GiB
LOAD_CALLS: list[dict] = []
current_loaded_models: list[LoadedModel] = []


def reset() -> None:
    global DEVICE, vram_state, GPU_MEMORY, MIN_WEIGHT_MEMORY_RATIO, _interrupt
    DEVICE = torch.device("cpu")
    vram_state = VRAMState.DISABLED
    GPU_MEMORY = 8 * GiB
    MIN_WEIGHT_MEMORY_RATIO = 0.4
    _interrupt = False
    LOAD_CALLS.clear()
    current_loaded_models.clear()


# ------------------------------------------------------------------------------------------ devices
def get_torch_device():
    return DEVICE


def is_device_cpu(device) -> bool:
    return torch.device(device).type == "cpu"


def unet_offload_device():
    return get_torch_device() if vram_state == VRAMState.HIGH_VRAM else torch.device("cpu")


def intermediate_device():
    return torch.device("cpu")


def get_free_memory(dev=None, torch_free_too=False):
    dev = get_torch_device() if dev is None else torch.device(dev)
    if is_device_cpu(dev):  # a test may let the CPU play the GPU by patching is_device_cpu
        free = CPU_FREE_MEMORY
    else:
        models = {id(p.model): p for p in list(model_patcher.LIVE_PATCHERS) if torch.device(p.load_device) == dev}
        free = GPU_MEMORY - sum(p.loaded_size() for p in models.values())
    return (free, 0) if torch_free_too else free


def extra_reserved_memory() -> int:
    return EXTRA_RESERVED_VRAM


def minimum_inference_memory() -> float:
    return 0.8 * GiB + extra_reserved_memory()


def soft_empty_cache(force=False) -> None:
    return None


# ------------------------------------------------------------------------------------------ dtypes
def unet_dtype(device=None, model_params=0, supported_dtypes=(torch.float16, torch.bfloat16, torch.float32),
               weight_dtype=None):
    """fp32 on the CPU; on the simulated GPU (fp16 and bf16 capable) the first dtype offered."""
    if device is None or is_device_cpu(device):
        return torch.float32
    return supported_dtypes[0]


def vae_dtype(device=None, allowed_dtypes=()):
    if device is None or is_device_cpu(device):
        return torch.float32
    return next(iter(allowed_dtypes), torch.float32)


# ------------------------------------------------------------------------------------------ loaded models
class LoadedModel:
    def __init__(self, patcher):
        self._patcher = weakref.ref(patcher)
        self.device = patcher.load_device
        self.currently_used = True
        self._module = None  # weak reference to the module while it is loaded
        self._finalizer = None

    @property
    def model(self):
        return self._patcher()

    def model_memory(self) -> int:
        return self.model.model_size()

    def model_loaded_memory(self) -> int:
        return self.model.loaded_size()

    def model_offloaded_memory(self) -> int:
        return self.model.model_size() - self.model.loaded_size()

    def model_memory_required(self, device) -> int:
        if device == self.model.current_loaded_device():
            return self.model_offloaded_memory()
        return self.model_memory()

    def model_load(self, lowvram_model_memory=0, force_patch_weights=False):
        self.model.partially_load(self.device, lowvram_model_memory or 1e32, force_patch_weights=force_patch_weights)
        module = self.model.model
        self._module = weakref.ref(module)
        self._finalizer = weakref.finalize(module, cleanup_models)
        return module

    def model_unload(self, memory_to_free=None, unpatch_weights=True) -> bool:
        """Free ``memory_to_free`` bytes (all if None); True if the model is now fully unloaded."""
        partial = memory_to_free is not None and memory_to_free < self.model.loaded_size()
        if partial and self.model.partially_unload(self.model.offload_device, memory_to_free) >= memory_to_free:
            return False
        self.model.detach(unpatch_weights)
        self._forget_module()
        return True

    def _forget_module(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._module = None

    def is_dead(self) -> bool:
        return self._module is not None and self._module() is not None and self.model is None

    def __eq__(self, other) -> bool:
        return self.model is other.model


def cleanup_models() -> None:
    current_loaded_models[:] = [m for m in current_loaded_models if m._module is None or m._module() is not None]


def cleanup_models_gc() -> None:
    if any(m.is_dead() for m in current_loaded_models):
        import gc

        gc.collect()


def free_memory(memory_required, device, keep_loaded=()):
    """Unload models of ``device`` until ``memory_required`` bytes are free; returns those fully unloaded."""
    cleanup_models_gc()
    candidates = []
    for i, lm in enumerate(current_loaded_models):
        if lm.device == device and lm not in keep_loaded and not lm.is_dead():
            candidates.append((-lm.model_offloaded_memory(), sys.getrefcount(lm.model), lm.model_memory(), i))
            lm.currently_used = False
    unloaded = []
    for *_key, i in sorted(candidates):
        free = get_free_memory(device)
        if free > memory_required:
            break
        if current_loaded_models[i].model_unload(memory_required - free):
            unloaded.append(i)
    return [current_loaded_models.pop(i) for i in sorted(unloaded, reverse=True)]


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False):
    cleanup_models_gc()
    inference = minimum_inference_memory()
    reserve = max(inference, memory_required + extra_reserved_memory())
    if minimum_memory_required is not None:
        reserve_min = max(inference, minimum_memory_required + extra_reserved_memory())
    else:
        reserve_min = reserve

    to_load = []
    for patcher in models:
        known = [lm for lm in current_loaded_models if lm.model is patcher]
        to_load.append(known[0] if known else LoadedModel(patcher))
    for lm in to_load:  # entries of the same module (itself, clones) are taken out; loaded again below, first
        for other in [x for x in current_loaded_models if lm.model.is_clone(x.model)]:
            current_loaded_models.remove(other)
            other.model.detach(unpatch_all=False)
            other._forget_module()
        lm.currently_used = True

    needed: dict = {}
    for lm in to_load:
        needed[lm.device] = needed.get(lm.device, 0) + lm.model_memory_required(lm.device)
    for device, need in needed.items():
        if not is_device_cpu(device):
            free_memory(need * 1.1 + reserve, device)
    for device in needed:
        if not is_device_cpu(device) and get_free_memory(device) < reserve_min:
            free_memory(reserve_min, device)

    for lm in to_load:
        patcher = lm.model
        state = VRAMState.DISABLED if is_device_cpu(patcher.load_device) else vram_state
        budget = 0
        if state in (VRAMState.LOW_VRAM, VRAMState.NORMAL_VRAM) and not force_full_load:
            loaded = lm.model_loaded_memory()
            free = get_free_memory(patcher.load_device) + loaded
            budget = max(128 * MiB, free - reserve_min, min(free * MIN_WEIGHT_MEMORY_RATIO, free - inference))
            budget = max(0.1, budget - loaded)
        if state == VRAMState.NO_VRAM:
            budget = 0.1
        LOAD_CALLS.append({"memory_required": memory_required, "budget": budget, "state": state})
        lm.model_load(budget, force_patch_weights=force_patch_weights)
        current_loaded_models.insert(0, lm)


def unload_all_models():
    free_memory(1e30, get_torch_device())


# ------------------------------------------------------------------------------------------ interrupts
class InterruptProcessingException(Exception):
    pass


_interrupt = False
_lock = threading.RLock()


def interrupt_current_processing(value=True):
    global _interrupt
    with _lock:
        _interrupt = value


def processing_interrupted():
    with _lock:
        return _interrupt


def throw_exception_if_processing_interrupted():
    global _interrupt
    with _lock:
        if _interrupt:
            _interrupt = False
            raise InterruptProcessingException()
