"""The parts of SAM2 tracking that need the ``sam2`` package at import time.

Only :mod:`videomama.track` imports this module, and only inside functions, so the rest of
the library (and the ComfyUI pack) imports fine when ``sam2`` is not installed.

What is here:

- :class:`VideoMaMaSAM2Predictor`, a ``SAM2VideoPredictor`` whose stored memory features can
  be kept in a chosen dtype. SAM2 always stores them as bfloat16; on a CPU, without autocast,
  a frame whose memory bank holds only those bf16 features (no object pointer yet, e.g. an
  object tracked towards a prompt that lies ahead of it) hits
  ``RuntimeError: mat1 and mat2 must have the same dtype, but got BFloat16 and Float`` in the
  memory attention. Keeping them in float32 on the CPU removes that failure without changing
  any number (bf16 values are exact in fp32).
- :func:`new_inference_state`, the in-memory equivalent of ``SAM2VideoPredictor.init_state``:
  the same dictionary, but frames come from any indexable sequence of already-normalised
  ``(3, S, S)`` tensors instead of a JPEG folder.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

# Key we add to SAM2's inference-state dict: the dtype stored memory features are cast to
# (None keeps SAM2's bfloat16).
MEMORY_DTYPE_KEY = "videomama_memory_dtype"


class VideoMaMaSAM2Predictor(SAM2VideoPredictor):
    """``SAM2VideoPredictor`` plus a per-state choice of the dtype of stored memories.

    Attributes set by :func:`videomama.track.load_sam2`:
        videomama_info: the ``Sam2Info`` the weights were identified as.
        videomama_dtype: compute dtype for :func:`videomama.track.track` (autocast on CUDA);
            None = bf16 on a CUDA device that supports it, else fp32.
        videomama_fill_hole_area: SAM2's hole-filling area, used only where ``sam2._C``
            can run (CUDA tensors).
    """

    def _run_single_frame_inference(self, inference_state: dict[str, Any], *args: Any, **kwargs: Any):
        current_out, pred_masks = super()._run_single_frame_inference(inference_state, *args, **kwargs)
        dtype = inference_state.get(MEMORY_DTYPE_KEY)
        if dtype is not None and current_out["maskmem_features"] is not None:
            current_out["maskmem_features"] = current_out["maskmem_features"].to(dtype)
        return current_out, pred_masks

    def _run_memory_encoder(self, inference_state: dict[str, Any], *args: Any, **kwargs: Any):
        maskmem_features, maskmem_pos_enc = super()._run_memory_encoder(inference_state, *args, **kwargs)
        dtype = inference_state.get(MEMORY_DTYPE_KEY)
        if dtype is not None:
            maskmem_features = maskmem_features.to(dtype)
        return maskmem_features, maskmem_pos_enc


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
