"""How MaskToMatte computes: the weight-free refiner, or VideoMaMa placed by ComfyUI.

Kept apart from the node class (nodes/videomama_nodes.py only declares the schema and calls
:func:`matte`), so the way the model runs can change without touching what the node looks
like in a workflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..videomama.geometry import plan_geometry
from ..videomama.options import MatteOptions
from . import host

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatteResult:
    alpha: torch.Tensor  # (T, H, W) float32, 1 = subject
    rgba: torch.Tensor  # (T, H, W, 4) straight
    preview: torch.Tensor  # (T, H, W, 3) over a grey checkerboard


def matte(frames: torch.Tensor, masks: torch.Tensor, options: MatteOptions,
          model: host.HostedModel | None = None, detail_pass: bool = False) -> MatteResult:
    """frames (T, H, W, 3) and coarse masks (T or 1, H', W') -> the matte and the images made from it."""
    from ..videomama.composite import checkerboard, composite, to_rgba

    if model is None:
        alpha = _refine(frames, masks, options)
    else:
        alpha = _videomama(model, frames, masks, options)
        if detail_pass:
            alpha = _detail(frames, alpha, options)
    alpha = alpha.to(host.intermediate_device(), torch.float32)
    frames = frames.to(alpha.device, torch.float32)
    h, w = alpha.shape[-2:]
    return MatteResult(alpha, to_rgba(frames, alpha), composite(frames, alpha, checkerboard(h, w)))


def _refine(frames: torch.Tensor, masks: torch.Tensor, options: MatteOptions) -> torch.Tensor:
    from ..videomama.refine import refine_clip

    log.info("MaskToMatte: no VideoMaMa model connected; using the weight-free refiner.")
    progress, cancel = host.progress_and_cancel(frames.shape[0])
    with host.interruptible():
        return refine_clip(frames, masks, threshold=options.mask_threshold, work_size=options.resolution,
                           device=host.torch_device(), progress=progress, should_cancel=cancel)


def _detail(frames: torch.Tensor, alpha: torch.Tensor, options: MatteOptions) -> torch.Tensor:
    from ..videomama.refine import detail_refine

    progress, cancel = host.progress_and_cancel(frames.shape[0])
    with host.interruptible():
        return detail_refine(frames, alpha, resolution=options.resolution, device=host.torch_device(),
                             progress=progress, should_cancel=cancel)


# ------------------------------------------------------------------------------------------ VideoMaMa
@dataclass(frozen=True)
class _RunPlan:
    plan: Any  # a videomama.lowvram.Plan
    activation_bytes: int


def memory_plan(frames_hw: tuple[int, int], options: MatteOptions, dtype: torch.dtype,
                free_bytes: int | None, smaller: bool = False) -> _RunPlan:
    """How to run in the device memory ComfyUI can give us.

    ComfyUI places (and in low-VRAM modes streams) the weights itself, so the library never
    streams them here: only plans that bound activations without changing the result are
    used (default; or the VAE encoder one image per call). ``free_bytes``: device memory for
    activations (None on the CPU: no limit). The estimate is what load_models_gpu keeps free.
    """
    from ..videomama import lowvram

    geo = plan_geometry(frames_hw[0], frames_hw[1], options.resolution)
    if smaller:
        plan = lowvram.LOW_VRAM
    elif free_bytes is None:
        plan = lowvram.DEFAULT
    else:
        plan = lowvram.choose_plan(max(0, free_bytes), frames_hw, options.window, resolution=options.resolution,
                                   dtype=dtype, decode_chunk=options.decode_chunk, host_streams_weights=True)
    plan = lowvram.replace(plan, stream_unet=False)
    est = lowvram.estimate_memory(plan, (geo.pad_h, geo.pad_w), options.window, dtype=dtype,
                                  decode_chunk=options.decode_chunk, host_streams_weights=True)
    return _RunPlan(plan, int(est.peak))


def _videomama(hosted: host.HostedModel, frames: torch.Tensor, masks: torch.Tensor,
               options: MatteOptions) -> torch.Tensor:
    from ..videomama.lowvram import PlannedModel, is_oom_error
    from ..videomama.video import matte_clip, plan_windows

    if not isinstance(hosted, host.HostedModel):
        raise TypeError(f"model is a {type(hosted).__name__}; connect the output of LoadVideoMaMa.")
    windows = plan_windows(frames.shape[0], options.window, options.overlap)
    dtype = hosted.info.get("unet_dtype", torch.float32)
    hw = (int(frames.shape[1]), int(frames.shape[2]))

    def attempt(run: _RunPlan) -> torch.Tensor:
        model = host.load_for_inference(hosted, memory_required=run.activation_bytes)
        progress, cancel = host.progress_and_cancel(len(windows))
        log.info("MaskToMatte: memory plan '%s' (VAE encoder %s image(s) per call; weights placed by ComfyUI), "
                 "~%.2f GB of activations reserved", run.plan.name, run.plan.encode_batch or "all",
                 run.activation_bytes / 1e9)
        with host.interruptible():
            return matte_clip(PlannedModel(model, run.plan), frames, masks, options, progress=progress,
                              should_cancel=cancel)

    first = memory_plan(hw, options, dtype, host.free_memory_for(hosted))
    second = memory_plan(hw, options, dtype, None, smaller=True)
    try:
        return attempt(first)
    except Exception as exc:
        if not is_oom_error(exc) or first.plan == second.plan:
            raise
    # Outside the except block, so the failed attempt's tensors are freed before retrying.
    host.soft_empty_cache()
    log.warning("MaskToMatte: out of memory; retrying once with memory plan '%s' (VAE encoder %s image(s) per "
                "call; the same result up to rounding). If it fails again, lower resolution or window.",
                second.plan.name, second.plan.encode_batch)
    return attempt(second)
