"""The one place where the pack talks to ComfyUI itself.

Everything that touches ``folder_paths``, ``comfy.model_management``, ``ModelPatcher``,
``comfy.ops`` or ``comfy.utils.ProgressBar`` lives here; the node classes only call the
functions below and the host-independent ``videomama`` library.

ComfyUI is imported lazily (inside the functions), so this module imports cleanly without
ComfyUI. Listing functions then return the placeholder choice; functions that need the host
raise :class:`HostUnavailable`.

Model management (the shared part):

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
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..videomama.errors import Cancelled, CheckpointError, InputError
from ..videomama.options import DTYPES
from ..videomama.weights.files import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES

log = logging.getLogger(__name__)

VIDEOMAMA_FOLDER = "videomama"
SAM2_FOLDER = "sam2"
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
_MAX_FOLDER_DEPTH = 4  # how deep we look for diffusers folders (config.json) under a models folder

# The one table of the precision settings of our loader nodes ("auto" = ComfyUI's choice).
PRECISION_DTYPES = DTYPES  # the library's one table of precision names
PRECISIONS = ("auto", *PRECISION_DTYPES)

# What an empty model list shows: short, so the combo keeps its label on a normal-width node.
# The error raised when one is picked (and the inputs' tooltips) say where the files go.
UNET_PLACEHOLDER = "(no UNet found)"
VAE_PLACEHOLDER = "(no VAE found)"
SAM2_PLACEHOLDER = "(no SAM2 found)"
_WHERE_FILES_GO = {
    UNET_PLACEHOLDER: "Put the 'unet' folder of the SammyLim/VideoMaMa release into ComfyUI/models/videomama",
    VAE_PLACEHOLDER: "Put svd_xt.safetensors or svd_xt_1_1.safetensors into ComfyUI/models/checkpoints, or the "
                     "'vae' folder of stable-video-diffusion-img2vid-xt into ComfyUI/models/videomama",
    SAM2_PLACEHOLDER: "Put an official SAM2/SAM2.1 .pt (e.g. sam2.1_hiera_tiny.pt) into ComfyUI/models/sam2",
}


class HostUnavailable(RuntimeError):
    """ComfyUI's own modules cannot be imported (the pack is used outside ComfyUI)."""


# ----------------------------------------------------------------------------------------------
# access to ComfyUI modules
# ----------------------------------------------------------------------------------------------
def _folder_paths() -> Any | None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return folder_paths


def _mm() -> Any:
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError as exc:
        raise HostUnavailable(
            "ComfyUI's comfy.model_management is not importable: these nodes run inside ComfyUI. "
            "Outside ComfyUI use the library (python -m videomama)."
        ) from exc
    return mm


# ----------------------------------------------------------------------------------------------
# model folders
# ----------------------------------------------------------------------------------------------
def register_model_folders() -> None:
    """Register ``models/videomama`` and ``models/sam2`` with ComfyUI.

    ``add_model_folder_path`` appends to a name that ``extra_model_paths.yaml`` already defined
    (those entries stay first) and creates it otherwise; nothing is replaced. No-op outside
    ComfyUI.
    """
    fp = _folder_paths()
    if fp is None:
        return
    for name in (VIDEOMAMA_FOLDER, SAM2_FOLDER):
        fp.add_model_folder_path(name, os.path.join(fp.models_dir, name))


