"""Low-VRAM execution: UNet block streaming, bounded VAE batches, plans from free memory, one OOM retry.

Where the memory goes at 1024x576 with 16-frame windows in fp16 (estimates from
:func:`estimate_memory`, whose factors were measured as live-tensor peaks of the real-size
model on a CPU; GPU confirmation pending): weights 3.2 GB (UNet 3.05, VAE 0.2); VAE encoder
0.75 GB of activations per image per call; temporal decoder 1.2 GB per frame of its 8-frame
chunk (9.7 GB); UNet 2.5 GB for the window. The decoder, not the UNet, sets the peak, and
its chunk of 8 frames is part of the model (it mixes the frames of a chunk), so no
result-preserving plan gets a 1024x576 run under 8 GB: ``low_vram`` saves the weights and
encoder share (about 13.3 -> 11.7 GB), ``low_vram_decode4`` reaches about 6.8 GB by
changing the result. Each step says whether it changes the result:

======================  =====================================================  ==================
plan                    what it does                                           result
======================  =====================================================  ==================
``default``             everything resident; the VAE encoder takes 8 images    reference
                        per call (a whole window's 2 x 16 would need ~24 GB
                        of activations at 1024x576)
``low_vram``            UNet blocks streamed from host memory (each top-level  unchanged (streaming
                        block is copied to the GPU just before its forward     is bit-identical;
                        and dropped after, the next one prefetched on a side   the encoder batch
                        stream); VAE encoder one image per call                only changes float
                                                                               rounding)
``low_vram_decode4``    as ``low_vram`` + temporal decoder on 4-frame chunks   CHANGES (the decoder
                        instead of the trained 8                               mixes the frames of
                                                                               a chunk)
``low_vram_tiled``      as above + the decoder on overlapping spatial tiles    CHANGES (tile seams
                        of 512 px                                              are cross-faded)
======================  =====================================================  ==================

:func:`choose_plan` picks ``default`` or ``low_vram`` from the free device memory (a
result-changing plan only when the caller allows it, with a WARNING);
:func:`run_with_oom_retry` catches an out-of-memory error, frees memory and retries once one
step down the ladder, logging a WARNING that says exactly what changed and whether that
changes the result.

Typical use (the CLI; in ComfyUI the node layer passes ComfyUI's free memory and lets
ComfyUI place the weights, see :func:`choose_plan`'s ``host_streams_weights``)::

    plan = choose_plan(free_bytes, (h, w), options.window, resolution=options.resolution)
    alpha = matte_clip_planned(model, frames, masks, options, plan, compute_device=device)
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from .geometry import plan_geometry
from .options import DECODE_CHUNK, MatteOptions

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "Plan", "DEFAULT", "LOW_VRAM", "LOW_VRAM_DECODE4", "LOW_VRAM_TILED", "PLAN_LADDER",
    "BlockStreamer", "enable_block_streaming", "disable_block_streaming", "block_streaming",
    "PlannedModel", "use_plan", "decode_alpha_tiled",
    "WeightSizes", "VIDEOMAMA_WEIGHTS", "MemoryEstimate", "estimate_memory", "choose_plan",
    "is_oom_error", "free_memory", "run_with_oom_retry", "matte_clip_planned", "iter_matte_planned",
    "placement_of", "restore_placement", "streamer_of",
]


# ---------------------------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Plan:
    """How a clip is executed. Only ``decode_chunk`` and ``decode_tile`` change the result.

    stream_unet: keep the UNet's big blocks in host memory and copy each to the compute
        device just before its forward (:class:`BlockStreamer`).
    prefetch: with streaming on CUDA, copy the next block on a side stream while the current
        one computes.
    encode_batch: images per VAE-encoder call (None: a window's new frames and masks in one
        call). The encoder is per image, so this only bounds memory.
    decode_chunk: upper bound on the frames the temporal decoder sees at once (None: the
        run's ``options.decode_chunk``, 8 as trained). Smaller chunks change the result.
    decode_tile: latent tile side for spatial tiling of the decoder (None: whole frames).
        Tiling changes the result; a last resort.
    tile_overlap: latents shared by neighbouring tiles (cross-faded).
    """

    name: str
    stream_unet: bool = False
    prefetch: bool = True
    encode_batch: int | None = None
    decode_chunk: int | None = None
    decode_tile: int | None = None
    tile_overlap: int = 8

    @property
    def changes_results(self) -> bool:
        """True when this plan's alpha differs from the default plan's by more than rounding."""
        return self.decode_chunk is not None or self.decode_tile is not None

    def describe(self) -> str:
        parts = ["UNet blocks streamed from host memory" if self.stream_unet else "UNet resident"]
        parts.append("VAE encoder " + ("one window per call" if self.encode_batch is None
                                       else f"{self.encode_batch} image(s) per call"))
        parts.append("decoder chunks " + ("as trained (8 frames)" if self.decode_chunk is None
                                          else f"of at most {self.decode_chunk} frames"))
        if self.decode_tile is not None:
            parts.append(f"decoder tiles of {self.decode_tile * 8} px, {self.tile_overlap * 8} px overlap")
        return ", ".join(parts)

    def changes_from(self, other: Plan) -> str:
        """What is different from ``other``, one clause per change, each saying if it changes results."""
        out = []
        if self.stream_unet != other.stream_unet:
            out.append(("UNet blocks now streamed from host memory" if self.stream_unet else "UNet now resident")
                       + " (same result)")
        if self.encode_batch != other.encode_batch:
            out.append(f"VAE encoder batch {other.encode_batch or 'window'} -> {self.encode_batch or 'window'} "
                       "images (same result up to float rounding)")
        if self.decode_chunk != other.decode_chunk:
            out.append(f"temporal decoder chunk {other.decode_chunk or DECODE_CHUNK} -> "
                       f"{self.decode_chunk or DECODE_CHUNK} frames (CHANGES the result: the decoder mixes "
                       "the frames of a chunk)")
        if self.decode_tile != other.decode_tile:
            was = "whole frames" if other.decode_tile is None else f"{other.decode_tile * 8} px tiles"
            now = "whole frames" if self.decode_tile is None else f"{self.decode_tile * 8} px tiles"
            out.append(f"decoder {was} -> {now} (CHANGES the result near tile seams)")
        return "; ".join(out) if out else "nothing"

    def lower(self, streaming: bool = True) -> Plan | None:
        """The next plan down :data:`PLAN_LADDER` (less memory), or None at the bottom.

        streaming=False: the caller's host places the weights itself (ComfyUI), so the plan
        returned never streams UNet blocks.
        """
        names = [p.name for p in PLAN_LADDER]
        nxt: Plan | None = None
        if self.name in names:
            i = names.index(self.name)
            nxt = PLAN_LADDER[i + 1] if i + 1 < len(PLAN_LADDER) else None
        else:  # a hand-made plan: step to the first ladder plan that saves something it does not
            nxt = next((p for p in PLAN_LADDER if _memory_rank(p) > _memory_rank(self)), None)
        if nxt is not None and not streaming:
            nxt = dataclasses.replace(nxt, stream_unet=False)
        return nxt

    def without_streaming(self) -> Plan:
        """This plan for a host that places the weights itself."""
        return dataclasses.replace(self, stream_unet=False) if self.stream_unet else self


def _memory_rank(p: Plan) -> int:
    return (int(p.stream_unet) + int(p.encode_batch is not None) + 2 * int(p.decode_chunk is not None)
            + 4 * int(p.decode_tile is not None))


DEFAULT = Plan("default", encode_batch=8)
LOW_VRAM = Plan("low_vram", stream_unet=True, encode_batch=1)
LOW_VRAM_DECODE4 = Plan("low_vram_decode4", stream_unet=True, encode_batch=1, decode_chunk=4)
LOW_VRAM_TILED = Plan("low_vram_tiled", stream_unet=True, encode_batch=1, decode_chunk=4, decode_tile=64)
PLAN_LADDER: tuple[Plan, ...] = (DEFAULT, LOW_VRAM, LOW_VRAM_DECODE4, LOW_VRAM_TILED)
PLANS = {p.name: p for p in PLAN_LADDER}


# ---------------------------------------------------------------------------------------------- streaming
def _unet_of(model: nn.Module) -> nn.Module:
    return model.unet if hasattr(model, "unet") and hasattr(model, "vae") else model


def _has_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


# Execution order of the UNet's top-level children (prefetch and the memory model use it);
# children not listed follow in registration order.
_EXECUTION_ORDER = ("time_embedding", "add_embedding", "conv_in", "down_blocks", "mid_block", "up_blocks",
                    "conv_norm_out", "conv_out")


def _stream_units(unet: nn.Module, granularity: str) -> list[tuple[str, nn.Module]]:
    """The UNet's streamed units in execution order: top-level blocks, or (``layer``) the
    direct children of each down/mid/up block (resnets, attentions, samplers)."""
    children = dict(unet.named_children())
    names = [n for n in _EXECUTION_ORDER if n in children] + [n for n in children if n not in _EXECUTION_ORDER]
    units: list[tuple[str, nn.Module]] = []
    for name in names:
        child = children[name]
        if name == "conv_in" or not _has_tensors(child):
            continue  # conv_in stays resident: it anchors VideoMaMaModel.compute_device (35 k parameters)
        blocks = list(child.named_children()) if isinstance(child, nn.ModuleList) else [("", child)]
        for sub, block in blocks:
            full = f"{name}.{sub}" if sub else name
            if granularity == "layer" and name in ("down_blocks", "up_blocks", "mid_block"):
                for leaf_name, leaf in block.named_children():
                    if isinstance(leaf, nn.ModuleList):
                        units += [(f"{full}.{leaf_name}.{i}", m) for i, m in enumerate(leaf) if _has_tensors(m)]
                    elif _has_tensors(leaf):
                        units.append((f"{full}.{leaf_name}", leaf))
            elif _has_tensors(block):
                units.append((full, block))
    return units


class BlockStreamer:
    """Forward hooks that keep a UNet's blocks on ``offload_device`` and run them on ``compute_device``.

    Each streamed tensor (parameter or buffer) keeps one copy on the offload device (pinned
    host memory when computing on CUDA). A forward pre-hook swaps the block's tensors to
    compute-device copies (``tensor.data = ...``, so parameter objects keep their identity),
    and a forward hook swaps them back, dropping the device copies. With ``prefetch`` on
    CUDA the copy of the block that ran next last time is started on a side stream, so the
    transfer overlaps the current block's compute; at most two blocks are on the device.

    Everything the streamer does not stream (conv_in, tensors outside the units, and the VAE
    of a :class:`~videomama.model.VideoMaMaModel`) is moved to the compute device.
    """

    def __init__(self, model: nn.Module, compute_device: torch.device | str, offload_device: torch.device | str = "cpu",
                 *, prefetch: bool = True, pin_memory: bool | None = None, granularity: str = "block",
                 _force_copy: bool = False):
        if granularity not in ("block", "layer"):
            raise ValueError(f"granularity={granularity!r} must be 'block' or 'layer'")
        self.model = model
        self.unet = _unet_of(model)
        self.compute_device = torch.device(compute_device)
        self.offload_device = torch.device(offload_device)
        cuda = self.compute_device.type == "cuda"
        self.prefetch = bool(prefetch and cuda and self.offload_device.type == "cpu")
        pin = (cuda and self.offload_device.type == "cpu") if pin_memory is None else pin_memory
        self._force_copy = _force_copy  # tests: copy on load even when devices match, to catch missed hooks
        self.units = _stream_units(self.unet, granularity)
        self.loads = 0  # how many unit loads happened (tests and logs)
        self.prefetch_hits = 0
        self._entries: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self._pending: dict[int, tuple[list[torch.Tensor], Any]] = {}
        self._next: dict[int, int] = {}
        self._last_started: int | None = None
        self._stream = torch.cuda.Stream(self.compute_device) if self.prefetch else None
        self._handles: list[Any] = []

        # Where every tensor was, so remove() can leave the model as it was found (a host such
        # as ComfyUI keeps its own account of where the weights are).
        self._placement = placement_of(self.model)
        streamed: set[int] = set()
        for _, unit in self.units:
            entries = []
            for t in [*unit.parameters(), *unit.buffers()]:
                if id(t) in streamed:
                    continue  # shared tensor already streamed by an earlier unit
                streamed.add(id(t))
                off = t.data.to(self.offload_device)
                if pin and not off.is_pinned():
                    off = off.pin_memory()
                t.data = off
                entries.append((t, off))
            self._entries.append(entries)
        # Everything else lives on the compute device for the whole run.
        for m in self.model.modules():
            for store in (m._parameters, m._buffers):
                for t in store.values():
                    if t is not None and id(t) not in streamed and t.device != self.compute_device:
                        t.data = t.data.to(self.compute_device)
        for i, (_, unit) in enumerate(self.units):
            self._handles.append(unit.register_forward_pre_hook(self._make_pre(i)))
            self._handles.append(unit.register_forward_hook(self._make_post(i)))
        self._handles.append(self.unet.register_forward_pre_hook(self._start_forward))
        self._handles.append(self.unet.register_forward_hook(self._end_forward))
        total = sum(t.numel() * t.element_size() for e in self._entries for t, _ in e)
        largest = max((sum(t.numel() * t.element_size() for t, _ in e) for e in self._entries), default=0)
        self.streamed_bytes, self.largest_unit_bytes = total, largest
        log.info("streaming %d UNet units (%.2f GB, largest %.2f GB) from %s to %s%s",
                 len(self.units), total / 1e9, largest / 1e9, self.offload_device, self.compute_device,
                 ", prefetching the next unit" if self.prefetch else "")

    # -- hooks
    def _start_forward(self, module: nn.Module, args: Any) -> None:
        self._last_started = None

    def _end_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        self._drop_pending()

    def _copies(self, i: int) -> list[torch.Tensor]:
        if self._force_copy and self.compute_device == self.offload_device:
            return [off.clone() for _, off in self._entries[i]]
        return [off.to(self.compute_device, non_blocking=True) for _, off in self._entries[i]]

    def _make_pre(self, i: int) -> Callable[..., None]:
        def pre(module: nn.Module, args: Any) -> None:
            if self._last_started is not None and self._last_started != i:
                self._next[self._last_started] = i  # learn the execution order for prefetching
            self._last_started = i
            pending = self._pending.pop(i, None)
            if pending is not None:
                copies, event = pending
                current = torch.cuda.current_stream(self.compute_device)
                current.wait_event(event)
                for c in copies:
                    c.record_stream(current)  # allocated on the side stream, used on this one
                self.prefetch_hits += 1
            else:
                copies = self._copies(i)
            for (t, _), c in zip(self._entries[i], copies):
                t.data = c
            self.loads += 1
            nxt = self._next.get(i)
            if self.prefetch and nxt is not None and nxt not in self._pending and nxt != i:
                with torch.cuda.stream(self._stream):
                    prefetched = self._copies(nxt)
                    event = torch.cuda.Event()
                    event.record(self._stream)
                self._pending[nxt] = (prefetched, event)
        return pre

    def _make_post(self, i: int) -> Callable[..., None]:
        def post(module: nn.Module, args: Any, output: Any) -> None:
            for t, off in self._entries[i]:
                t.data = off
        return post

    def _drop_pending(self) -> None:
        for copies, event in self._pending.values():
            event.synchronize()
        self._pending.clear()

    # -- state
    @property
    def active(self) -> bool:
        return bool(self._handles)

    def offloaded(self) -> bool:
        """True when every streamed tensor is back on its offload copy (between forwards)."""
        return all(t.data.data_ptr() == off.data_ptr() and t.device == off.device
                   for e in self._entries for t, off in e)

    def remove(self, restore: bool = True) -> None:
        """Remove every hook. restore: put every tensor back on the device it was on before
        streaming began (otherwise streamed tensors stay on the offload device and the rest on
        the compute device)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._drop_pending()
        for e in self._entries:
            for t, off in e:
                t.data = off
        if restore:
            restore_placement(self._placement)
        self._placement = []


_STREAMER_ATTR = "_videomama_block_streamer"

Placement = list[tuple[torch.Tensor, torch.device]]


def placement_of(model: nn.Module) -> Placement:
    """Where each parameter and buffer of ``model`` is (references to the tensors, not copies)."""
    return [(t, t.device) for m in model.modules() for store in (m._parameters, m._buffers)
            for t in store.values() if t is not None]


def restore_placement(placement: Placement) -> None:
    """Move every tensor back to the device recorded by :func:`placement_of`."""
    for t, device in placement:
        if t.device != device:
            t.data = t.data.to(device)


def enable_block_streaming(model: nn.Module, compute_device: torch.device | str,
                           offload_device: torch.device | str = "cpu", *, prefetch: bool = True,
                           pin_memory: bool | None = None, granularity: str = "block") -> BlockStreamer:
    """Stream the UNet of ``model`` (a VideoMaMaModel or a bare UNet) block by block; see :class:`BlockStreamer`.

    Results are unchanged: every block computes with the same weights on the same device.
    Calling it on a model that already streams replaces the old streamer.
    """
    unet = _unet_of(model)
    disable_block_streaming(model)
    streamer = BlockStreamer(model, compute_device, offload_device, prefetch=prefetch, pin_memory=pin_memory,
                             granularity=granularity)
    object.__setattr__(unet, _STREAMER_ATTR, streamer)
    return streamer


def disable_block_streaming(model: nn.Module, device: torch.device | str | None = None, *,
                            restore: bool = True) -> bool:
    """Remove the streaming hooks (if any) and put every tensor back where it was before
    streaming (``restore``); with ``device`` the whole model is then moved there. Returns
    whether streaming was on."""
    unet = _unet_of(model)
    streamer = unet.__dict__.pop(_STREAMER_ATTR, None)
    if streamer is not None:
        streamer.remove(restore=restore)
    if device is not None:
        model.to(device)
    return streamer is not None


def streamer_of(model: nn.Module) -> BlockStreamer | None:
    return _unet_of(model).__dict__.get(_STREAMER_ATTR)


@contextlib.contextmanager
def block_streaming(model: nn.Module, compute_device: torch.device | str, **kwargs: Any) -> Iterator[BlockStreamer]:
    """``with block_streaming(model, "cuda"): ...`` streams inside the block only."""
    streamer = enable_block_streaming(model, compute_device, **kwargs)
    try:
        yield streamer
    finally:
        disable_block_streaming(model)


# ---------------------------------------------------------------------------------------------- planned model
def _tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, n - tile, stride)) + [n - tile]
    return sorted(set(starts))


