"""Model management shared with ComfyUI: devices, dtypes, comfy.ops layers, the patcher, the runner's host.

* :func:`host_model` wraps a model in a :class:`ModelPatcher` subclass so that
  ``comfy.model_management.load_models_gpu`` moves it, frees other models for it, and lets
  other models evict it later. Loading a node's model onto the GPU happens only in
  :func:`load_for_inference` (called by the node that computes), never in a loader node.
* ComfyUI streams weights in low-VRAM modes only for layers built from ``comfy.ops`` classes
  (they carry ``comfy_cast_weights``); plain torch layers that do not fit the budget are
  silently left on the CPU. :func:`make_streamable` therefore switches the classes of the
  diffusers ``Linear/Conv*/GroupNorm/LayerNorm`` layers to their ``comfy.ops`` twins in place
  (same parameters, same forward, bit-identical output), and the patcher subclass moves every
  remaining tensor that ComfyUI did not place (e.g. the ``AlphaBlender`` mix factors, a few
  bytes each; or all of a small model such as SAM2 that is not made streamable) to the load
  device after each load. Under ``--novram`` / ``--lowvram`` the big layers are then cast to
  the GPU one at a time during the forward; nothing is ever on the wrong device.
* :class:`ComfyHost` is the library runner's weight host: MaskToMatte runs
  ``videomama.pipeline.run.run_matte`` with it, so ComfyUI places the weights.
"""

from __future__ import annotations

import functools
import gc
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...videomama.errors import InputError
from ...videomama.options import DTYPES
from .comfy import comfy_mm

log = logging.getLogger(__name__)

# The one table of the precision settings of our loader nodes ("auto" = ComfyUI's choice).
PRECISION_DTYPES = DTYPES  # the library's one table of precision names
PRECISIONS = ("auto", *PRECISION_DTYPES)


def torch_device() -> torch.device:
    """The device ComfyUI computes on (``cpu`` under --cpu)."""
    return comfy_mm().get_torch_device()


def intermediate_device() -> torch.device:
    """Where node outputs live between nodes (``cpu`` unless --gpu-only)."""
    return comfy_mm().intermediate_device()


