"""The parts of SAM2 tracking that need the ``sam2`` package at import time.

Only imported inside functions (through :func:`videomama.sam2.available.require_sam2`), so the
rest of the library and the ComfyUI pack import fine when ``sam2`` is not installed.

What is here:

- :class:`VideoMaMaSAM2Predictor`, a ``SAM2VideoPredictor`` that
  * keeps stored memory features in a chosen dtype. SAM2 stores them as bfloat16; on a CPU,
    without autocast, a frame whose memory bank holds only those bf16 features (no object
    pointer yet, e.g. an object tracked towards a prompt that lies ahead of it) fails in the
    memory attention (``mat1 and mat2 must have the same dtype``). Float32 storage removes
    that failure without changing any number (bf16 values are exact in fp32);
  * moves per-frame outputs to the storage device (the CPU with ``offload_to_cpu``) itself,
    with completed copies. SAM2 offloads with ``non_blocking=True`` into pageable memory and
    later reads those buffers on the host (and our dtype cast would too) before the copy has
    landed; here every stored tensor is final when it is stored;
  * runs SAM2's hole filling only where it can run: the optional ``sam2._C`` CUDA extension
    built, and the model on a CUDA device (it is decided from where the model is now, so a
    host moving the model needs no bookkeeping).
- :func:`new_inference_state`, the in-memory equivalent of ``SAM2VideoPredictor.init_state``:
  the same dictionary, but frames come from any indexable sequence of already-normalised
  ``(3, S, S)`` tensors instead of a JPEG folder.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

# Key we add to SAM2's inference-state dict: the dtype stored memory features are cast to
# (None keeps SAM2's bfloat16).
MEMORY_DTYPE_KEY = "videomama_memory_dtype"


@functools.lru_cache(maxsize=1)
def cuda_extension_available() -> bool:
    """Whether SAM2's optional CUDA extension ``sam2._C`` (connected components) is importable.

    Without it SAM2 cannot fill small holes (background islands of at most 8 pixels of the
    1/4-resolution mask); that post-processing is then off. Nothing else depends on it.
    """
    try:
        from sam2 import _C  # noqa: F401
    except Exception:  # ImportError, or an ABI mismatch of a stale build
        return False
    return True


@contextmanager
def _outputs_on_compute_device(state: dict[str, Any]) -> Iterator[torch.device]:
    """Let SAM2 keep a frame's outputs on the compute device; yields the real storage device."""
    storage = state["storage_device"]
    state["storage_device"] = state["device"]
    try:
        yield storage
    finally:
        state["storage_device"] = storage


def _store(t: torch.Tensor, storage: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    # A blocking copy: the tensor is complete when SAM2 (or anyone) reads it on the host.
    return t.to(device=storage, dtype=dtype or t.dtype)


class VideoMaMaSAM2Predictor(SAM2VideoPredictor):
    """``SAM2VideoPredictor`` with memory dtype, completed offloading and device-aware hole filling."""

    @property
    def fill_hole_area(self) -> int:
        configured = int(self.__dict__.get("_configured_fill_hole_area", 0))
        if configured > 0 and self.device.type == "cuda" and cuda_extension_available():
            return configured
        return 0

    @fill_hole_area.setter
    def fill_hole_area(self, value: int) -> None:
        self.__dict__["_configured_fill_hole_area"] = int(value)

    @property
    def configured_fill_hole_area(self) -> int:
        """The hole-filling area the config asks for (whether or not it can run here)."""
        return int(self.__dict__.get("_configured_fill_hole_area", 0))

    def _run_single_frame_inference(self, inference_state: dict[str, Any], *args: Any, **kwargs: Any):
        with _outputs_on_compute_device(inference_state) as storage:
            current_out, pred_masks = super()._run_single_frame_inference(inference_state, *args, **kwargs)
        dtype = inference_state.get(MEMORY_DTYPE_KEY)
        if current_out["maskmem_features"] is not None:
            current_out["maskmem_features"] = _store(current_out["maskmem_features"], storage, dtype)
        current_out["pred_masks"] = _store(current_out["pred_masks"], storage, None)
        return current_out, pred_masks

    def _run_memory_encoder(self, inference_state: dict[str, Any], *args: Any, **kwargs: Any):
        with _outputs_on_compute_device(inference_state) as storage:
            maskmem_features, maskmem_pos_enc = super()._run_memory_encoder(inference_state, *args, **kwargs)
        return _store(maskmem_features, storage, inference_state.get(MEMORY_DTYPE_KEY)), maskmem_pos_enc


def new_inference_state(
    images: Sequence[torch.Tensor],
    video_height: int,
    video_width: int,
    device: torch.device,
    storage_device: torch.device,
    memory_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """An empty SAM2 inference state over in-memory frames.

    images: ``len(images)`` frames; ``images[i]`` is the model input of frame ``i``, a
        ``(3, image_size, image_size)`` tensor already resized and normalised (SAM2 moves it
        to ``device`` and calls ``.float()`` itself).
    video_height, video_width: source resolution; prompts are given in it and the masks are
        returned in it.
    storage_device: where per-frame outputs (memories, low-res masks) are kept; the CPU to
        save accelerator memory on long clips.
    """
    return {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": False,  # unused by SAM2 after init_state; frames are lazy here
        "offload_state_to_cpu": storage_device.type == "cpu" and device.type != "cpu",
        "video_height": int(video_height),
        "video_width": int(video_width),
        "device": device,
        "storage_device": storage_device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
        MEMORY_DTYPE_KEY: memory_dtype,
    }
