"""Speed, per-stage time, peak memory and accuracy of the VideoMaMa clip pipeline, per configuration.

Builds the real-size VideoMaMa UNet (SVD-XT config, 12 input channels) and SVD's temporal VAE
with random weights (timing and memory do not depend on weight values; nothing is
downloaded) and runs the whole clip pipeline (``videomama.pipeline.matte.iter_matte``) on a synthetic
clip held in memory (no file I/O is timed). All configurations run in ONE process on the
same inputs, so their ratios are fair:

* ``fp32``      our default plan in float32 (TF32 off): the reference every row is compared with;
* ``default``   ``videomama.memory.plans.DEFAULT`` (everything resident, the VAE encoder 8 images
                per call) in the CLI's precision: fp16 on CUDA, fp32 on the CPU (``--dtype``);
* ``low_vram``  ``videomama.memory.plans.LOW_VRAM``: UNet blocks streamed from host memory (next
                block prefetched on a side CUDA stream), the VAE encoder one image per call;
* ``default_channels_last`` / ``default_compile`` (opt-in via ``--configs``): candidate
                optimisations, channels-last 2-D convolution weights / ``torch.compile`` of the UNet;
* ``official``  the official approach, written from docs/inference.md: fp16,
                8-bit (PIL) round trips of the inputs and the output, frames stretched to the
                processing size, SVD's CLIP ViT-H/14 image encoder (random weights) run on the
                first frame (its output then zeroed, as upstream does), the VAE encoder one image
                per call, the whole clip in ONE UNet call, decoder chunks of 8 frames. On the
                CPU it runs in bfloat16 (float16 convolutions are ~20x slower there).

Commands::

    python benchmarks/bench_matte.py --device cuda --size 1024x576 --frames 64 --json bench.json
    python benchmarks/bench_matte.py --device cuda --size 1024x576 --sweep --configs default,low_vram
    python benchmarks/bench_matte.py --device cpu --tiny            # tiny random model, seconds (CI)

Reported per configuration: frames/s end to end, seconds in each stage (VAE encode, UNet,
VAE decode, CLIP for the baseline, and the CPU-side rest: reading, geometry, blending,
upsampling, 8-bit conversions), peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU:
the process's peak RSS, reset per configuration), and max |alpha - fp32 alpha| at source
resolution. Stage timers synchronise CUDA at each boundary. ``--sweep`` measures how the
default mode's per-frame cost and peak memory grow with the long side (512/768/1024/1536)
and clip length (16/64/256): they must stay flat in length.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import resource
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.memory import plans as memory_plans
from videomama.memory.execution import use_plan
from videomama.memory.retry import free_memory
from videomama.options import MatteOptions
from videomama.pipeline.geometry import fit_geometry
from videomama.pipeline.matte import iter_matte
from videomama.pipeline.model import ADDED_TIME_IDS, TIMESTEP, VideoMaMaModel
from videomama.weights.checkpoints import SVD_VAE_CONFIG
from videomama.weights.configs import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    VIDEOMAMA_UNET_CONFIG,
    build_random_unet,
    build_random_vae,
)

log = logging.getLogger("bench_matte")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
STAGES = ("encode", "unet", "decode", "clip")
ALL_CONFIGS = ("default", "low_vram", "official", "default_channels_last", "default_compile")

# SVD-XT's image encoder (OpenCLIP ViT-H/14): what the official pipeline loads and runs.
CLIP_VIT_H14 = dict(hidden=1280, layers=32, heads=16, mlp=5120, patch=14, image=224, projection=1024)
CLIP_TINY = dict(hidden=64, layers=2, heads=2, mlp=128, patch=14, image=224, projection=64)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------------------------------------- measuring
class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of live tensors created inside the mode (any device): a device-independent
    activation measure, used to calibrate ``videomama.memory.plans``'s memory model on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs or {}))
                  if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                key, size = st.data_ptr(), st.nbytes()
                if size == 0 or key in self.live or key in inputs:  # empty, known, or a view of an input
                    continue
                self.live[key] = size
                self.current += size
                self.peak = max(self.peak, self.current)
                weakref.finalize(st, self._free, key)
        return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryMeter:
    """Peak memory of one configuration: CUDA allocated bytes, or the host's peak RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda max_memory_allocated" if device.type == "cuda" else "host peak RSS"

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:  # pragma: no cover
                pass

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return _rss_bytes()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:  # pragma: no cover
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StageClock:
    """Wall time per stage; CUDA is synchronised at each boundary so work is charged where it runs.

    On CUDA it also records each stage's peak allocated bytes above what was allocated when the
    stage began (its activations) and keeps the run's overall peak (:meth:`overall_peak`); with
    ``tensors`` (a :class:`LiveTensorBytes`) it records the same from live tensor bytes, on any device.
    """

    def __init__(self, device: torch.device, tensors: LiveTensorBytes | None = None):
        self.device = device
        self.tensors = tensors
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.act_peak: dict[str, int] = {}
        self._peak = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def overall_peak(self) -> int:
        """CUDA: the largest allocated bytes since the clock's creation (stages reset torch's counter)."""
        return max(self._peak, torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else 0

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.sync()
        cuda = self.device.type == "cuda"
        if cuda:
            self._peak = max(self._peak, torch.cuda.max_memory_allocated(self.device))
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.tensors is not None:
            tbase, tpeak_before = self.tensors.current, self.tensors.peak
            self.tensors.peak = tbase
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
            self.calls[stage] = self.calls.get(stage, 0) + 1
            if cuda:
                stage_peak = torch.cuda.max_memory_allocated(self.device)
                self._peak = max(self._peak, stage_peak)
                self.act_peak[stage] = max(self.act_peak.get(stage, 0), stage_peak - base)
            if self.tensors is not None:
                self.act_peak[stage] = max(self.act_peak.get(stage, 0), self.tensors.peak - tbase)
                self.tensors.peak = max(tpeak_before, self.tensors.peak)


class TimedModel:
    """A WindowModel that charges ``encode`` / ``denoise`` / ``decode_alpha`` to the clock's stages."""

    def __init__(self, inner: Any, clock: StageClock):
        self.inner = inner
        self.clock = clock
        self.latent_channels = inner.latent_channels

    @property
    def compute_device(self) -> torch.device:
        return self.inner.compute_device

    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        with self.clock("encode"):
            return self.inner.encode(pixels, eps)

    def denoise(self, frame_latents: torch.Tensor, mask_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        with self.clock("unet"):
            return self.inner.denoise(frame_latents, mask_latents, noise)

    def decode_alpha(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        with self.clock("decode"):
            return self.inner.decode_alpha(latents, chunk)


# ---------------------------------------------------------------------------------------------- inputs
class PooledClip(Sequence):
    """``n`` frames served from a pool of pre-rendered frames (ping-pong order): memory and
    input cost stay constant in clip length, as with frames decoded on demand."""

    def __init__(self, pool: torch.Tensor, n: int):
        self.pool, self.n = pool, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        k = len(self.pool)
        period = max(1, 2 * k - 2)
        j = i % period
        return self.pool[j if j < k else period - j]


def make_pool(height: int, width: int, count: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic frames (count, H, W, 3) and their coarse masks (count, H, W)."""
    from videomama.eval.synthetic import coarse_mask, make_clip

    clip = make_clip(count, height, width, seed=seed, subsamples=1)
    return clip.frames.contiguous(), coarse_mask(clip.alpha, 8).contiguous()


# ---------------------------------------------------------------------------------------------- models
def build_master(tiny: bool, seed: int = 0) -> VideoMaMaModel:
    """The fp32 random-weight model on the CPU that every configuration copies."""
    unet_cfg, vae_cfg = (TINY_UNET_CONFIG, TINY_VAE_CONFIG) if tiny else (VIDEOMAMA_UNET_CONFIG, SVD_VAE_CONFIG)
    return VideoMaMaModel(build_random_unet(unet_cfg, seed), build_random_vae(vae_cfg, seed))


def instantiate(master: VideoMaMaModel, dtype: torch.dtype, device: torch.device | str) -> VideoMaMaModel:
    """A copy of ``master`` in ``dtype`` on ``device`` without a second fp32 copy on the host."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    def clone(src: torch.nn.Module, cls: type) -> torch.nn.Module:
        config = {k: v for k, v in dict(src.config).items() if not k.startswith("_")}
        with torch.device("meta"):
            dst = cls(**config)
        state = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in src.state_dict().items()}
        dst.load_state_dict(state, assign=True)
        leftovers = [n for n, t in [*dst.named_parameters(), *dst.named_buffers()] if t.device.type == "meta"]
        if leftovers:  # a non-persistent tensor the state dict does not carry: copy the slow way
            dst = copy.deepcopy(src).to(device, dtype)
        return dst.eval().requires_grad_(False)

    return VideoMaMaModel(clone(master.unet, UNetSpatioTemporalConditionModel),
                          clone(master.vae, AutoencoderKLTemporalDecoder))


class _PlainViT(torch.nn.Module):
    """A CLIP-style ViT image encoder (pre-norm transformer, class token, projection) in plain torch."""

    def __init__(self, hidden: int, layers: int, heads: int, mlp: int, patch: int, image: int, projection: int):
        super().__init__()
        self.image = image
        self.patch = torch.nn.Conv2d(3, hidden, patch, patch, bias=False)
        n = (image // patch) ** 2 + 1
        self.cls = torch.nn.Parameter(torch.randn(hidden) * 0.02)
        self.pos = torch.nn.Parameter(torch.randn(n, hidden) * 0.02)
        self.pre = torch.nn.LayerNorm(hidden)
        layer = torch.nn.TransformerEncoderLayer(hidden, heads, mlp, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.post = torch.nn.LayerNorm(hidden)
        self.proj = torch.nn.Linear(hidden, projection, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1).to(x.dtype), x], 1) + self.pos.to(x.dtype)
        x = self.blocks(self.pre(x))
        return self.proj(self.post(x[:, 0]))


def build_clip(dims: dict, dtype: torch.dtype, device: torch.device) -> tuple[torch.nn.Module, str]:
    """SVD's image encoder with random weights: transformers' CLIP if installed, else a plain ViT of the same dims."""
    torch.manual_seed(1234)
    try:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        config = CLIPVisionConfig(hidden_size=dims["hidden"], intermediate_size=dims["mlp"],
                                  num_hidden_layers=dims["layers"], num_attention_heads=dims["heads"],
                                  patch_size=dims["patch"], image_size=dims["image"],
                                  projection_dim=dims["projection"], hidden_act="gelu")
        with torch.device(device):
            model = CLIPVisionModelWithProjection(config)
        impl = "transformers.CLIPVisionModelWithProjection"
    except ImportError:
        with torch.device(device):
            model = _PlainViT(**dims)
        impl = "plain torch ViT"
    return model.to(dtype).eval().requires_grad_(False), impl


def _clip_embed(clip: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    out = clip(pixel_values=image)
    return out.image_embeds if hasattr(out, "image_embeds") else out


# ---------------------------------------------------------------------------------------------- the official approach
def _pil_resize_u8(array: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(array).resize(size_wh, Image.BILINEAR))


def official_matte(model: VideoMaMaModel, clip: torch.nn.Module, frames: Sequence, masks: Sequence,
                   pad_hw: tuple[int, int], seed: int, clock: StageClock) -> Iterator[tuple[int, torch.Tensor]]:
    """The official single-step pipeline as the spec describes it (see the module docstring)."""
    device, dtype = model.compute_device, model.compute_dtype
    n = len(frames)
    h, w = pad_hw
    src_h, src_w = frames[0].shape[:2]
    # 8-bit inputs through PIL, stretched to the processing size; masks thresholded > 127 after resizing.
    px, mk = [], []
    for i in range(n):
        f8 = (frames[i].numpy() * 255.0).round().astype(np.uint8)
        m8 = (masks[i].numpy() * 255.0).round().astype(np.uint8)
        px.append(_pil_resize_u8(f8, (w, h)))
        mk.append(_pil_resize_u8(m8, (w, h)) > 127)
    pixels = torch.from_numpy(np.stack(px)).to(device).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0
    mask_px = (torch.from_numpy(np.stack(mk)).to(device, dtype) * 2.0 - 1.0)[:, None].expand(-1, 3, -1, -1)
    del px, mk

    with clock("clip"):  # CLIP embedding of the first frame, then replaced by zeros as upstream does
        image = F.interpolate(((pixels[:1].float() + 1) / 2), size=(224, 224), mode="bicubic", antialias=True)
        mean = torch.tensor(CLIP_MEAN, device=device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=device)[:, None, None]
        embeds = _clip_embed(clip, ((image - mean) / std).to(dtype))
        context = torch.zeros_like(embeds)[:, None]  # (1, 1, 1024)

    gen = torch.Generator(device=device).manual_seed(seed)
    with clock("encode"):  # one image per call, posterior samples
        frame_lat = torch.cat([model.vae.encode(pixels[i:i + 1]).latent_dist.sample(gen) for i in range(n)])
        mask_lat = torch.cat([model.vae.encode(mask_px[i:i + 1]).latent_dist.sample(gen) for i in range(n)])
    del pixels, mask_px
    with clock("unet"):  # the whole clip in one call
        noise = torch.randn((1, n, 4, h // 8, w // 8), generator=gen, device=device, dtype=dtype)
        sample = torch.cat([noise, frame_lat[None].to(dtype), mask_lat[None].to(dtype)], dim=2)
        time_ids = torch.tensor([ADDED_TIME_IDS], device=device, dtype=dtype)
        timestep = torch.tensor([TIMESTEP], device=device)
        latents = model.unet(sample, timestep, context.to(dtype), added_time_ids=time_ids, return_dict=False)[0][0]
    del frame_lat, mask_lat, sample
    with clock("decode"):
        z = latents / model.scaling_factor
        alphas = []
        for s in range(0, n, 8):
            rgb = model.vae.decode(z[s:s + 8], num_frames=z[s:s + 8].shape[0]).sample
            alphas.append((rgb.float() / 2 + 0.5).clamp(0, 1).mean(1))
        alpha = torch.cat(alphas)
    # 8-bit output, resized back to the source size through PIL.
    alpha8 = (alpha * 255.0).round().to(torch.uint8).cpu().numpy()
    for i in range(n):
        yield i, torch.from_numpy(_pil_resize_u8(alpha8[i], (src_w, src_h)).astype(np.float32) / 255.0)


# ---------------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def _true_fp32(device: torch.device, enable: bool) -> Iterator[None]:
    """fp32 runs on CUDA without TF32 (cuDNN allows it by default), so the reference is float32."""
    if not (enable and device.type == "cuda"):
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@dataclass
class Result:
    config: str
    dtype: str
    frames: int
    source: str
    processing: str
    total_s: float
    stages: dict[str, float]
    cpu_side_s: float
    fps: float
    peak_bytes: int
    start_bytes: int
    mem_kind: str
    max_abs_diff: float | None
    plan: str
    activation_peaks: dict[str, int] = field(default_factory=dict)
    notes: str = ""

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _consume(results: Iterator[tuple[int, torch.Tensor]], reference: torch.Tensor | None,
             keep: torch.Tensor | None) -> tuple[float | None, float, int]:
    """Drain the alpha iterator; returns (max |diff| vs reference, seconds spent here, count)."""
    worst = 0.0
    spent = 0.0
    count = 0
    for i, alpha in results:
        t0 = time.perf_counter()
        if reference is not None:
            worst = max(worst, float((alpha - reference[i]).abs().max()))
        if keep is not None:
            keep[i] = alpha
        count += 1
        spent += time.perf_counter() - t0
    return (worst if reference is not None else None), spent, count


def run_config(name: str, master: VideoMaMaModel, args: argparse.Namespace, device: torch.device,
               frames: Sequence, masks: Sequence, options: MatteOptions, reference: torch.Tensor | None,
               keep: torch.Tensor | None = None, dtype: torch.dtype | None = None,
               tensors: bool = False, warmup: int = 0) -> Result:
    """Run one configuration on the clip; returns its measurements."""
    meter = MemoryMeter(device)
    dtype = dtype or args.run_dtype
    plan = memory_plans.DEFAULT
    notes = ""
    clip_model = None
    if name == "official":
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        notes = "fp16" if device.type == "cuda" else "bf16 on CPU (fp16 convolutions are impractically slow there)"
    if name == "low_vram":
        plan = memory_plans.LOW_VRAM
        model = instantiate(master, dtype, "cpu")  # weights start in host memory; the plan streams them
    else:
        model = instantiate(master, dtype, device)
    if name == "default_channels_last":
        for m in model.modules():  # 4-D conv weights only (the temporal Conv3d layers have no 2-D layout)
            if isinstance(m, torch.nn.Conv2d):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
    if name == "default_compile":
        model.unet = torch.compile(model.unet)  # type: ignore[assignment]
        notes = "torch.compile(unet); compile time is in the warm-up, not the figures"
    if name == "official":
        clip_model, impl = build_clip(CLIP_TINY if args.tiny else CLIP_VIT_H14, dtype, device)
        notes += f"; CLIP image encoder: {impl}"
    geo = fit_geometry(frames[0].shape[0], frames[0].shape[1], options.resolution)

    with use_plan(model, plan, device) as planned, _true_fp32(device, dtype == torch.float32):
        def once(n: int, clock: StageClock, reference_, keep_):
            sub_f, sub_m = (frames, masks) if n == len(frames) else (PooledClip(frames.pool, n), PooledClip(masks.pool, n))
            if name == "official":
                it = official_matte(model, clip_model, sub_f, sub_m, (geo.pad_h, geo.pad_w), options.seed, clock)
            else:
                it = iter_matte(TimedModel(planned, clock), sub_f, sub_m, options)
            return _consume(it, reference_, keep_)

        for _ in range(warmup):  # kernel selection, lazy init, compile: one window, not timed
            once(min(len(frames), options.window), StageClock(device), None, None)
        meter.reset()
        start_bytes = meter.current()
        tracker = LiveTensorBytes() if tensors else None
        clock = StageClock(device, tracker)
        start = time.perf_counter()
        with tracker if tracker is not None else contextlib.nullcontext():
            worst, consumer_s, count = once(len(frames), clock, reference, keep)
        clock.sync()
        total = time.perf_counter() - start - consumer_s
        peak = clock.overall_peak() if device.type == "cuda" else meter.peak()
    assert count == len(frames), (count, len(frames))
    stage_s = {k: clock.seconds.get(k, 0.0) for k in STAGES}
    cpu_side = max(0.0, total - sum(stage_s.values()))
    model = clip_model = planned = None  # drop every reference (the closure's too) before the next config
    free_memory()
    return Result(
        config=name, dtype=DTYPE_NAMES[dtype], frames=len(frames), source=f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        processing=f"{geo.pad_w}x{geo.pad_h}", total_s=total, stages=stage_s, cpu_side_s=cpu_side,
        fps=len(frames) / total, peak_bytes=int(peak), start_bytes=int(start_bytes), mem_kind=meter.kind, max_abs_diff=worst,
        plan="official pipeline" if name == "official" else f"{plan.name}: {plan.describe()}",
        activation_peaks=dict(clock.act_peak), notes=notes.strip("; "),
    )


# ---------------------------------------------------------------------------------------------- output
def _fmt_diff(d: float | None) -> str:
    return "-" if d is None else ("0" if d == 0 else f"{d:.2e}")


def table(results: list[Result]) -> str:
    base = next((r for r in results if r.config == "official"), None)
    head = ("| config | dtype | frames/s | x official | encode s | UNet s | decode s | CLIP s | CPU-side s | "
            "CPU-side % | total s | peak MiB | at start MiB | max abs diff vs fp32 |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        ratio = f"{r.fps / base.fps:.2f}" if base is not None and base.fps > 0 else "-"
        s = r.stages
        lines.append(
            f"| {r.config} | {r.dtype} | {r.fps:.2f} | {ratio} | {s['encode']:.3f} | {s['unet']:.3f} | "
            f"{s['decode']:.3f} | {s['clip']:.3f} | {r.cpu_side_s:.3f} | {100 * r.cpu_side_s / r.total_s:.0f} | "
            f"{r.total_s:.2f} | {r.peak_bytes / 2**20:.0f} | {r.start_bytes / 2**20:.0f} | {_fmt_diff(r.max_abs_diff)} |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[Result]) -> str:
    head = "| config | processing | frames | ms/frame | encode ms/f | UNet ms/f | decode ms/f | CPU-side ms/f | peak MiB |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        per = lambda s, r=r: 1000 * s / r.frames  # noqa: E731
        lines.append(
            f"| {r.config} | {r.processing} | {r.frames} | {per(r.total_s):.1f} | {per(r.stages['encode']):.1f} | "
            f"{per(r.stages['unet']):.1f} | {per(r.stages['decode']):.1f} | {per(r.cpu_side_s):.1f} | "
            f"{r.peak_bytes / 2**20:.0f} |"
        )
    return "\n".join(lines)


def environment(device: torch.device) -> dict[str, Any]:
    import diffusers

    env = {
        "python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        env["transformers"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    return env


# ---------------------------------------------------------------------------------------------- main
def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT, e.g. 1024x576") from exc
    return w, h


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    ap.add_argument("--tiny", action="store_true", help="tiny random model and small sizes: runs in seconds on a CPU")
    ap.add_argument("--size", type=_size, default=None, help="processing size WxH (its long side is the resolution); "
                    "default 1024x576, tiny 128x64")
    ap.add_argument("--source", type=_size, default=None, help="source frame size WxH; default 1920x1080, tiny 256x128")
    ap.add_argument("--frames", type=int, default=None, help="clip length; default 64, tiny 6")
    ap.add_argument("--window", type=int, default=None, help="frames per UNet call; default 16, tiny 4")
    ap.add_argument("--overlap", type=int, default=None, help="frames shared by windows; default 4, tiny 2")
    ap.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                    help="our default mode's precision (auto: fp16 on CUDA, fp32 on CPU, as the CLI)")
    ap.add_argument("--configs", default="default,low_vram,official",
                    help=f"comma list from {','.join(ALL_CONFIGS)} (the fp32 reference always runs first)")
    ap.add_argument("--no-reference", action="store_true", help="skip the fp32 reference (no accuracy column)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed one-window runs per config before the timed run (default 1)")
    ap.add_argument("--sweep", action="store_true", help="also sweep long side and clip length")
    ap.add_argument("--sweep-sides", type=_ints, default=None, help="long sides; default 512,768,1024,1536 (tiny 64,128)")
    ap.add_argument("--sweep-lengths", type=_ints, default=None, help="clip lengths; default 16,64,256 (tiny 4,8)")
    ap.add_argument("--sweep-configs", default="default", help="configs swept (default: default)")
    ap.add_argument("--activation-peaks", action="store_true",
                    help="also record each stage's peak live-tensor bytes (slow; calibrates the low-VRAM planner)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True (an "
                    "optimisation candidate: autotuned convolutions; the warm-up run pays the tuning)")
    ap.add_argument("--seed", type=int, default=0, help="weight seed")
    ap.add_argument("--json", default=None, help="write all measurements to this JSON file")
    args = ap.parse_args(argv)
    tiny = args.tiny
    args.size = args.size or ((128, 64) if tiny else (1024, 576))
    args.source = args.source or ((256, 128) if tiny else (1920, 1080))
    args.frames = args.frames or (6 if tiny else 64)
    args.window = args.window or (4 if tiny else 16)
    args.overlap = args.overlap if args.overlap is not None else (2 if tiny else 4)
    args.sweep_sides = args.sweep_sides or ([64, 128] if tiny else [512, 768, 1024, 1536])
    args.sweep_lengths = args.sweep_lengths or ([4, 8] if tiny else [16, 64, 256])
    args.configs = [c for c in args.configs.split(",") if c]
    args.sweep_configs = [c for c in args.sweep_configs.split(",") if c]
    for c in args.configs + args.sweep_configs:
        if c not in ALL_CONFIGS:
            ap.error(f"unknown config '{c}'; choose from {', '.join(ALL_CONFIGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda was asked for, but no CUDA GPU is available", file=sys.stderr)
        return 2
    args.run_dtype = (torch.float16 if device.type == "cuda" else torch.float32) if args.dtype == "auto" else DTYPES[args.dtype]
    warmup = 1 if args.warmup is None else args.warmup
    resolution = max(args.size)

    t0 = time.perf_counter()
    master = build_master(args.tiny, args.seed)
    build_s = time.perf_counter() - t0
    src_w, src_h = args.source
    pool_f, pool_m = make_pool(src_h, src_w)
    frames, masks = PooledClip(pool_f, args.frames), PooledClip(pool_m, args.frames)
    options = MatteOptions(resolution=resolution, window=args.window, overlap=args.overlap)
    env = environment(device)
    print(f"# bench_matte: {'tiny' if args.tiny else 'real-size'} random-weight model on {env.get('gpu', device)}; "
          f"{args.frames} frames {src_w}x{src_h} -> resolution {resolution}, window {args.window}/{args.overlap}; "
          f"model built in {build_s:.1f} s; torch {torch.__version__}, {torch.get_num_threads()} threads")

    results: list[Result] = []
    reference = None
    if not args.no_reference:
        reference = torch.empty(args.frames, src_h, src_w)
        results.append(run_config("fp32", master, args, device, frames, masks, options, None, keep=reference,
                                  dtype=torch.float32, tensors=args.activation_peaks, warmup=warmup))
    for name in args.configs:
        if name == "default" and reference is not None and args.run_dtype == torch.float32:
            r = copy.copy(results[0])
            r.config, r.max_abs_diff, r.notes = "default", 0.0, "same run as fp32 (default precision on this device is fp32)"
            results.append(r)
            continue
        results.append(run_config(name, master, args, device, frames, masks, options, reference,
                                  tensors=args.activation_peaks, warmup=warmup))
    print()
    print(table(results))
    print(f"# peak MiB: {results[0].mem_kind if results else ''} during the timed run (reset per configuration); "
          "at start: the same measure when the run began (weights placed)")
    if args.activation_peaks or device.type == "cuda":
        print()
        for r in results:
            peaks = ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sorted(r.activation_peaks.items()))
            print(f"# {r.config}: per-stage activation peak MiB ({'live tensors' if args.activation_peaks else 'CUDA allocator'}): {peaks}")

    sweep: list[Result] = []
    if args.sweep:
        for side in args.sweep_sides:
            for length in args.sweep_lengths:
                opts = MatteOptions(resolution=side, window=args.window, overlap=args.overlap)
                clip_f, clip_m = PooledClip(pool_f, length), PooledClip(pool_m, length)
                for name in args.sweep_configs:
                    sweep.append(run_config(name, master, args, device, clip_f, clip_m, opts, None, warmup=warmup))
        print()
        print(sweep_table(sweep))

    if args.json:
        payload = {
            "environment": env, "build_seconds": build_s, "tiny": args.tiny,
            "args": {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in vars(args).items()},
            "results": [r.row() for r in results], "sweep": [r.row() for r in sweep],
        }
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
