"""Whole clips: windows over time, blended overlaps, noise keyed to frame indices.

Data flow (one call each): checks -> windows (each with its region of the frame and its
geometry) -> encode -> UNet -> decode -> un-pad -> to source size -> blend -> alpha. Memory is
bounded by the window, not the clip: frames are read when their window needs them (inputs may
be lazy sequences, e.g. a video file), each frame is encoded once per region (latents of frames
shared with the next window are kept), and a frame's alpha is handed out as soon as no later
window covers it.

- :func:`iter_window_results` runs any consecutive range of windows and reports every frame
  they touch, finished or not (a partial weighted sum), so a long shot can be split across
  workers and merged exactly (``videomama.distributed``).
- :func:`iter_matte` runs all windows and yields finished alphas; :func:`matte_clip` collects
  them. :func:`videomama.pipeline.run.run_matte` wraps ``iter_matte`` with memory plans, weight
  placement and the out-of-memory policy, and is what the CLI and the ComfyUI node call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..errors import Cancelled, InputError, VideoMaMaError
from ..inputs import check_finite, frame_at, frame_count
from ..options import CancelFn, MatteOptions, ProgressFn
from .crop import subject_regions
from .geometry import Geometry, Region, alpha_to_source, fit_geometry, frames_to_model, masks_to_model
from .masks import MaskSequence, check_sizes
from .schedule import FrameNoise, blend_weights, split_windows
from .transfer import to_device

log = logging.getLogger(__name__)

__all__ = [
    "FrameResult", "Region", "WindowModel", "WindowSpec", "collect_frames", "iter_matte", "iter_window_results",
    "layout_windows", "matte_clip",
]

_POSTERIOR_SEED_OFFSET = 0x5EED  # posterior noise uses its own stream so UNet noise matches a plain randn



class WindowModel(Protocol):
    """What the scheduler needs of a model (VideoMaMaModel, a PlannedModel, or a stand-in in tests)."""

    latent_channels: int

    @property
    def compute_device(self) -> torch.device: ...

    def encode(self, pixels: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor: ...

    def denoise(self, frame_latents: torch.Tensor, mask_latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor: ...

    def decode_alpha(self, latents: torch.Tensor, chunk: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class WindowSpec:
    """One model call: which frames, their blend weights, and which part of the frame it sees.

    region: the box of the source frame the model processes at ``options.resolution`` (the
        alpha is 0 outside it); None is the whole frame.
    """

    frames: range
    weights: torch.Tensor  # (len(frames),) float32
    region: Region | None = None


@dataclass(frozen=True)
class FrameResult:
    """What a run of windows knows about one frame: ``weighted_sum / weight`` is its alpha when
    ``complete`` (every window covering the frame was in the run); otherwise the partial sum
    of the run's windows, to be added to the other runs' before dividing."""

    index: int
    weighted_sum: torch.Tensor  # (H, W) float32 at source size, CPU
    weight: float
    complete: bool

    @property
    def alpha(self) -> torch.Tensor:
        return self.weighted_sum / self.weight


def layout_windows(num_frames: int, options: MatteOptions, regions: Sequence[Region | None] | None = None, *,
                   masks: Any = None, hw: tuple[int, int] | None = None) -> list[WindowSpec]:
    """The clip's windows (see :func:`split_windows` / :func:`blend_weights`), one region each.

    regions: given by the caller, or with ``options.crop == 'auto'`` placed around the subject
    (:func:`~videomama.pipeline.crop.subject_regions`; needs the clip's ``masks`` and the
    frame size ``hw``); otherwise whole frames.
    """
    ranges = split_windows(num_frames, options.window, options.overlap)
    weights = blend_weights(ranges)
    if regions is None and options.crop == "auto":
        if masks is None or hw is None:
            raise InputError("crop='auto' places its boxes from the masks: give layout_windows the masks and frame size.")
        seq = masks if isinstance(masks, MaskSequence) else MaskSequence(masks, num_frames, options.mask_threshold)
        regions = subject_regions(seq, ranges, hw)
    if regions is not None and len(regions) != len(ranges):
        raise InputError(f"{len(regions)} regions were given for {len(ranges)} windows; give one per window.")
    return [WindowSpec(r, w, None if regions is None else regions[k]) for k, (r, w) in enumerate(zip(ranges, weights))]


@dataclass
class _Inputs:
    frames: Any
    masks: MaskSequence
    num_frames: int
    hw: tuple[int, int]
    # On a GPU the value checks of frames and masks wait for the window's one device -> host
    # copy: (per-frame finite flags on the device, frame indices, what they check).
    deferred: list[tuple[torch.Tensor, list[int], str]] = field(default_factory=list)


def _prepare(frames: Any, masks: Any, options: MatteOptions) -> _Inputs:
    num_frames = frame_count(frames, "frames")
    mask_seq = MaskSequence(masks, num_frames, options.mask_threshold)
    first = frame_at(frames, 0)
    # Shape only: its values are checked with its window (no host sync here on a GPU).
    check_sizes(tuple(first.shape[:2]), tuple(mask_seq.get(0, finite_flags=[]).shape))
    return _Inputs(frames, mask_seq, num_frames, (int(first.shape[0]), int(first.shape[1])))


def _read_frames(inputs: _Inputs, indices: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The window's new frames (N, H, W, 3) and binary masks (N, h, w), checked, on ``device``.

    Only shapes are checked on the CPU; the value checks run as one reduction on the device,
    so a GPU run spends almost no CPU time per frame.
    """
    h, w = inputs.hw
    defer = device.type == "cuda"
    frames, masks = [], []
    mask_flags: list[torch.Tensor] = []
    for i in indices:
        frame = frame_at(inputs.frames, i)
        if tuple(frame.shape[:2]) != (h, w):
            raise InputError(
                f"frames[{i}] is {frame.shape[1]}x{frame.shape[0]} but frames[0] is {w}x{h}; "
                "all frames of a clip must have one size."
            )
        frames.append(frame)
        masks.append(inputs.masks.get(i, mask_flags if defer else None))
    mask_hw = {tuple(m.shape) for m in masks}
    if len(mask_hw) > 1:
        raise InputError(f"masks {indices[0]}..{indices[-1]} have different sizes {sorted(mask_hw)}; give masks of one size.")
    batch = to_device(torch.stack(frames), device)
    if defer:
        inputs.deferred.append((torch.isfinite(batch).flatten(1).all(dim=1), list(indices), "frames"))
        inputs.deferred.append((to_device(torch.stack(mask_flags), device), list(indices), "masks"))
    else:
        check_finite(batch, list(indices))
    return batch.clamp_(0.0, 1.0), to_device(torch.stack(masks), device)


