"""LoadSAM2 and SAM2MatteTrack: prompt once, track the subject through the clip.

The ``sam2`` package is imported only when a node runs; without it the pack still loads, both
nodes are listed, and running them says how to install it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from comfy_api.latest import io
from torch import nn

from . import host
from .convert import image_rgb, mask_batch
from .schema import Sam2Model, node_schema

log = logging.getLogger(__name__)

PROMPT_EXAMPLE = '[{"frame": 0, "object": 1, "points": [[320, 200]], "labels": [1]}]'


class Sam2Holder(nn.Module):
    """A plain module around SAM2's predictor (whose ``device`` is a read-only property that
    ComfyUI's patcher could not assign), carrying the library's tracker handle."""

    def __init__(self, tracker: Any):
        super().__init__()
        self.predictor = tracker.predictor
        self.tracker = tracker  # a videomama.sam2.loading.Sam2Tracker around the same predictor


class LoadSAM2(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            "LoadSAM2", "Load SAM2 (VideoMaMa)",
            "Loads a SAM2 / SAM2.1 (tiny, small, base+, large) or SAM2-Matte checkpoint from models/sam2 for "
            "SAM2MatteTrack. The architecture is recognised from the weights. Weights are read into CPU memory; "
            "ComfyUI moves the model to the GPU when tracking runs. Needs the 'sam2' Python package.",
            inputs=[
                io.Combo.Input("checkpoint", options=host.sam2_choices(), tooltip=(
                    "An official SAM2/SAM2.1 .pt file (read with weights_only=True) or a .safetensors conversion, "
                    "in models/sam2. SAM2-Matte checkpoints load the same way.")),
                io.Combo.Input("precision", options=list(host.PRECISIONS), default="auto", tooltip=(
                    "Compute precision on CUDA (autocast; weights stay fp32). auto: bf16 where supported. On the "
                    "CPU tracking always runs in fp32.")),
            ],
            outputs=[Sam2Model.Output("sam2_model", display_name="sam2_model",
                                      tooltip="The SAM2 video predictor for SAM2MatteTrack.")],
            search_aliases=("segment anything 2", "sam 2 loader", "video segmentation model"),
        )

    @classmethod
    def execute(cls, checkpoint: str, precision: str = "auto") -> io.NodeOutput:
        from ..videomama.sam2.loading import load_sam2

        dtype = host.precision_dtype(precision)
        path = host.resolve_choice(checkpoint, "checkpoint")
        tracker = load_sam2(path, device="cpu", dtype=dtype)
        hosted = host.host_model(Sam2Holder(tracker), streamable=False,
                                 description=f"SAM2 {checkpoint}", checkpoint=checkpoint)
        return io.NodeOutput(hosted)


class SAM2MatteTrack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            "SAM2MatteTrack", "SAM2 Matte Track (VideoMaMa)",
            "Tracks the prompted subject(s) through the whole clip with SAM2, both forwards and backwards from the "
            "prompted frames, and returns one mask per frame at the source resolution (1 = subject) - ready for "
            "MaskToMatte. Prompts: points and boxes on any frame as JSON, point-editor strings, or a keyframe mask.",
            inputs=[
                io.Image.Input("images", tooltip="The video frames to track through."),
                Sam2Model.Input("sam2_model", tooltip="SAM2 model from LoadSAM2."),
                io.String.Input("prompts", multiline=True, default=PROMPT_EXAMPLE, tooltip=(
                    "JSON list of prompts in source pixels (x right, y down): {\"frame\": k, \"object\": id, "
                    "\"points\": [[x, y], ...], \"labels\": [1 = subject, 0 = background], \"box\": [x0, y0, x1, "
                    "y1]} (also \"positive\"/\"negative\" point lists). A bare list of {\"x\":..,\"y\":..} points "
                    "from a point editor also works. May be empty when the positive/negative/mask inputs give the "
                    "prompt.")),
                io.Combo.Input("output", options=["binary", "soft"], default="binary", tooltip=(
                    "binary: logits > 0 (0/1 masks, what MaskToMatte expects). soft: sigmoid of the logits (the "
                    "natural output of a SAM2-Matte checkpoint).")),
                io.String.Input("objects", default="union", tooltip=(
                    "'union' returns all prompted objects as one mask; an object id (e.g. 2) returns that object "
                    "alone.")),
                io.Boolean.Input("offload_to_cpu", default=False, tooltip=(
                    "Keep SAM2's per-frame tracking state in CPU memory (for long clips on small GPUs).")),
                io.String.Input("positive", optional=True, force_input=True, tooltip=(
                    "Positive points from a point editor ('[{\"x\": 100, \"y\": 200}, ...]' or '[[x, y], ...]'), "
                    "for object 1 on frame points_frame.")),
                io.String.Input("negative", optional=True, force_input=True,
                                tooltip="Negative (background) points in the same form as positive."),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "A keyframe mask (1 = subject) used as the prompt for object 1 on frame mask_frame; with a "
                    "batch, the mask at mask_frame (or the only one) is used.")),
                io.Int.Input("points_frame", default=0, min=0, max=1_000_000, step=1, optional=True,
                             tooltip="Frame the positive/negative points belong to."),
                io.Int.Input("mask_frame", default=0, min=0, max=1_000_000, step=1, optional=True,
                             tooltip="Frame the keyframe mask belongs to."),
            ],
            outputs=[io.Mask.Output("masks", display_name="masks", tooltip=(
                "Masks (frames, height, width) at the source resolution, 1 = subject: exactly 0/1 for 'binary', the "
                "sigmoid of SAM2's logits for 'soft'. Use InvertMask for ComfyUI's LoadImage convention."))],
            search_aliases=("sam2 video tracking", "segment anything video", "track mask", "rotoscope"),
        )

    @classmethod
    def execute(cls, images: torch.Tensor, sam2_model: host.HostedModel, prompts: str = "", output: str = "binary",
                objects: str = "union", offload_to_cpu: bool = False, positive: str | None = None,
                negative: str | None = None, mask: torch.Tensor | None = None, points_frame: int = 0,
                mask_frame: int = 0) -> io.NodeOutput:
        from ..videomama.errors import InputError
        from ..videomama.pipeline.masks import resize_mask
        from ..videomama.sam2.prompts import parse_prompts
        from ..videomama.sam2.tracking import track

        if not isinstance(sam2_model, host.HostedModel) or not isinstance(sam2_model.model, Sam2Holder):
            raise TypeError(f"sam2_model is a {type(sam2_model).__name__}; connect the output of LoadSAM2.")
        frames = image_rgb(images, "images")
        t, h, w = frames.shape[:3]
        key_mask = None
        if mask is not None:
            m = mask_batch(mask, "mask")
            if m.shape[0] != 1 and not 0 <= mask_frame < m.shape[0]:
                raise InputError(f"mask has {m.shape[0]} frames; mask_frame={mask_frame} is outside it.")
            key_mask = resize_mask(m[0] if m.shape[0] == 1 else m[mask_frame], (h, w))
        parsed = parse_prompts(prompts, t, h, w, positive=positive, negative=negative,
                               points_frame=int(points_frame), mask=key_mask, mask_frame=int(mask_frame))
        holder = host.load_for_inference(sam2_model)
        progress, cancel = host.progress_and_cancel(t)
        with host.interruptible():
            masks = track(holder.tracker, frames, parsed, output=output, objects=objects,
                          offload_to_cpu=bool(offload_to_cpu), progress=progress, should_cancel=cancel)
        return io.NodeOutput(masks.to(host.intermediate_device()))
