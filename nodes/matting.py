"""How MaskToMatte computes: the weight-free refiner, or VideoMaMa placed by ComfyUI.

Kept apart from the node class (nodes/videomama_nodes.py only declares the schema and calls
:func:`matte`), so the way the model runs can change without touching what the node looks
like in a workflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

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
    from ..videomama.imaging.composite import checkerboard, composite, to_rgba

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
    from ..videomama.imaging.refine import refine_clip

    log.info("MaskToMatte: no VideoMaMa model connected; using the weight-free refiner.")
    if options.crop != "off":
        log.warning("MaskToMatte: crop '%s' does nothing without a model (the weight-free refiner works at full "
                    "resolution); set crop to off or connect LoadVideoMaMa.", options.crop)
    progress, cancel = host.progress_and_cancel(frames.shape[0])
    with host.interruptible():
        return refine_clip(frames, masks, threshold=options.mask_threshold, work_size=options.resolution,
                           device=host.torch_device(), progress=progress, should_cancel=cancel)


def _detail(frames: torch.Tensor, alpha: torch.Tensor, options: MatteOptions) -> torch.Tensor:
    from ..videomama.imaging.refine import detail_refine

    progress, cancel = host.progress_and_cancel(frames.shape[0])
    with host.interruptible():
        return detail_refine(frames, alpha, resolution=options.resolution, device=host.torch_device(),
                             progress=progress, should_cancel=cancel)


# ------------------------------------------------------------------------------------------ VideoMaMa
def _videomama(hosted: host.HostedModel, frames: torch.Tensor, masks: torch.Tensor,
               options: MatteOptions) -> torch.Tensor:
    """The library's one runner, with ComfyUI's model management placing the weights."""
    from ..videomama.pipeline.matte import collect_frames
    from ..videomama.pipeline.run import run_matte
    from ..videomama.pipeline.schedule import split_windows

    if not isinstance(hosted, host.HostedModel):
        raise TypeError(f"model is a {type(hosted).__name__}; connect the output of LoadVideoMaMa.")
    windows = split_windows(frames.shape[0], options.window, options.overlap)
    progress, cancel = host.progress_and_cancel(len(windows))
    with host.interruptible():
        return collect_frames(run_matte(hosted.model, frames, masks, options, host=host.ComfyHost(hosted),
                                        progress=progress, should_cancel=cancel), frames.shape[0])
