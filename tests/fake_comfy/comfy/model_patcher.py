"""Stand-in for comfy.model_patcher.ModelPatcher: where a model's weights are, layer by layer.

Behaviour imitated (checked against ComfyUI 0.3.64 by tests/test_comfy_standin.py):

* The load list holds the modules whose parameters are all their own (leaf-like) and the
  modules carrying ``comfy_cast_weights`` (comfy.ops layers); parameters held by a module with
  children are never in it. Loading visits the list biggest first (ties: name, descending).
* ``load(device, budget)``: a comfy.ops layer that would cross the budget is marked to cast its
  weights per call and stays where it is; any other module is moved if it fits, else silently
  left behind (plain torch layers, parameters of non-leaf modules). A full load moves the whole
  model. ``model_loaded_weight_memory`` counts the bytes moved.
* ``partially_load(device, extra)``: a model loaded without cast layers counts as complete;
  otherwise it is loaded again with ``extra`` more bytes (a full load once that covers it).
* ``partially_unload(device, bytes)``: smallest modules first, until more than ``bytes`` were
  freed; comfy.ops layers moved off are marked to cast per call.
* ``detach()``: everything back to the offload device, marks cleared.
"""

from __future__ import annotations

import weakref

import torch

LIVE_PATCHERS: weakref.WeakSet[ModelPatcher] = weakref.WeakSet()  # the simulated GPU's memory (model_management)


def module_size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


def _restore_cast_flag(m: torch.nn.Module) -> None:
    if hasattr(m, "prev_comfy_cast_weights"):
        m.comfy_cast_weights = m.prev_comfy_cast_weights
        del m.prev_comfy_cast_weights


def _mark_cast(m: torch.nn.Module) -> None:
    m.prev_comfy_cast_weights = m.comfy_cast_weights
    m.comfy_cast_weights = True


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        self.parent = None
        if getattr(model, "device", None) is None:
            model.device = offload_device
        for name, value in (("model_loaded_weight_memory", 0), ("model_lowvram", False), ("lowvram_patch_counter", 0)):
            if not hasattr(model, name):
                setattr(model, name, value)
        self.model_size()
        LIVE_PATCHERS.add(self)

    # ---------------------------------------------------------------- sizes
    def model_size(self) -> int:
        if self.size <= 0:
            self.size = module_size(self.model)
        return self.size

    def loaded_size(self) -> int:
        return self.model.model_loaded_weight_memory

    def current_loaded_device(self):
        return self.model.device

    def lowvram_patch_counter(self) -> int:
        return self.model.lowvram_patch_counter

    def is_clone(self, other) -> bool:
        return getattr(other, "model", None) is self.model

    def model_patches_to(self, device) -> None:
        pass  # no model patches in this stand-in

    def model_patches_models(self) -> list:
        return []

    def model_dtype(self):
        return self.model.get_dtype() if hasattr(self.model, "get_dtype") else None

    # ---------------------------------------------------------------- placement
    def _load_list(self) -> list[tuple[int, str, torch.nn.Module]]:
        out = []
        for name, m in self.model.named_modules():
            own = {n for n, _ in m.named_parameters(recurse=False)}
            if any(n not in own for n, _ in m.named_parameters()):
                continue  # a parameter of a child module: this one is not a leaf
            if own or hasattr(m, "comfy_cast_weights"):
                out.append((module_size(m), name, m))
        return out

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        moved = 0
        casting = 0
        to_move = []
        for size, _name, m in sorted(self._load_list(), key=lambda x: (x[0], x[1]), reverse=True):
            castable = hasattr(m, "comfy_cast_weights")
            if castable and not full_load and moved + size >= lowvram_model_memory:
                casting += 1
                if not hasattr(m, "prev_comfy_cast_weights"):
                    _mark_cast(m)
                continue
            if castable:
                _restore_cast_flag(m)
            if full_load or moved + size < lowvram_model_memory:
                moved += size
                to_move.append(m)
        for m in to_move:
            m.comfy_patched_weights = True
            m.to(device_to)
        self.model.model_lowvram = casting > 0
        if casting == 0 and full_load:
            self.model.to(device_to)
            moved = self.model_size()
        self.model.device = device_to
        self.model.model_loaded_weight_memory = moved

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        if not self.model.model_lowvram and self.model.model_loaded_weight_memory > 0:
            return 0
        before = self.model.model_loaded_weight_memory
        full = before + extra_memory > self.model_size()
        self.load(device_to, lowvram_model_memory=before + extra_memory, full_load=full)
        return self.model.model_loaded_weight_memory - before

    def partially_unload(self, device_to, memory_to_free=0):
        freed = 0
        for size, _name, m in sorted(self._load_list(), key=lambda x: (x[0], x[1])):
            if freed > memory_to_free:
                break
            if getattr(m, "comfy_patched_weights", False) is not True:
                continue
            m.to(device_to)
            if hasattr(m, "comfy_cast_weights"):
                _mark_cast(m)
            m.comfy_patched_weights = False
            freed += size
        self.model.model_lowvram = True
        self.model.model_loaded_weight_memory -= freed
        return freed

    def detach(self, unpatch_all=True):
        if unpatch_all:
            for m in self.model.modules():
                _restore_cast_flag(m)
                if hasattr(m, "comfy_patched_weights"):
                    del m.comfy_patched_weights
            self.model.model_lowvram = False
            self.model.lowvram_patch_counter = 0
            self.model.to(self.offload_device)
            self.model.device = self.offload_device
            self.model.model_loaded_weight_memory = 0
        return self.model
