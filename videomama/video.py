"""Whole clips: windows over time, blended overlaps, noise keyed to frame indices.

Data flow (one call each): checks -> geometry -> windows -> encode -> UNet -> decode -> blend
-> un-pad -> upsample to source -> alpha. Memory is bounded by the window, not the clip:
frames are read when their window needs them (inputs may be lazy sequences, e.g. a video
file), each frame is encoded once (latents of frames shared with the next window are kept),
and a frame's alpha is handed out as soon as no later window covers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .errors import Cancelled, InputError
from .geometry import Geometry, alpha_to_source, frames_to_model, masks_to_model, plan_geometry
from .masks import MaskSequence, as_tensor, check_finite, check_frame_shape, check_sizes, frame_count
from .options import MatteOptions

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]

_POSTERIOR_SEED_OFFSET = 0x5EED  # posterior noise uses its own stream so UNet noise matches a plain randn


class WindowModel(Protocol):
    """What the scheduler needs of a model (VideoMaMaModel, or a stand-in in tests)."""

    latent_channels: int

    @property
    def compute_device(self) -> torch.device: ...

    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor: ...

    def denoise(self, frame_latents: torch.Tensor, mask_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor: ...

    def decode_alpha(self, latents: torch.Tensor, chunk: int) -> torch.Tensor: ...


def plan_windows(num_frames: int, window: int, overlap: int) -> list[range]:
    """Windows of ``window`` frames, consecutive ones sharing at least ``overlap`` frames.

    Every window is full length (the last one is aligned to the clip's end), because the UNet
    sees a short last window as a different, shorter video.
    """
    if num_frames <= window:
        return [range(0, num_frames)]
    stride = window - overlap
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(min(starts[-1] + stride, num_frames - window))
    return [range(s, s + window) for s in starts]


def blend_weights(windows: list[range]) -> list[torch.Tensor]:
    """Per-window frame weights: linear ramps across each overlap, 1 elsewhere.

    Inside an overlap the earlier window fades out as the later fades in, so the blended alpha
    moves from one window's answer to the next without a step.
    """
    weights = []
    for k, win in enumerate(windows):
        n = len(win)
        pos = torch.arange(n, dtype=torch.float32)
        w = torch.ones(n)
        if k > 0:
            shared = windows[k - 1].stop - win.start
            if shared > 0:
                w = torch.minimum(w, (pos + 1) / (shared + 1))
        if k + 1 < len(windows):
            shared = win.stop - windows[k + 1].start
            if shared > 0:
                w = torch.minimum(w, (n - pos) / (shared + 1))
        weights.append(w)
    return weights


class _FrameNoise:
    """Standard normal noise for frame i from a stream seeded once: it depends only on (seed, i).

    Frames are drawn in increasing order from one CPU generator; on the CPU, drawing frame by
    frame gives exactly the numbers of one draw for the whole clip, so a clip that fits one
    window gets the noise the official single-call pipeline would draw on the CPU.
    """

    def __init__(self, seed: int, shape: tuple[int, ...]):
        self._gen = torch.Generator(device="cpu").manual_seed(seed)
        self._shape = shape
        self._next = 0
        self._kept: dict[int, torch.Tensor] = {}

    def get(self, index: int) -> torch.Tensor:
        while self._next <= index:
            self._kept[self._next] = torch.randn(self._shape, generator=self._gen)
            self._next += 1
        return self._kept[index]

    def forget_before(self, index: int) -> None:
        for i in [i for i in self._kept if i < index]:
            del self._kept[i]


@dataclass
class _Inputs:
    frames: Any
    masks: MaskSequence
    num_frames: int
    geometry: Geometry


def _prepare(frames: Any, masks: Any, options: MatteOptions) -> _Inputs:
    num_frames = frame_count(frames, "frames")
    mask_seq = MaskSequence(masks, num_frames, options.mask_threshold)
    first = as_tensor(frames[0], "frames[0]")
    check_frame_shape(first, 0)
    first_mask = mask_seq[0]
    check_sizes(tuple(first.shape[:2]), tuple(first_mask.shape))
    geo = plan_geometry(int(first.shape[0]), int(first.shape[1]), options.resolution)
    log.info(
        "matting %d frames of %dx%d at %dx%d (padded to %dx%d)",
        num_frames, geo.w, geo.h, geo.content_w, geo.content_h, geo.pad_w, geo.pad_h,
    )
    return _Inputs(frames, mask_seq, num_frames, geo)


def _read_frames(inputs: _Inputs, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The window's new frames (N, H, W, 3) and binary masks (N, h, w), checked, on ``device``.

    Only shapes are checked on the CPU; the value checks run as one reduction on the device,
    so a GPU run spends almost no CPU time per frame.
    """
    geo = inputs.geometry
    frames, masks = [], []
    for i in indices:
        frame = as_tensor(inputs.frames[i], f"frames[{i}]")
        check_frame_shape(frame, i)
        if tuple(frame.shape[:2]) != (geo.h, geo.w):
            raise InputError(
                f"frames[{i}] is {frame.shape[1]}x{frame.shape[0]} but frames[0] is {geo.w}x{geo.h}; "
                "all frames of a clip must have one size."
            )
        frames.append(frame)
        masks.append(inputs.masks[i])
    mask_hw = {tuple(m.shape) for m in masks}
    if len(mask_hw) > 1:
        raise InputError(f"masks {indices[0]}..{indices[-1]} have different sizes {sorted(mask_hw)}; give masks of one size.")
    batch = torch.stack(frames)
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    else:
        batch = batch.to(device)
    check_finite(batch, list(indices))
    return batch.clamp_(0.0, 1.0), torch.stack(masks).to(device)


def iter_matte(
    model: WindowModel,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(frame_index, alpha)`` in frame order, alpha (H, W) float32 on the CPU at source size.

    ``frames``: (T, H, W, 3) in [0, 1] (tensor, array, or any lazy sequence of frames);
    ``masks``: (T, H, W) or a single mask for all frames (1 = subject; soft masks are
    binarised at ``options.mask_threshold``). ``progress(done, total)`` is called after each
    window; ``should_cancel()`` is asked before each window and stops the run with
    :class:`Cancelled`.
    """
    inputs = _prepare(frames, masks, options)
    geo = inputs.geometry
    windows = plan_windows(inputs.num_frames, options.window, options.overlap)
    weights = blend_weights(windows)
    device = model.compute_device
    latent_shape = (model.latent_channels, *geo.latent_hw)
    unet_noise = _FrameNoise(options.seed, latent_shape)
    posterior_noise = _FrameNoise(options.seed + _POSTERIOR_SEED_OFFSET, (2, *latent_shape))

    latents: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # frame -> (frame latent, mask latent)
    acc: dict[int, torch.Tensor] = {}  # frame -> weighted alpha sum at model size
    acc_w: dict[int, float] = {}
    emitted = 0
    for k, (win, w) in enumerate(zip(windows, weights)):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"stopped before window {k + 1} of {len(windows)} (frames {win.start}..{win.stop - 1}).")
        todo = [i for i in win if i not in latents]
        if todo:
            px_frames, px_masks = _read_frames(inputs, todo, device)
            # Resizing and padding run on the compute device: on a GPU they cost next to nothing.
            pixels = torch.cat([frames_to_model(px_frames, geo), masks_to_model(px_masks, geo)])
            eps = None
            if options.posterior == "sample":
                pair = torch.stack([posterior_noise.get(i) for i in todo])  # (n, 2, 4, h, w)
                eps = torch.cat([pair[:, 0], pair[:, 1]])
            lat = model.encode(pixels, eps)
            for j, i in enumerate(todo):
                latents[i] = (lat[j], lat[len(todo) + j])
        frame_lat = torch.stack([latents[i][0] for i in win])
        mask_lat = torch.stack([latents[i][1] for i in win])
        noise = torch.stack([unet_noise.get(i) for i in win])
        alpha = model.decode_alpha(model.denoise(frame_lat, mask_lat, noise), options.decode_chunk).float()

        for j, i in enumerate(win):
            weighted = alpha[j] * w[j]
            acc[i] = acc[i] + weighted if i in acc else weighted
            acc_w[i] = acc_w.get(i, 0.0) + float(w[j])

        # Frames no later window touches are final: hand them out and forget their state.
        final_upto = windows[k + 1].start if k + 1 < len(windows) else inputs.num_frames
        done = list(range(emitted, final_upto))
        if done:
            stacked = torch.stack([acc.pop(i) / acc_w.pop(i) for i in done])
            source = alpha_to_source(stacked, geo).cpu()
            for j, i in enumerate(done):
                yield i, source[j]
            emitted = final_upto
        for i in [i for i in latents if i < final_upto]:
            del latents[i]
        unet_noise.forget_before(final_upto)
        posterior_noise.forget_before(final_upto)
        if progress is not None:
            progress(k + 1, len(windows))


def matte_clip(
    model: WindowModel,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> torch.Tensor:
    """Matte a whole clip; returns alpha (T, H, W) float32 on the CPU (1 = subject)."""
    out: torch.Tensor | None = None
    for i, alpha in iter_matte(model, frames, masks, options, progress, should_cancel):
        if out is None:
            out = torch.empty((frame_count(frames), *alpha.shape), dtype=torch.float32)
        out[i] = alpha
    assert out is not None
    return out