def _ramp(length: int, lead: int, trail: int) -> torch.Tensor:
    """1 in the middle, linear ramps over ``lead``/``trail`` samples at the ends (0 < w <= 1)."""
    pos = torch.arange(length, dtype=torch.float32)
    w = torch.ones(length)
    if lead > 0:
        w = torch.minimum(w, (pos + 1) / (lead + 1))
    if trail > 0:
        w = torch.minimum(w, (length - pos) / (trail + 1))
    return w


def decode_alpha_tiled(model: Any, latents: torch.Tensor, chunk: int, tile: int, overlap: int = 8) -> torch.Tensor:
    """``model.decode_alpha`` on overlapping latent tiles of at most ``tile`` x ``tile``, cross-faded.

    Bounds the decoder's memory by the tile instead of the frame. The decoder's receptive
    field crosses tile borders, so the alpha differs from the untiled decode near seams;
    callers must say so (see :class:`Plan`).
    """
    n, _, h, w = latents.shape
    if h <= tile and w <= tile:
        return model.decode_alpha(latents, chunk)
    overlap = min(overlap, tile // 2)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    out: torch.Tensor | None = None
    total = None
    for y in ys:
        th = min(tile, h - y)
        for x in xs:
            tw = min(tile, w - x)
            part = model.decode_alpha(latents[:, :, y:y + th, x:x + tw], chunk).float()
            if out is None:
                out = torch.zeros(n, 8 * h, 8 * w, device=part.device)
                total = torch.zeros(8 * h, 8 * w, device=part.device)
            lead_y = 8 * overlap if y > 0 else 0
            trail_y = 8 * overlap if y + th < h else 0
            lead_x = 8 * overlap if x > 0 else 0
            trail_x = 8 * overlap if x + tw < w else 0
            weight = (_ramp(8 * th, lead_y, trail_y)[:, None] * _ramp(8 * tw, lead_x, trail_x)[None]).to(part.device)
            out[:, 8 * y:8 * (y + th), 8 * x:8 * (x + tw)] += part * weight
            total[8 * y:8 * (y + th), 8 * x:8 * (x + tw)] += weight
    assert out is not None and total is not None
    return out / total


class PlannedModel:
    """A :class:`~videomama.video.WindowModel` that runs ``model`` under ``plan``'s batching, chunking and tiling.

    Pass it to :func:`videomama.video.iter_matte` / ``matte_clip`` in place of the model.
    UNet streaming is installed separately (:func:`use_plan` does both).
    """

    def __init__(self, model: Any, plan: Plan):
        self.model = model
        self.plan = plan
        self.latent_channels = model.latent_channels

    @property
    def compute_device(self) -> torch.device:
        return self.model.compute_device

    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        step = self.plan.encode_batch
        if step is None or pixels.shape[0] <= step:
            return self.model.encode(pixels, eps)
        parts = [self.model.encode(pixels[s:s + step], None if eps is None else eps[s:s + step])
                 for s in range(0, pixels.shape[0], step)]
        return torch.cat(parts)

    def denoise(self, frame_latents: torch.Tensor, mask_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.model.denoise(frame_latents, mask_latents, noise)

    def decode_alpha(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        if self.plan.decode_chunk is not None:
            chunk = min(chunk, self.plan.decode_chunk)
        if self.plan.decode_tile is not None:
            return decode_alpha_tiled(self.model, latents, chunk, self.plan.decode_tile, self.plan.tile_overlap)
        return self.model.decode_alpha(latents, chunk)


@contextlib.contextmanager
def use_plan(model: Any, plan: Plan, compute_device: torch.device | str | None = None,
             offload_device: torch.device | str = "cpu", *, restore: bool = True) -> Iterator[PlannedModel]:
    """Apply ``plan`` to ``model`` for the duration of the block and yield the model to run.

    With ``plan.stream_unet`` the UNet's blocks live on ``offload_device`` during the block;
    afterwards every tensor is back where it was (``restore``; load the model to the CPU to
    keep it off the GPU between runs). Otherwise nothing is moved.
    """
    if plan.stream_unet:
        device = torch.device(compute_device) if compute_device is not None else model.compute_device
        enable_block_streaming(model, device, offload_device, prefetch=plan.prefetch)
    try:
        yield PlannedModel(model, plan)
    finally:
        if plan.stream_unet:
            disable_block_streaming(model, restore=restore)


# ---------------------------------------------------------------------------------------------- memory model
@dataclass(frozen=True)
class WeightSizes:
    """Parameter counts of the parts that matter for planning."""

    unet: int
    vae: int
    largest_stream_pair: int  # the two consecutive streamed UNet blocks with the most parameters

    @classmethod
    def of(cls, model: nn.Module) -> WeightSizes:
        """Counts taken from a model (meta-device models work: nothing is read)."""
        unet = _unet_of(model)
        units = [sum(p.numel() for p in m.parameters()) for _, m in _stream_units(unet, "block")]
        pair = max((a + b for a, b in zip(units, units[1:])), default=sum(units))
        vae = sum(p.numel() for p in model.vae.parameters()) if hasattr(model, "vae") else 0
        return cls(sum(p.numel() for p in unet.parameters()), vae, pair)


# The real VideoMaMa UNet and SVD VAE (counted from the configs on the meta device; a test re-counts).
VIDEOMAMA_WEIGHTS = WeightSizes(unet=1_524_634_602, vae=97_742_847, largest_stream_pair=686_173_449)

# Peak activation bytes of each stage, in units of its widest feature map (elements x dtype
# bytes): the encoder per image at full processing size x 128 channels, the decoder per frame
# at full size x 128 channels, the UNet per frame at 1/8 size x 320 channels. Measured as the
# peak bytes of live tensors of the real-size model in bf16 on the CPU at 256x128, 8-frame
# windows (``benchmarks/bench_matte.py --activation-peaks``: encode 643 MiB for 16 images,
# 40 MiB for one; decode 512 MiB for 8 frames; UNet 68 MiB for 8 frames). The feature maps
# keep their proportions at every size (attention runs through SDPA, linear in memory), so
# the factors carry over. NOT yet confirmed on a GPU: the CUDA allocator's rounding and cuDNN
# workspaces add to them (FIXED_OVERHEAD is a guess until then).
ENCODER_FACTOR = 5.0
DECODER_FACTOR = 8.0
UNET_FACTOR = 27.0
FIXED_OVERHEAD = 400 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak device bytes of one plan, by stage (weights included in each)."""

    plan: Plan
    weights: int
    encoder: int
    unet: int
    decoder: int

    @property
    def peak(self) -> int:
        return self.weights + max(self.encoder, self.unet, self.decoder) + FIXED_OVERHEAD


def estimate_memory(plan: Plan, pad_hw: tuple[int, int], window: int, *, dtype: torch.dtype = torch.float16,
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


def choose_plan(free_bytes: int, frames_hw: tuple[int, int], window: int, *, resolution: int | None = None,
                dtype: torch.dtype = torch.float16, decode_chunk: int = DECODE_CHUNK,
                weights: WeightSizes = VIDEOMAMA_WEIGHTS, host_streams_weights: bool = False,
                force: str | None = None, allow_result_changes: bool = False, headroom: float = 0.9) -> Plan:
    """Pick the first plan of ``default``, ``low_vram`` whose estimated peak fits ``headroom * free_bytes``.

    frames_hw: the source frame size (with ``resolution``: scaled and padded as the pipeline
    does) or, without ``resolution``, the processing size itself. free_bytes: device memory
    the run may use (for ComfyUI: ``get_free_memory`` plus what the model already occupies on
    the device). force: a plan name chosen by hand ('default', 'low_vram', ...; 'auto' or None
    chooses). allow_result_changes: also consider ``low_vram_decode4`` and ``low_vram_tiled``
    (logged as a WARNING when picked). When nothing allowed fits, ``low_vram`` (or the lowest
    allowed plan) is returned with a warning, and :func:`run_with_oom_retry` steps down once
    if the device really runs out.
    """
    if force is not None and force != "auto":
        if force not in PLANS:
            from .errors import InputError

            raise InputError(f"memory plan '{force}' is unknown; choose auto or one of {', '.join(PLANS)}.")
        return PLANS[force]
    if resolution is not None:
        geo = plan_geometry(int(frames_hw[0]), int(frames_hw[1]), resolution)
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
    fallback = LOW_VRAM if not allow_result_changes else candidates[-1]
    est = estimate_memory(fallback, pad_hw, window, dtype=dtype, decode_chunk=decode_chunk, weights=weights,
                          host_streams_weights=host_streams_weights)
    log.warning("the '%s' memory plan needs about %.1f GB but %.1f GB is free at %s; trying it anyway "
                "(an out-of-memory error steps down once, with a logged change). A lower resolution uses less.",
                fallback.name, est.peak / 1e9, free_bytes / 1e9, where)
    return fallback


# ---------------------------------------------------------------------------------------------- OOM handling
def is_oom_error(exc: BaseException) -> bool:
    """An out-of-memory error of any torch device (or the CPU allocator's RuntimeError)."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(exc, oom_types):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory() -> None:
    """Collect garbage and return cached device memory to the driver."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _log_retry(plan: Plan, lower: Plan, reason: str) -> None:
    verdict = ("so the result CHANGES" if lower.changes_results
               else "so the result is unchanged (up to float rounding)")
    log.warning("out of memory with memory plan '%s' (%s); retrying once with '%s': %s; %s.",
                plan.name, reason, lower.name, lower.changes_from(plan), verdict)


def run_with_oom_retry(fn: Callable[[Plan], T], plan: Plan, *, streaming: bool = True) -> T:
    """``fn(plan)``; on out-of-memory, free memory and run ``fn(plan.lower(streaming))`` once.

    The retry is logged as a WARNING naming both plans, every change and whether it changes
    the result. A second out-of-memory error (or one at the bottom of the ladder) propagates
    with a note on what to lower.
    """
    try:
        return fn(plan)
    except Exception as exc:  # noqa: BLE001 - filtered by is_oom_error
        if not is_oom_error(exc):
            raise
        lower = plan.lower(streaming)
        first_line = _first_line(exc)
        if lower is None:
            _note(exc, f"videomama: out of memory with the lowest-memory plan '{plan.name}'; "
                       "lower the resolution or the window, or free device memory.")
            raise
    # Outside the except block: the failed attempt's frames (and their tensors) are released.
    free_memory()
    _log_retry(plan, lower, first_line)
    try:
        return fn(lower)
    except Exception as exc:  # noqa: BLE001
        if is_oom_error(exc):
            _note(exc, f"videomama: out of memory again after stepping down to memory plan '{lower.name}'; "
                       "lower the resolution or the window, or free device memory.")
        raise


def matte_clip_planned(model: Any, frames: Any, masks: Any, options: MatteOptions = MatteOptions(),
                       plan: Plan = DEFAULT, *, compute_device: torch.device | str | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       should_cancel: Callable[[], bool] | None = None, retry: bool = True,
                       host_places_weights: bool = False) -> torch.Tensor:
    """:func:`videomama.video.matte_clip` under ``plan``, retrying once one step lower on OOM.

    host_places_weights: the host (ComfyUI's ModelPatcher) owns weight placement; no plan
    streams UNet blocks then (the host streams them itself in its low-VRAM modes).
    """
    from .video import matte_clip

    if host_places_weights:
        plan = plan.without_streaming()

    def attempt(p: Plan) -> torch.Tensor:
        # A failed streamed attempt leaves the blocks in host memory (room for the retry);
        # the placement found on entry is restored once, at the end.
        with use_plan(model, p, compute_device, restore=False) as planned:
            return matte_clip(planned, frames, masks, options, progress, should_cancel)

    placement = placement_of(model) if isinstance(model, nn.Module) else []
    try:
        if not retry:
            return attempt(plan)
        return run_with_oom_retry(attempt, plan, streaming=not host_places_weights)
    finally:
        _restore_guarded(placement)


def _restore_guarded(placement: Placement) -> None:
    try:
        restore_placement(placement)
    except Exception as exc:  # noqa: BLE001 - never mask the run's own outcome
        if not is_oom_error(exc):
            raise
        log.warning("could not move the model back to where it was (out of memory); part of it stays in "
                    "host memory: %s", _first_line(exc))


def iter_matte_planned(model: Any, frames: Any, masks: Any, options: MatteOptions = MatteOptions(),
                       plan: Plan = DEFAULT, *, compute_device: torch.device | str | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       should_cancel: Callable[[], bool] | None = None, retry: bool = True,
                       host_places_weights: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`videomama.video.iter_matte` under ``plan`` (the plan stays applied while the caller iterates).

    An out-of-memory error before the first frame is handed out (the first window is the
    largest: it encodes all its frames) is retried once one step lower, logged as in
    :func:`run_with_oom_retry`; after frames were handed out it propagates, since a retry
    would have to hand them out again.
    """
    from .video import iter_matte

    if host_places_weights:
        plan = plan.without_streaming()
    placement = placement_of(model) if isinstance(model, nn.Module) else []
    current = plan
    try:
        while True:
            yielded = 0
            reason = None
            try:
                with use_plan(model, current, compute_device, restore=False) as planned:
                    for item in iter_matte(planned, frames, masks, options, progress, should_cancel):
                        yielded += 1
                        yield item
                return
            except Exception as exc:  # noqa: BLE001 - filtered below
                lower = current.lower(not host_places_weights)
                if not (retry and current is plan and yielded == 0 and is_oom_error(exc) and lower is not None):
                    if is_oom_error(exc):
                        _note(exc, f"videomama: out of memory with memory plan '{current.name}' after "
                                   f"{yielded} frame{'' if yielded == 1 else 's'} were handed out; lower the "
                                   "resolution or the window, or free device memory.")
                    raise
                reason = _first_line(exc)
            free_memory()
            _log_retry(current, lower, reason)
            current = lower
    finally:
        _restore_guarded(placement)


def replace(plan: Plan, **changes: Any) -> Plan:
    """``dataclasses.replace`` for plans (kept here so callers need not import dataclasses)."""
    return dataclasses.replace(plan, **changes)
