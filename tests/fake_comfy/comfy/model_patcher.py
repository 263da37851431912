"""Stand-in for comfy.model_patcher.ModelPatcher with ComfyUI's placement rules.

load(): leaf modules holding parameters are visited biggest first. A module that has
``comfy_cast_weights`` and does not fit the budget is marked to cast its weights per call
(it stays on the offload device); any other module is moved only if it fits (or on a full
load). Plain modules that do not fit are silently left where they are, and parameters of
non-leaf modules are only moved by a full load: the behaviour the pack must cope with.
"""

from __future__ import annotations

import torch


def _size(module: torch.nn.Module) -> int:
    return sum(t.nelement() * t.element_size() for t in module.state_dict().values())


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model = model
        self.load_device = load_device
        self.offload_device = offload_device
        self.size = size
        self.parent = None
        if getattr(model, "device", None) is None:
            model.device = offload_device
        for name, value in (("model_loaded_weight_memory", 0), ("model_lowvram", False)):
            if not hasattr(model, name):
                setattr(model, name, value)

    def model_size(self) -> int:
        return self.size if self.size > 0 else _size(self.model)

    def loaded_size(self) -> int:
        return self.model.model_loaded_weight_memory

    def _load_list(self):
        out = []
        for name, m in self.model.named_modules():
            own = [n for n, _ in m.named_parameters(recurse=False)]
            every = [n for n, _ in m.named_parameters()]
            if len(own) != len(every):
                continue  # parameters held by a module with children: never in the list
            if own or hasattr(m, "comfy_cast_weights"):
                out.append((_size(m), name, m))
        out.sort(key=lambda x: x[0], reverse=True)
        return out

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        mem = 0
        lowvram = 0
        for size, _name, m in self._load_list():
            if not full_load and hasattr(m, "comfy_cast_weights") and mem + size >= lowvram_model_memory:
                m.comfy_cast_weights = True
                lowvram += 1
                continue
            if hasattr(m, "comfy_cast_weights"):
                m.comfy_cast_weights = False
            if full_load or mem + size < lowvram_model_memory:
                mem += size
                m.to(device_to)
        if lowvram == 0 and full_load:
            self.model.to(device_to)
            mem = self.model_size()
        self.model.model_lowvram = lowvram > 0
        self.model.device = device_to
        self.model.model_loaded_weight_memory = mem

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        if not self.model.model_lowvram and self.model.model_loaded_weight_memory > 0:
            return 0  # ComfyUI treats a model loaded without lowvram layers as fully loaded
        before = self.model.model_loaded_weight_memory
        full = before + extra_memory > self.model_size()
        self.load(device_to, lowvram_model_memory=before + extra_memory, full_load=full)
        return self.model.model_loaded_weight_memory - before

    def detach(self, unpatch_all=True):
        for m in self.model.modules():
            if hasattr(m, "comfy_cast_weights"):
                m.comfy_cast_weights = False
        self.model.to(self.offload_device)
        self.model.device = self.offload_device
        self.model.model_loaded_weight_memory = 0
        self.model.model_lowvram = False
        return self.model