def _dirs(folder: str) -> list[Path]:
    fp = _folder_paths()
    if fp is None:
        return []
    try:
        return [Path(d) for d in fp.get_folder_paths(folder)]
    except KeyError:  # a folder name this ComfyUI does not know (e.g. an old version)
        return []


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk with a depth limit, following symlinks, skipping hidden folders."""
    if not root.is_dir():
        return
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if len(here.parts) - base_depth >= _MAX_FOLDER_DEPTH:
            dirnames[:] = []
        yield here, dirnames, filenames


@functools.lru_cache(maxsize=4096)
def _identified(path: str, size: int, mtime_ns: int) -> str:
    """The library's identification of a weight file or diffusers folder, cached by size and mtime.

    Safetensors files are identified from their header (cheap); folders from their config.json.
    """
    from ..videomama.weights.checkpoints import identify

    try:
        info = identify(path)
    except Exception as exc:
        log.debug("cannot identify %s: %s", path, exc)
        return "unreadable"
    if info.kind == "svd_checkpoint":
        return "svd_checkpoint_with_vae" if info.has_vae else "svd_checkpoint"
    return info.kind


def _kind(path: Path) -> str | None:
    """What a listed path holds; None for pickles (reading one costs a full unpickle: they are
    identified when loaded)."""
    if path.is_dir():
        stamp = path / "config.json"
    elif path.suffix.lower() in SAFETENSORS_SUFFIXES:
        stamp = path
    else:
        return None
    try:
        st = stamp.stat()
    except OSError:
        return "unreadable"
    return _identified(str(path), st.st_size, st.st_mtime_ns)


@dataclass
class _Listing:
    files: list[tuple[str, Path]] = field(default_factory=list)  # (label, path)
    folders: list[tuple[str, Path, str]] = field(default_factory=list)  # (label, path, kind)


def _scan(folder: str) -> _Listing:
    """Weight files and diffusers model folders under every directory registered as ``folder``.

    Labels are ``<folder>/<path relative to that directory>`` with forward slashes. Files
    inside a diffusers folder (one holding config.json) belong to that folder, not the list.
    """
    out = _Listing()
    seen: set[str] = set()
    for root in _dirs(folder):
        for here, _dirnames, filenames in _walk(root):
            rel = here.relative_to(root).as_posix()
            if "config.json" in filenames:
                label = f"{folder}/{rel}"
                if rel != "." and label not in seen:
                    seen.add(label)
                    out.folders.append((label, here, _kind(here) or "unknown"))
                continue  # weights next to a config.json are that folder's
            for name in sorted(filenames):
                if not name.lower().endswith(WEIGHT_SUFFIXES):
                    continue
                label = f"{folder}/{name}" if rel == "." else f"{folder}/{rel}/{name}"
                if label not in seen:
                    seen.add(label)
                    out.files.append((label, here / name))
    return out


def unet_choices() -> list[str]:
    """VideoMaMa UNets: diffusers folders (12-channel UNetSpatioTemporalConditionModel config.json)
    and weight files under models/videomama and models/diffusion_models (safetensors are
    checked by their tensor names; pickles only by their folder/name). Never empty."""
    labels: list[str] = []
    for folder in (VIDEOMAMA_FOLDER, "diffusion_models", "diffusers"):
        listing = _scan(folder)
        labels += [label for label, _, kind in listing.folders if kind == "videomama_unet"]
        if folder == "diffusers":
            continue
        for label, path in listing.files:
            kind = _kind(path)
            if kind == "videomama_unet":
                labels.append(label)
            elif kind is None and (folder == VIDEOMAMA_FOLDER or "videomama" in path.name.lower()):
                labels.append(label)  # a pickle: identified when loaded
    return sorted(dict.fromkeys(labels)) or [UNET_PLACEHOLDER]


def vae_choices() -> list[str]:
    """SVD's temporal VAE: svd*.safetensors single-file checkpoints under models/checkpoints,
    VAE files under models/vae and models/videomama, and diffusers vae/ folders. Never empty."""
    labels: list[str] = []
    for folder in (VIDEOMAMA_FOLDER, "checkpoints", "vae", "diffusers"):
        listing = _scan(folder)
        labels += [label for label, _, kind in listing.folders if kind == "temporal_vae"]
        for label, path in listing.files:
            if folder == "checkpoints" and not re.search(r"svd", path.name, re.IGNORECASE):
                continue  # only Stable Video Diffusion checkpoints carry this VAE
            kind = _kind(path)
            if kind in ("temporal_vae", "svd_checkpoint_with_vae") or kind is None and (folder == VIDEOMAMA_FOLDER or re.search(r"svd", path.name, re.IGNORECASE)):
                labels.append(label)
    return sorted(dict.fromkeys(labels)) or [VAE_PLACEHOLDER]


def sam2_choices() -> list[str]:
    """SAM2 / SAM2.1 / SAM2-Matte checkpoints (.pt or .safetensors) under models/sam2. Never empty."""
    labels = [label for label, _ in _scan(SAM2_FOLDER).files]
    return sorted(labels) or [SAM2_PLACEHOLDER]


def resolve_choice(label: str, what: str) -> Path:
    """The path behind a label from :func:`unet_choices` / :func:`vae_choices` / :func:`sam2_choices`.

    Raises CheckpointError that says what to put where for a placeholder or a vanished file.
    """
    if label in _WHERE_FILES_GO:
        raise CheckpointError(f"{what}: no weights were found. {_WHERE_FILES_GO[label]}, then press R to refresh.")
    folder, _, rel = label.partition("/")
    searched = _dirs(folder)
    for root in searched:
        candidate = root / rel
        if rel and ".." not in Path(rel).parts and candidate.exists():
            return candidate
    where = ", ".join(str(d) for d in searched) or f"models/{folder} (not registered in this ComfyUI)"
    raise CheckpointError(
        f"{what}: '{label}' was not found (looked in {where}). It may have been moved or deleted; "
        "press R in ComfyUI to refresh the list and pick the file again."
    )


# ----------------------------------------------------------------------------------------------
# devices and dtypes
# ----------------------------------------------------------------------------------------------
def torch_device() -> torch.device:
    """The device ComfyUI computes on (``cpu`` under --cpu)."""
    return _mm().get_torch_device()


def intermediate_device() -> torch.device:
    """Where node outputs live between nodes (``cpu`` unless --gpu-only)."""
    return _mm().intermediate_device()


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
    mm = _mm()
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


# ----------------------------------------------------------------------------------------------
# model management
# ----------------------------------------------------------------------------------------------
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
    mm = _mm()
    if streamable:
        n = make_streamable(model)
        log.debug("%s: %d layers switched to comfy.ops", description, n)
    patcher = _patcher_class()(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    return HostedModel(patcher=patcher, description=description, info=dict(info))


def load_for_inference(hosted: HostedModel, memory_required: int = 0) -> nn.Module:
    """Let ComfyUI place the model for a run (freeing other models as needed); returns the module.

    memory_required: bytes of activations the run needs on the device besides the weights.
    """
    mm = _mm()
    mm.load_models_gpu([hosted.patcher], memory_required=int(memory_required))
    return hosted.model


def free_memory_for(hosted: HostedModel) -> int | None:
    """Device bytes a run can count on for activations if our weights stay resident: what is
    free now plus what other models hold there (ComfyUI unloads them on demand), minus our
    weights. None when the model computes on the CPU (no device memory to plan for)."""
    mm = _mm()
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
    _mm().soft_empty_cache()


# ----------------------------------------------------------------------------------------------
# progress and interruption
# ----------------------------------------------------------------------------------------------
class Progress:
    """A library ``progress(done, total)`` callback driving ComfyUI's progress bar.

    Under a running server each update also checks the user's cancel button (ComfyUI's hook
    raises its InterruptProcessingException there).
    """

    def __init__(self, total: int):
        import comfy.utils  # type: ignore[import-not-found]

        self.bar = comfy.utils.ProgressBar(int(total))
        self.calls = 0

    def __call__(self, done: int, total: int) -> None:
        self.calls += 1
        self.bar.update_absolute(int(done), int(total))


def should_cancel() -> bool:
    """The library's ``should_cancel``: has the user pressed cancel (POST /interrupt)?"""
    return bool(_mm().processing_interrupted())


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn the library's :class:`Cancelled` into ComfyUI's interrupt, so the run ends as
    'interrupted' (not as an error) and the flag is cleared for the next run."""
    try:
        yield
    except Cancelled as exc:
        mm = _mm()
        mm.throw_exception_if_processing_interrupted()  # raises and clears the flag
        raise mm.InterruptProcessingException() from exc


def progress_and_cancel(total: int) -> tuple[Callable[[int, int], None], Callable[[], bool]]:
    return Progress(total), should_cancel


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