def _to_host(inputs: _Inputs, alphas: list[torch.Tensor], frames: Sequence[int] = (),
             dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """Settled alphas to the host and the deferred input checks, in ONE device -> host copy
    (one sync per window on a GPU). A non-finite alpha (half-precision overflow: PNG writing
    would silently turn it into 0) is checked on the host copy and raised as one line."""
    flags = [flag.reshape(-1).to(torch.float32) for flag, _, _ in inputs.deferred]
    if not alphas and not flags:
        return []
    shapes = [a.shape for a in alphas]
    parts = [a.reshape(-1).to(torch.float32) for a in alphas] + flags
    host = torch.cat(parts).cpu()
    offset = 0
    out = []
    for shape in shapes:
        n = shape.numel()
        out.append(host[offset : offset + n].view(shape))
        offset += n
    if offset and not bool(torch.isfinite(host[:offset]).all()):  # host memory: no device sync
        frame = next((i for i, a in zip(frames, out) if not bool(torch.isfinite(a).all())), "?")
        inputs.deferred.clear()
        raise VideoMaMaError(f"the model's alpha of frame {frame} is NaN or infinite in {str(dtype or 'this precision').removeprefix('torch.')}: "
                             "the weights overflow at this precision; run with --precision fp32 or bf16 "
                             "(LoadVideoMaMa: precision fp32 or bf16).")
    for _, indices, name in inputs.deferred:
        ok = host[offset : offset + len(indices)]
        offset += len(indices)
        bad = [i for i, v in zip(indices, ok.tolist()) if v < 0.5]
        if bad:
            raise InputError(f"{name}[{bad[0]}] contains NaN or infinite values; fix the node or file that produced it.")
    inputs.deferred.clear()
    return out


def _crop(x: torch.Tensor, region: Region, source_hw: tuple[int, int]) -> torch.Tensor:
    """Crop (N, H, W, ...) source-size tensors (masks may be another size: scaled box)."""
    top, left, bottom, right = region
    sh, sw = int(x.shape[1]), int(x.shape[2])
    if (sh, sw) != source_hw:  # masks of another size: the same box in their pixels
        top, bottom = top * sh // source_hw[0], max(top * sh // source_hw[0] + 1, -(-bottom * sh // source_hw[0]))
        left, right = left * sw // source_hw[1], max(left * sw // source_hw[1] + 1, -(-right * sw // source_hw[1]))
    return x[:, top:bottom, left:right]


def _region_of(spec: WindowSpec, hw: tuple[int, int]) -> Region:
    region = spec.region if spec.region is not None else (0, 0, hw[0], hw[1])
    top, left, bottom, right = region
    if not (0 <= top < bottom <= hw[0] and 0 <= left < right <= hw[1]):
        raise InputError(f"window region {region} is not a box inside the {hw[1]}x{hw[0]} frame.")
    return region


def iter_window_results(
    model: WindowModel,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    *,
    windows: Sequence[WindowSpec] | None = None,
    run: range | None = None,
    resume_from: int = 0,
) -> Iterator[FrameResult]:
    """Run the windows ``run`` (indices into ``windows``; default all) and report their frames in order.

    Each frame is reported once, as soon as no later window of the run covers it; it is
    ``complete`` when no window outside the run covers it. ``progress(done, total)`` counts
    windows of the run; ``should_cancel()`` is asked before each window.

    resume_from: report frames from this index on only, running just the windows of ``run``
        that still contribute to them. Noise depends only on (seed, frame) and each window's
        result only on its own frames, so these frames equal those of a full run.
    """
    inputs = _prepare(frames, masks, options)
    hw = inputs.hw
    specs = list(windows) if windows is not None else layout_windows(inputs.num_frames, options, masks=inputs.masks,
                                                                      hw=hw)
    if not specs or specs[0].frames.start != 0 or specs[-1].frames.stop != inputs.num_frames:
        raise InputError(f"the windows must cover the clip's {inputs.num_frames} frames from the first to the last.")
    run = run if run is not None else range(len(specs))
    if len(run) == 0 or run.step != 1 or run.start < 0 or run.stop > len(specs):
        raise InputError(f"run={run} must be a non-empty consecutive range of the {len(specs)} windows.")
    if not 0 <= resume_from < inputs.num_frames:
        raise InputError(f"resume_from={resume_from} is outside the clip of {inputs.num_frames} frames.")
    todo_windows = [k for k in run if specs[k].frames.stop > resume_from]
    covered_outside = {i for k, s in enumerate(specs) if k not in run for i in s.frames}
    device = model.compute_device
    latent_channels = model.latent_channels
    noise_streams: dict[tuple[int, int], tuple[FrameNoise, FrameNoise]] = {}  # per latent size
    log.info("matting %d frames of %dx%d in %d window(s) of %d", inputs.num_frames, hw[1], hw[0],
             len(todo_windows), options.window)

    latents: dict[tuple[int, Region], tuple[torch.Tensor, torch.Tensor]] = {}  # (frame, region) -> latents
    acc: dict[int, torch.Tensor] = {}  # frame -> weighted alpha sum at source size, on the device
    acc_w: dict[int, float] = {}
    reported = max(resume_from, specs[todo_windows[0]].frames.start) if todo_windows else inputs.num_frames
    for n, k in enumerate(todo_windows):
        spec = specs[k]
        win = spec.frames
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"stopped before window {k + 1} of {len(specs)} (frames {win.start}..{win.stop - 1}).")
        region = _region_of(spec, hw)
        top, left, bottom, right = region
        geo = fit_geometry(bottom - top, right - left, options.resolution)
        log.debug("window %d (frames %d..%d): region %s at %dx%d (padded %dx%d)", k, win.start, win.stop - 1,
                  region, geo.content_w, geo.content_h, geo.pad_w, geo.pad_h)
        if geo.latent_hw not in noise_streams:
            shape = (latent_channels, *geo.latent_hw)
            unet_noise = FrameNoise(options.seed, shape)
            posterior_noise = FrameNoise(options.seed + _POSTERIOR_SEED_OFFSET, (2, *shape))
            for stream in (unet_noise, posterior_noise):
                stream.forget_before(win.start)
            noise_streams[geo.latent_hw] = (unet_noise, posterior_noise)
        unet_noise, posterior_noise = noise_streams[geo.latent_hw]

        todo = [i for i in win if (i, region) not in latents]
        if todo:
            px_frames, px_masks = _read_frames(inputs, todo, device)
            px_frames, px_masks = _crop(px_frames, region, hw), _crop(px_masks, region, hw)
            # Resizing and padding run on the compute device: on a GPU they cost next to nothing.
            pixels = torch.cat([frames_to_model(px_frames, geo), masks_to_model(px_masks, geo)])
            eps = None
            if options.posterior == "sample":
                pair = torch.stack([posterior_noise.get(i) for i in todo])  # (n, 2, 4, h, w)
                eps = torch.cat([pair[:, 0], pair[:, 1]])
            lat = model.encode(pixels, eps)
            for j, i in enumerate(todo):
                latents[(i, region)] = (lat[j], lat[len(todo) + j])
        frame_lat = torch.stack([latents[(i, region)][0] for i in win])
        mask_lat = torch.stack([latents[(i, region)][1] for i in win])
        noise = torch.stack([unet_noise.get(i) for i in win])
        alpha = model.decode_alpha(model.denoise(frame_lat, mask_lat, noise), options.decode_chunk).float()
        _accumulate(acc, acc_w, alpha, spec, region, geo, hw)

        # Frames no later window of the run touches are settled: report them, forget their state.
        nxt = todo_windows[n + 1] if n + 1 < len(todo_windows) else None
        settled_upto = specs[nxt].frames.start if nxt is not None else win.stop
        settled = list(range(reported, settled_upto))
        host = _to_host(inputs, [acc.pop(i) for i in settled], settled, getattr(model, "compute_dtype", None))
        for j, i in enumerate(settled):
            yield FrameResult(i, host[j], acc_w.pop(i), complete=i not in covered_outside)
        reported = max(reported, settled_upto)
        for i in [i for i in acc if i < settled_upto]:  # frames before resume_from: never reported
            del acc[i], acc_w[i]
        for key in [key for key in latents if key[0] < settled_upto]:
            del latents[key]
        for unet_stream, posterior_stream in noise_streams.values():
            unet_stream.forget_before(settled_upto)
            posterior_stream.forget_before(settled_upto)
        if progress is not None:
            progress(n + 1, len(todo_windows))


