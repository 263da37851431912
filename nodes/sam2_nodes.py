"""LoadSAM2 and SAM2MatteTrack: prompt once, track the subject through the clip (V1 API).

The ``sam2`` package is imported only when a node runs; without it the pack still loads and
these nodes explain how to install it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from . import host
from .convert import image_rgb, mask_batch

log = logging.getLogger(__name__)

SAM2_TYPE = "SAM2_MODEL"
PROMPT_EXAMPLE = '[{"frame": 0, "object": 1, "points": [[320, 200]], "labels": [1]}]'
_DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Sam2Holder(nn.Module):
    """A plain module around SAM2's predictor (whose ``device`` is a read-only property that
    ComfyUI's patcher could not assign), carrying the library's tracker handle."""

    def __init__(self, tracker: Any):
        super().__init__()
        self.predictor = tracker.predictor
        self.tracker = tracker  # a videomama.sam2.loading.Sam2Tracker around the same predictor


class LoadSAM2:
    DESCRIPTION = (
        "Loads a SAM2 / SAM2.1 (tiny, small, base+, large) or SAM2-Matte checkpoint from models/sam2 for "
        "SAM2MatteTrack. The architecture is recognised from the weights. Weights are read into CPU memory; "
        "ComfyUI moves the model to the GPU when tracking runs. Needs the 'sam2' Python package."
    )
    CATEGORY = "VideoMaMa"
    FUNCTION = "load"
    RETURN_TYPES = (SAM2_TYPE,)
    RETURN_NAMES = ("sam2_model",)
    OUTPUT_TOOLTIPS = ("The SAM2 video predictor for SAM2MatteTrack.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "checkpoint": (host.sam2_choices(), {
                    "tooltip": "An official SAM2/SAM2.1 .pt file (read with weights_only=True) or a .safetensors "
                               "conversion, in models/sam2. SAM2-Matte checkpoints load the same way.",
                }),
                "precision": (list(_DTYPES), {
                    "default": "auto",
                    "tooltip": "Compute precision on CUDA (autocast; weights stay fp32). auto: bf16 where supported. "
                               "On the CPU tracking always runs in fp32.",
                }),
            }
        }

    def load(self, checkpoint: str, precision: str = "auto"):
        from ..videomama.sam2.loading import load_sam2

        path = host.resolve_choice(checkpoint, "checkpoint")
        tracker = load_sam2(path, device="cpu", dtype=_DTYPES.get(precision))
        hosted = host.host_model(Sam2Holder(tracker), streamable=False,
                                 description=f"SAM2 {checkpoint}", checkpoint=checkpoint)
        return (hosted,)


class SAM2MatteTrack:
    DESCRIPTION = (
        "Tracks the prompted subject(s) through the whole clip with SAM2, both forwards and backwards from the "
        "prompted frames, and returns one mask per frame at the source resolution (1 = subject) - ready for "
        "MaskToMatte. Prompts: points and boxes on any frame as JSON, point-editor strings, or a keyframe mask."
    )
    CATEGORY = "VideoMaMa"
    FUNCTION = "track"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("masks",)
    OUTPUT_TOOLTIPS = (
        "Masks (frames, height, width) at the source resolution, 1 = subject: exactly 0/1 for 'binary', "
        "the sigmoid of SAM2's logits for 'soft'. Use InvertMask for ComfyUI's LoadImage convention.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames to track through."}),
                "sam2_model": (SAM2_TYPE, {"tooltip": "SAM2 model from LoadSAM2."}),
                "prompts": ("STRING", {
                    "multiline": True, "default": PROMPT_EXAMPLE,
                    "tooltip": "JSON list of prompts in source pixels (x right, y down): {\"frame\": k, \"object\": id, "
                               "\"points\": [[x, y], ...], \"labels\": [1 = subject, 0 = background], \"box\": "
                               "[x0, y0, x1, y1]} (also \"positive\"/\"negative\" point lists). A bare list of "
                               "{\"x\":..,\"y\":..} points from a point editor also works. May be empty when the "
                               "positive/negative/mask inputs give the prompt.",
                }),
                "output": (["binary", "soft"], {
                    "default": "binary",
                    "tooltip": "binary: logits > 0 (0/1 masks, what MaskToMatte expects). soft: sigmoid of the logits "
                               "(the natural output of a SAM2-Matte checkpoint).",
                }),
                "objects": ("STRING", {
                    "default": "union",
                    "tooltip": "'union' returns all prompted objects as one mask; an object id (e.g. 2) returns that "
                               "object alone.",
                }),
                "offload_to_cpu": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Keep SAM2's per-frame tracking state in CPU memory (for long clips on small GPUs).",
                }),
            },
            "optional": {
                "positive": ("STRING", {
                    "forceInput": True,
                    "tooltip": "Positive points from a point editor ('[{\"x\": 100, \"y\": 200}, ...]' or "
                               "'[[x, y], ...]'), for object 1 on frame points_frame.",
                }),
                "negative": ("STRING", {
                    "forceInput": True,
                    "tooltip": "Negative (background) points in the same form as positive.",
                }),
                "mask": ("MASK", {
                    "tooltip": "A keyframe mask (1 = subject) used as the prompt for object 1 on frame mask_frame; "
                               "with a batch, the mask at mask_frame (or the only one) is used.",
                }),
                "points_frame": ("INT", {
                    "default": 0, "min": 0, "max": 1_000_000, "step": 1,
                    "tooltip": "Frame the positive/negative points belong to.",
                }),
                "mask_frame": ("INT", {
                    "default": 0, "min": 0, "max": 1_000_000, "step": 1,
                    "tooltip": "Frame the keyframe mask belongs to.",
                }),
            },
        }

    def track(self, images: torch.Tensor, sam2_model: host.HostedModel, prompts: str = "", output: str = "binary",
              objects: str = "union", offload_to_cpu: bool = False, positive: str | None = None,
              negative: str | None = None, mask: torch.Tensor | None = None, points_frame: int = 0,
              mask_frame: int = 0):
        from ..videomama.errors import InputError
        from ..videomama.sam2.prompts import parse_prompts
        from ..videomama.sam2.tracking import track

        if not isinstance(sam2_model, host.HostedModel) or not isinstance(sam2_model.model, Sam2Holder):
            raise TypeError(f"sam2_model is a {type(sam2_model).__name__}; connect the output of LoadSAM2.")
        frames = image_rgb(images, "images")
        t, h, w = frames.shape[:3]
        key_mask = None
        if mask is not None:
            m = mask_batch(mask, "mask")
            if m.shape[0] == 1:
                key_mask = m[0]
            elif 0 <= mask_frame < m.shape[0]:
                key_mask = m[mask_frame]
            else:
                raise InputError(f"mask has {m.shape[0]} frames; mask_frame={mask_frame} is outside it.")
            if tuple(key_mask.shape) != (h, w):
                key_mask = torch.nn.functional.interpolate(key_mask[None, None], size=(h, w), mode="bilinear")[0, 0]
        parsed = parse_prompts(prompts, t, h, w, positive=positive, negative=negative,
                               points_frame=int(points_frame), mask=key_mask, mask_frame=int(mask_frame))
        holder = host.load_for_inference(sam2_model)
        progress, cancel = host.progress_and_cancel(t)
        with host.interruptible():
            masks = track(holder.tracker, frames, parsed, output=output, objects=objects,
                          offload_to_cpu=bool(offload_to_cpu), progress=progress, should_cancel=cancel)
        return (masks.to(host.intermediate_device()),)


NODE_CLASS_MAPPINGS = {"LoadSAM2": LoadSAM2, "SAM2MatteTrack": SAM2MatteTrack}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadSAM2": "Load SAM2 (VideoMaMa)", "SAM2MatteTrack": "SAM2 Matte Track"}