def precision_dtype(precision: str) -> torch.dtype | None:
    """The dtype a loader's precision setting names; None for "auto" (the host decides)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision '{precision}' is unknown; choose one of {', '.join(PRECISIONS)}.")
    return PRECISION_DTYPES.get(precision)


def model_dtypes(precision: str, device: torch.device, unet_params: int = 0) -> tuple[torch.dtype, torch.dtype]:
    """(UNet dtype, VAE dtype) for the node's precision setting.

    auto: ComfyUI's own choice for the device (``unet_dtype`` over fp16/bf16/fp32, honouring
    --fp16-unet/--bf16-unet/--fp32-unet; ``vae_dtype`` over bf16/fp32, honouring --fp16-vae
    etc., as ComfyUI runs SVD's VAE). fp16/bf16/fp32: both parts in that dtype (fp16 is the
    official VideoMaMa setting on GPUs).
    """
    dtype = precision_dtype(precision)
    if dtype is not None:
        if device.type == "cpu" and dtype != torch.float32:
            log.warning("precision %s on the CPU is slow and may be unsupported by some layers; fp32 is faster there.", precision)
        return dtype, dtype
    mm = comfy_mm()
    unet = mm.unet_dtype(device=device, model_params=unet_params, supported_dtypes=list(PRECISION_DTYPES.values()))
    vae = mm.vae_dtype(device=device, allowed_dtypes=[torch.bfloat16, torch.float32])
    usable = tuple(PRECISION_DTYPES.values())
    if unet not in usable:  # e.g. --fp8_e4m3fn-unet: these layers cannot compute in fp8
        fallback = torch.float32 if device.type == "cpu" else torch.float16
        log.warning("ComfyUI asks for %s weights; VideoMaMa runs in %s instead.", unet, fallback)
        unet = fallback
    if vae not in usable:
        vae = torch.float32
    return unet, vae


def _ops_map() -> dict[type, type]:
    import comfy.ops  # type: ignore[import-not-found]

    ops = comfy.ops.disable_weight_init
    pairs = [
        (nn.Linear, "Linear"), (nn.Conv1d, "Conv1d"), (nn.Conv2d, "Conv2d"), (nn.Conv3d, "Conv3d"),
        (nn.GroupNorm, "GroupNorm"), (nn.LayerNorm, "LayerNorm"),
    ]
    return {torch_cls: getattr(ops, name) for torch_cls, name in pairs if hasattr(ops, name)}


def make_streamable(module: nn.Module) -> int:
    """Switch plain torch layers of ``module`` to their ``comfy.ops.disable_weight_init`` twins in place.

    Those classes are subclasses of the torch layers with the same parameters; their forward is
    the torch forward until ComfyUI's patcher marks a layer ``comfy_cast_weights`` (a layer it
    left on the CPU in a low-VRAM load), and then casts its weights to the input's device and
    dtype at each call. Only exact torch classes are switched (subclasses keep their own
    forward). Returns how many layers were switched.
    """
    mapping = _ops_map()
    count = 0
    for m in module.modules():
        target = mapping.get(type(m))
        if target is not None:
            m.__class__ = target
            count += 1
    return count


def _casts_weights(m: nn.Module) -> bool:
    return bool(getattr(m, "comfy_cast_weights", False))


def place_unmanaged(model: nn.Module, device: torch.device) -> int:
    """Move every tensor ComfyUI's load left behind to ``device``; returns the bytes moved.

    Tensors of layers marked ``comfy_cast_weights`` stay where they are (cast at forward).
    Everything else (parameters of non-leaf modules, buffers, plain layers that did not fit
    the budget) is moved, so no forward ever mixes devices. Moved modules are marked as loaded
    for the patcher (``comfy_patched_weights``) so a partial unload can move them back.
    """
    device = torch.device(device)
    moved = 0
    for m in model.modules():
        if _casts_weights(m):
            continue
        touched = False
        for store in (m._parameters, m._buffers):
            for name, t in list(store.items()):
                if t is None or t.device == device:
                    continue
                new = t.data.to(device)
                if isinstance(t, nn.Parameter):
                    new = nn.Parameter(new, requires_grad=t.requires_grad)
                store[name] = new
                moved += t.nelement() * t.element_size()
                touched = True
        if touched:
            m.comfy_patched_weights = True
    return moved


@functools.cache
def _patcher_class() -> type:
    import comfy.model_patcher  # type: ignore[import-not-found]

    class VideoMaMaPatcher(comfy.model_patcher.ModelPatcher):
        """A ModelPatcher that leaves no tensor on the wrong device after any (partial) load."""

        def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
            super().load(device_to, lowvram_model_memory=lowvram_model_memory,
                         force_patch_weights=force_patch_weights, full_load=full_load)
            if device_to is not None:
                moved = place_unmanaged(self.model, device_to)
                if moved:
                    self.model.model_loaded_weight_memory += moved
                    log.debug("moved %d bytes of unmanaged tensors to %s", moved, device_to)

    return VideoMaMaPatcher


@dataclass(eq=False)
class HostedModel:
    """What a loader node outputs: the model plus the ComfyUI patcher that owns its placement.

    The patcher must live as long as the module (ComfyUI keeps only a weak reference to it);
    the module must not reference the patcher (a cycle delays freeing). ComfyUI's node-output
    cache holds this object, nothing else does.
    """

    patcher: Any
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.patcher.model

    def __repr__(self) -> str:
        return f"HostedModel({self.description})"


def host_model(model: nn.Module, *, streamable: bool, description: str = "", **info: Any) -> HostedModel:
    """Hand ``model`` (on the CPU) to ComfyUI's model management; nothing is moved yet.

    streamable: switch its layers to comfy.ops so low-VRAM modes stream them (big models);
    otherwise the whole model goes to the GPU on load in every mode (small models like SAM2).
    """
    mm = comfy_mm()
    if streamable:
        n = make_streamable(model)
        log.debug("%s: %d layers switched to comfy.ops", description, n)
    patcher = _patcher_class()(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    return HostedModel(patcher=patcher, description=description, info=dict(info))


def load_for_inference(hosted: HostedModel, memory_required: int = 0) -> nn.Module:
    """Let ComfyUI place the model for a run (freeing other models as needed); returns the module.

    memory_required: bytes of activations the run needs on the device besides the weights.
    """
    mm = comfy_mm()
    mm.load_models_gpu([hosted.patcher], memory_required=int(memory_required))
    return hosted.model


def free_memory_for(hosted: HostedModel) -> int | None:
    """Device bytes a run can count on for activations if our weights stay resident: what is
    free now plus what other models hold there (ComfyUI unloads them on demand), minus our
    weights. None when the model computes on the CPU (no device memory to plan for)."""
    mm = comfy_mm()
    device = hosted.patcher.load_device
    if device.type == "cpu":
        return None
    free = int(mm.get_free_memory(device))
    for loaded in list(mm.current_loaded_models):
        patcher = getattr(loaded, "model", None)
        if patcher is not None and patcher is not hosted.patcher and getattr(loaded, "device", None) == device:
            free += int(loaded.model_loaded_memory())
    if any(getattr(x, "model", None) is hosted.patcher for x in mm.current_loaded_models):
        free += int(hosted.patcher.loaded_size())
    return free - int(hosted.patcher.model_size())


def soft_empty_cache() -> None:
    comfy_mm().soft_empty_cache()


class ComfyHost:
    """The library runner's weight host inside ComfyUI (see videomama.pipeline.run.WeightHost).

    ComfyUI's model management places the weights (freeing or partially unloading other
    models, streaming comfy.ops layers in --lowvram/--novram), so plans never stream UNet
    blocks here; the runner tells it how much activation memory a plan needs.
    """

    places_weights = True

    def __init__(self, hosted: HostedModel):
        self.hosted = hosted

    def available_bytes(self, model: nn.Module) -> int | None:
        return free_memory_for(self.hosted)

    def place(self, model: nn.Module, plan: Any, activation_bytes: int) -> None:
        load_for_inference(self.hosted, memory_required=activation_bytes)

    def release(self) -> None:
        gc.collect()  # tensors of the failed attempt held in reference cycles
        soft_empty_cache()

    def finish(self, model: nn.Module) -> None:
        pass  # ComfyUI keeps the model loaded until it needs the memory
