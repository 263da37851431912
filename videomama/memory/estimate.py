"""How much device memory a run needs under each memory plan, and which plan fits.

The estimate is weights + the largest stage's activations + a fixed overhead. Activation
factors are peak live-tensor bytes of each stage in units of its widest feature map,
measured on the real-size model (``benchmarks/bench_matte.py --activation-peaks``); they
depend on the model and the sizes, not on the device, but the CUDA allocator's rounding and
cuDNN workspaces come on top (``FIXED_OVERHEAD``) until a GPU run confirms them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..options import DECODE_CHUNK
from ..pipeline.geometry import fit_geometry
from .plans import DEFAULT, PLAN_LADDER, PLANS, MemoryPlan
from .streaming import stream_units, unet_of

log = logging.getLogger(__name__)

__all__ = ["MemoryEstimate", "VIDEOMAMA_WEIGHTS", "WeightSizes", "choose_memory_plan", "estimate_memory"]


@dataclass(frozen=True)
class WeightSizes:
    """Parameter counts of the parts that matter for planning."""

    unet: int
    vae: int
    largest_stream_pair: int  # the two consecutive streamed UNet blocks with the most parameters

    @classmethod
    def of(cls, model: nn.Module) -> WeightSizes:
        """Counts taken from a model (meta-device models work: nothing is read)."""
        unet = unet_of(model)
        units = [sum(p.numel() for p in m.parameters()) for _, m in stream_units(unet, "block")]
        pair = max((a + b for a, b in zip(units, units[1:])), default=sum(units))
        vae_module = getattr(model, "vae", None)
        vae = sum(p.numel() for p in vae_module.parameters()) if isinstance(vae_module, nn.Module) else 0
        return cls(sum(p.numel() for p in unet.parameters()), vae, pair)


# The real VideoMaMa UNet and SVD VAE (counted from the configs on the meta device; a test re-counts).
VIDEOMAMA_WEIGHTS = WeightSizes(unet=1_524_634_602, vae=97_742_847, largest_stream_pair=686_173_449)

# Peak activation bytes of each stage, in units of its widest feature map (elements x dtype
# bytes): the encoder per image at full processing size x 128 channels, the decoder per frame
# at full size x 128 channels, the UNet per frame at 1/8 size x 320 channels. Measured as the
# peak bytes of live tensors of the real-size model in bf16 on the CPU at 256x128, 8-frame
# windows (``benchmarks/bench_matte.py --activation-peaks``: encode 322 MiB for 8 images,
# 40 MiB for one; UNet 68 MiB for 8 frames; decode 112 MiB for 8 frames with the frame-wise
# temporal decoder of ``pipeline.temporal_decode``, 512 MiB with diffusers' decode, which is
# what the old factor 8.0 described; ``benchmarks/bench_decode.py`` finds the same 1.75 maps
# per frame at 256x128 and 512x256). The feature maps keep their proportions at every size
# (attention runs through SDPA, linear in memory), so the factors carry over. NOT yet
# confirmed on a GPU: the CUDA allocator's rounding and cuDNN workspaces add to them
# (FIXED_OVERHEAD is a guess until then).
ENCODER_FACTOR = 5.0
DECODER_FACTOR = 1.75
UNET_FACTOR = 27.0
FIXED_OVERHEAD = 400 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak device bytes of one plan, by stage (weights included in each)."""

    plan: MemoryPlan
    weights: int
    encoder: int
    unet: int
    decoder: int

    @property
    def peak(self) -> int:
        return self.weights + max(self.encoder, self.unet, self.decoder) + FIXED_OVERHEAD


