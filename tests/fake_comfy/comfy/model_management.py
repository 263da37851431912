"""Stand-in for comfy.model_management: devices, dtypes, load_models_gpu's budget, interrupts.

Tests steer it through the module globals: ``DEVICE`` (the "GPU"; torch.device("meta")
simulates one that cannot compute), ``vram_state``, ``FREE_MEMORY`` (bytes free on DEVICE).
``LOAD_CALLS`` records every load_models_gpu call.
"""

from __future__ import annotations

import threading
from enum import Enum

import torch


class VRAMState(Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


DEVICE = torch.device("cpu")
vram_state = VRAMState.DISABLED
FREE_MEMORY = 8 * 2**30
MIN_BUDGET = 128 * 2**20  # ComfyUI never budgets less than this for weights in LOW/NORMAL
LOAD_CALLS: list[dict] = []
current_loaded_models: list = []


class LoadedModel:
    def __init__(self, patcher):
        self.model = patcher
        self.device = patcher.load_device

    def model_loaded_memory(self):
        return self.model.loaded_size()


def get_free_memory(dev=None, torch_free_too=False):
    return (FREE_MEMORY, FREE_MEMORY) if torch_free_too else FREE_MEMORY


class InterruptProcessingException(Exception):
    pass


_interrupt = False
_lock = threading.RLock()


def reset() -> None:
    global DEVICE, vram_state, FREE_MEMORY, MIN_BUDGET, _interrupt
    DEVICE = torch.device("cpu")
    vram_state = VRAMState.DISABLED
    FREE_MEMORY = 8 * 2**30
    MIN_BUDGET = 128 * 2**20
    _interrupt = False
    LOAD_CALLS.clear()
    current_loaded_models.clear()


def get_torch_device():
    return DEVICE


def unet_offload_device():
    return DEVICE if vram_state == VRAMState.HIGH_VRAM else torch.device("cpu")


def intermediate_device():
    return torch.device("cpu")


def _fast_half(device) -> bool:
    return torch.device(device).type != "cpu"


def unet_dtype(device=None, model_params=0, supported_dtypes=(torch.float16, torch.bfloat16, torch.float32), weight_dtype=None):
    for dt in supported_dtypes:
        if dt in (torch.float16, torch.bfloat16) and device is not None and _fast_half(device):
            return dt
    return torch.float32


def vae_dtype(device=None, allowed_dtypes=()):
    for dt in allowed_dtypes:
        if dt in (torch.float16, torch.bfloat16) and device is not None and _fast_half(device):
            return dt
    return torch.float32


def soft_empty_cache(force=False):
    return None


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None, force_full_load=False):
    for patcher in models:
        if vram_state in (VRAMState.DISABLED, VRAMState.HIGH_VRAM) or force_full_load:
            budget = 0  # full load
        else:
            budget = max(MIN_BUDGET, FREE_MEMORY - memory_required)
        if vram_state == VRAMState.NO_VRAM:
            budget = 0.1
        LOAD_CALLS.append({"patcher": patcher, "memory_required": memory_required, "budget": budget,
                           "state": vram_state})
        patcher.partially_load(patcher.load_device, budget or 1e32)
        if not any(lm.model is patcher for lm in current_loaded_models):
            current_loaded_models.insert(0, LoadedModel(patcher))


def unload_all_models():
    for lm in current_loaded_models:
        lm.model.detach()
    current_loaded_models.clear()


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