def _accumulate(acc: dict[int, torch.Tensor], acc_w: dict[int, float], alpha: torch.Tensor, spec: WindowSpec,
                region: Region, geo: Geometry, hw: tuple[int, int]) -> None:
    """Add one window's alpha (T, pad_h, pad_w at model size) into the source-size sums."""
    top, left, bottom, right = region
    whole = region == (0, 0, hw[0], hw[1])
    for j, i in enumerate(spec.frames):
        w = float(spec.weights[j])
        source = alpha_to_source(alpha[j : j + 1], geo)[0]  # one frame at a time: bounded memory at 4K
        if whole:
            weighted = source * w
        else:  # alpha 0 outside the window's box
            weighted = source.new_zeros(hw)
            weighted[top:bottom, left:right] = source * w
        acc[i] = acc[i] + weighted if i in acc else weighted
        acc_w[i] = acc_w.get(i, 0.0) + w


def iter_matte(
    model: WindowModel,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    *,
    windows: Sequence[WindowSpec] | None = None,
    resume_from: int = 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(frame_index, alpha)`` in frame order, alpha (H, W) float32 on the CPU at source size.

    ``frames``: (T, H, W, 3) in [0, 1] (tensor, array, or any lazy sequence of frames);
    ``masks``: (T, H, W) or a single mask for all frames (1 = subject; soft masks are
    binarised at ``options.mask_threshold``). ``progress(done, total)`` is called after each
    window; ``should_cancel()`` is asked before each window and stops the run with
    :class:`Cancelled`. windows: the layout (default :func:`layout_windows`, whole frames);
    resume_from: see :func:`iter_window_results`.
    """
    for result in iter_window_results(model, frames, masks, options, progress, should_cancel, windows=windows,
                                      resume_from=resume_from):
        yield result.index, result.alpha.clamp_(0.0, 1.0)


def matte_clip(
    model: WindowModel,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> torch.Tensor:
    """Matte a whole clip with :func:`iter_matte`; returns alpha (T, H, W) float32 on the CPU (1 = subject)."""
    return collect_frames(iter_matte(model, frames, masks, options, progress, should_cancel), frame_count(frames))


def collect_frames(items: Iterator[tuple[int, torch.Tensor]], count: int) -> torch.Tensor:
    """Stack ``(index, frame)`` pairs into one (count, ...) float32 tensor on the CPU."""
    out: torch.Tensor | None = None
    for i, frame in items:
        if out is None:
            out = torch.empty((count, *frame.shape), dtype=torch.float32)
        out[i] = frame
    if out is None:
        raise InputError("no frames were produced.")
    return out