def estimate_memory(plan: MemoryPlan, pad_hw: tuple[int, int], window: int, *, dtype: torch.dtype = torch.float16,
                    decode_chunk: int = DECODE_CHUNK, weights: WeightSizes = VIDEOMAMA_WEIGHTS,
                    host_streams_weights: bool = False) -> MemoryEstimate:
    """Peak device memory of running ``plan`` on windows of ``window`` frames at the padded size ``pad_hw``.

    host_streams_weights: the host (ComfyUI) places the weights itself; count none.
    """
    el = torch.empty((), dtype=dtype).element_size()
    h, w = pad_hw
    px = h * w
    if host_streams_weights:
        weight_bytes = 0
    elif plan.stream_unet:
        weight_bytes = (weights.largest_stream_pair + weights.vae) * el
    else:
        weight_bytes = (weights.unet + weights.vae) * el
    images = 2 * window if plan.encode_batch is None else min(plan.encode_batch, 2 * window)
    encoder = int(images * px * 128 * el * ENCODER_FACTOR)
    chunk = min(decode_chunk, plan.decode_chunk or decode_chunk, window)
    dec_px = px if plan.decode_tile is None else min(px, (8 * plan.decode_tile) ** 2)
    decoder = int(chunk * dec_px * 128 * el * DECODER_FACTOR)
    unet = int(window * (px // 64) * 320 * el * UNET_FACTOR)
    return MemoryEstimate(plan, int(weight_bytes), encoder, unet, decoder)


def choose_memory_plan(free_bytes: int, frames_hw: tuple[int, int], window: int, *, resolution: int | None = None,
                dtype: torch.dtype = torch.float16, decode_chunk: int = DECODE_CHUNK,
                weights: WeightSizes = VIDEOMAMA_WEIGHTS, host_streams_weights: bool = False,
                force: str | None = None, allow_result_changes: bool = False, headroom: float = 0.9) -> MemoryPlan:
    """Pick the first plan of ``default``, ``low_vram`` whose estimated peak fits ``headroom * free_bytes``.

    frames_hw: the source frame size (with ``resolution``: scaled and padded as the pipeline
    does) or, without ``resolution``, the processing size itself. free_bytes: device memory
    the run may use (for ComfyUI: ``get_free_memory`` plus what the model already occupies on
    the device). force: a plan name chosen by hand ('default', 'low_vram', ...; 'auto' or None
    chooses). allow_result_changes: also consider ``low_vram_decode4`` and ``low_vram_tiled``
    (logged as a WARNING when picked). When nothing allowed fits, the allowed plan with the
    lowest estimate (``low_vram`` unless result changes are allowed) is returned with a warning,
    and the runner steps down once if the device really runs out.
    """
    if force is not None and force != "auto":
        if force not in PLANS:
            from ..errors import InputError

            raise InputError(f"memory plan '{force}' is unknown; choose auto or one of {', '.join(PLANS)}.")
        return PLANS[force]
    if resolution is not None:
        geo = fit_geometry(int(frames_hw[0]), int(frames_hw[1]), resolution)
        pad_hw = (geo.pad_h, geo.pad_w)
    else:
        pad_hw = (math.ceil(frames_hw[0] / 64) * 64, math.ceil(frames_hw[1] / 64) * 64)
    budget = headroom * free_bytes
    candidates = PLAN_LADDER if allow_result_changes else tuple(p for p in PLAN_LADDER if not p.changes_results)
    where = f"{pad_hw[1]}x{pad_hw[0]} with {window}-frame windows"
    for plan in candidates:
        est = estimate_memory(plan, pad_hw, window, dtype=dtype, decode_chunk=decode_chunk, weights=weights,
                              host_streams_weights=host_streams_weights)
        if est.peak <= budget:
            if plan.changes_results:
                log.warning("memory plan '%s' chosen to fit %.1f GB free at %s (about %.1f GB): %s.",
                            plan.name, free_bytes / 1e9, where, est.peak / 1e9, plan.changes_from(DEFAULT))
            else:
                log.info("memory plan '%s': about %.1f GB estimated of %.1f GB free at %s",
                         plan.name, est.peak / 1e9, free_bytes / 1e9, where)
            return plan
    # Nothing fits: the allowed plan with the lowest estimate (on a tie the one higher on the
    # ladder, i.e. with fewer changes: a lower plan whose saving is not where the peak is buys nothing).
    estimates = [(estimate_memory(p, pad_hw, window, dtype=dtype, decode_chunk=decode_chunk, weights=weights,
                                  host_streams_weights=host_streams_weights), p) for p in candidates]
    est, fallback = min(estimates, key=lambda ep: ep[0].peak)
    log.warning("the '%s' memory plan needs about %.1f GB but %.1f GB is free at %s; trying it anyway "
                "(an out-of-memory error steps down once, with a logged change). A lower resolution uses less.",
                fallback.name, est.peak / 1e9, free_bytes / 1e9, where)
    return fallback
