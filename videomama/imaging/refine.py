"""Weight-free, edge-aware matte refinement (no model, no download).

:func:`iter_refine` turns coarse binary masks and the frames into soft mattes, one frame at a
time (memory does not grow with the clip; progress and cancellation per frame);
:func:`refine_clip` collects its frames into one tensor. Per frame (see
:mod:`videomama.imaging.refine_frame` for the details):

1. **Uncertain band.** At a working size (long side ``work_size``, default 768) pixels farther
   than the band half-width inside the mask are sure foreground, farther outside sure
   background. The half-width is ``band`` x the long side (at least 8 px): make it about as
   large as the mask's edge error (a mask made at 1/8 of the resolution is wrong by up to 8
   px). Parts of the mask (or of the background between parts) thinner than the band keep
   their centre line as sure, so poles, strands and holes are not averaged with their
   surroundings; a warning says when that happens.
2. **Colour estimate.** For every band pixel the best pair of local means of sure-foreground
   and sure-background colour at four scales gives alpha = (I - B).(F - B) / |F - B|^2. With
   the windows' colour spread, the pixel is then weighed as pure foreground, pure background
   or a mix (a textured background's own colours are not read as partial alpha). The
   confidence is low where F and B look alike, overlap in spread, both explain the pixel, or
   neither does; where it is low the mask itself is kept (on real photographs a hard guess
   errs less than a blur).
3. **Smoothing.** A guided filter makes the estimate locally linear in the colour. Where the
   mask moves between frames (the previous or the next one), the edge may be motion-blurred:
   there the band is also solved with closed-form matting
   (:mod:`videomama.imaging.matting_solver`, the estimate as a data term), which gives a blurred
   edge the soft profile colour alone cannot; a still edge is left as it is (on still
   photographs the solve leaves a haze over smooth backgrounds; BENCHMARKS.md).
4. **Time.** Each frame's alpha is averaged with the alphas of at most
   :data:`TEMPORAL_CONTEXT` previous frames where the (lightly blurred) image did not change;
   the weight falls with the local squared colour change, so a textured background that a
   subject uncovers counts as changed and no alpha stays behind. The support is finite: the
   output of frame t depends on frames t - TEMPORAL_CONTEXT .. t and the masks of
   t - TEMPORAL_CONTEXT - 1 .. t + 1 only (each frame's own alpha uses its neighbours' masks),
   so a shot split into segments (``start``/``stop``) gives exactly the frames of one pass.
5. **Resolution.** The working-size alpha is scaled to the frame and the colour detail the
   working size lost is turned into alpha detail with the local slopes d alpha / d colour;
   the sure regions are then exactly 1 and 0.

:func:`detail_refine` is step 5 on its own, for an alpha made at a lower resolution and
scaled up (e.g. VideoMaMa's output at its processing size). Output alpha is float32 on the CPU.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..errors import Cancelled, InputError
from ..inputs import as_tensor, frame_at, frame_count
from ..pipeline.transfer import to_device
from . import refine_frame as frame_stage
from .filters import box_blur, dilate, guided_coefficients
from .resize import resize_area

log = logging.getLogger(__name__)

__all__ = [
    "iter_refine", "refine_clip", "detail_refine", "band_pixels", "TemporalWindow",
    "DEFAULT_BAND", "MIN_BAND_PX", "TEMPORAL_CONTEXT",
]

DEFAULT_BAND = 0.0125  # half-width of the uncertain band as a fraction of the long side
MIN_BAND_PX = 8  # a mask made at 1/8 of the resolution is wrong by up to 8 px
DEFAULT_WORK_SIZE = 768
DETAIL_RADIUS = 2  # px at the working size: guided-filter window of detail_refine
THIN_WARN_SHARE = 0.05  # warn when more of the sure pixels than this come from thin-part centre lines
TEMPORAL_CONTEXT = 3  # previous frames the temporal average may use (finite support)
TEMPORAL_FLAT = True  # every previous frame weighs ``strength`` (True) or strength**j (False)
TEMPORAL_PREBLUR = 1  # px: images are 3x3-averaged before differencing (sensor noise / 9)
TEMPORAL_RADIUS = 2  # px (working size) over which the squared colour change is averaged
TEMPORAL_SIGMA2 = 3e-3  # squared colour change (summed over RGB) at which a frame's weight falls to 1/e

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _matte(masks: Any, i: int, name: str) -> torch.Tensor:
    m = as_tensor(masks[i], f"{name}[{i}]")
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise InputError(f"{name}[{i}] has shape {tuple(m.shape)}; expected (height, width).")
    return m


def _device(device: torch.device | str | None, frames: Any) -> torch.device:
    """The device asked for, else the frames' device if they are a tensor, else the CPU."""
    if device is not None:
        return torch.device(device)
    return frames.device if isinstance(frames, torch.Tensor) else torch.device("cpu")


def _auto_chunk(h: int, w: int) -> int:
    """Frames per chunk of detail_refine: about 6 megapixels of frames at a time (1080p: 2, 4K: 1)."""
    return int(max(1, min(16, 6_000_000 // max(1, h * w))))


def band_pixels(height: int, width: int, band: float = DEFAULT_BAND) -> int:
    """Half-width in px of the uncertain band for a frame size: ``band`` * long side, at least MIN_BAND_PX."""
    if not 0.0 < band < 0.5:
        raise InputError(f"band={band} must be a fraction of the long side between 0 and 0.5 (e.g. {DEFAULT_BAND}).")
    return max(MIN_BAND_PX, round(band * max(height, width)))


def _checked_work_hw(h: int, w: int, work_size: int) -> tuple[int, int]:
    if work_size < 64:
        raise InputError(f"work_size={work_size} must be at least 64 px.")
    return frame_stage.work_hw(h, w, work_size)


def _fit_mask(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if tuple(m.shape) == (h, w):
        return m
    return resize_area(m[None, None].float(), (h, w))[0, 0]


# ----------------------------------------------------------------------------------------------
# time
# ----------------------------------------------------------------------------------------------
class TemporalWindow:
    """Averages each frame's alpha with those of at most ``context`` previous frames where the image is unchanged.

    Call it frame by frame with the working-size image (1, 3, h, w) and that frame's own
    (unsmoothed) alpha (1, 1, H, W); it returns the smoothed alpha. A previous frame t - j
    gets the weight ``strength * exp(-d / TEMPORAL_SIGMA2)`` (``strength**j`` if not
    TEMPORAL_FLAT), d being the local mean of the
    squared colour change between the two (3x3-averaged) images; the current frame weighs 1.
    Only unsmoothed alphas are kept, so the result at frame t is a function of frames
    t - context .. t: no recursion, no trail longer than ``context`` frames.
    """

    def __init__(self, strength: float, context: int | None = None) -> None:
        self.strength = float(strength)
        context = TEMPORAL_CONTEXT if context is None else context
        self.past: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=max(0, int(context)))

    def __call__(self, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if self.strength <= 0.0 or self.past.maxlen == 0:
            return alpha
        smooth = box_blur(image.float(), TEMPORAL_PREBLUR)
        num, den = alpha.clone(), torch.ones_like(alpha)
        for j, (prev_image, prev_alpha) in enumerate(reversed(self.past), start=1):
            if prev_image.shape != smooth.shape or prev_alpha.shape != alpha.shape:
                break
            change = box_blur(((smooth - prev_image) ** 2).sum(1, keepdim=True), TEMPORAL_RADIUS)
            prior = self.strength if TEMPORAL_FLAT else self.strength**j
            weight = resize_area(prior * torch.exp(-change / TEMPORAL_SIGMA2), alpha.shape[-2:])
            num += weight * prev_alpha
            den += weight
        self.past.append((smooth, alpha))
        return num / den


# ----------------------------------------------------------------------------------------------
# the refiner
# ----------------------------------------------------------------------------------------------
def iter_refine(
    frames: Any,
    masks: Any,
    *,
    band: float = DEFAULT_BAND,
    temporal: float = 0.5,
    work_size: int = DEFAULT_WORK_SIZE,
    threshold: float = 0.5,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Soft mattes from coarse masks and the image, frame by frame, without any model weights.

    frames: (T, H, W, 3) in [0, 1] (tensor, array or lazy sequence of (H, W, 3) frames; frame
        i is read when frame i is refined, so a lazy reader keeps memory flat).
    masks: (T, H, W) coarse masks (1 = subject), or a single mask for every frame;
        binarised at ``threshold``; resized to the frames if their size differs.
    band: half-width of the uncertain band around the mask edge, as a fraction of the long
        side (0.0125: 24 px at 1920, 8 at 640; at least 8 px). Make it about as large as the
        mask's edge error; strands farther out than the band are not recovered.
    temporal: 0..1, how strongly the matte of static image regions is held steady over time
        (0 = each frame on its own); uses at most TEMPORAL_CONTEXT previous frames.
    work_size: long side at which the band is solved; the result is applied at full size.
    device: where to compute (default: CPU, or the frames' device if they are a tensor).
    progress(done, total) after each frame; should_cancel() before each frame (-> Cancelled).
    start, stop: refine only frames start .. stop - 1 (default: all). The TEMPORAL_CONTEXT
        frames before ``start`` (none with temporal 0) are read and solved (not returned), and
        the masks just outside them and of frame ``stop`` are read, so the frames equal those
        of a pass over the whole clip: a long shot can be split across workers this way.

    Inputs are checked when this is called; the frames are refined as the iterator is consumed.
    Yields (frame index, alpha (H, W) float32 on the CPU, values in [0, 1]).
    """
    total = frame_count(frames, "frames")
    n_masks = frame_count(masks, "masks", item_ndim=2)
    if n_masks not in (1, total):
        raise InputError(
            f"masks has {n_masks} masks for {total} frames; give one mask per frame or a single mask for every frame."
        )
    if not 0.0 <= temporal <= 1.0:
        raise InputError(f"temporal={temporal} must lie between 0 (off) and 1.")
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold={threshold} must lie strictly between 0 and 1 (0.5 is the default).")
    stop = total if stop is None else int(stop)
    if not 0 <= start < stop <= total:
        raise InputError(f"start={start}, stop={stop} must satisfy 0 <= start < stop <= {total} (the frame count).")
    first = frame_at(frames, 0)
    h, w = first.shape[:2]
    band_px = band_pixels(h, w, band)
    _checked_work_hw(h, w, int(work_size))
    if 4 * band_px > min(h, w):
        log.warning(
            "the uncertain band (%d px each side) is more than a quarter of the frame's short side (%d px): "
            "thin parts are kept from their centre lines, but edges may be solved poorly; pass a smaller band.",
            band_px, min(h, w),
        )
    dev = _device(device, frames)
    log.debug("iter_refine: frames %d..%d of %d, %dx%d, band %d px, device %s", start, stop, total, w, h, band_px, dev)
    return _refine_frames(frames, masks, n_masks, first, (h, w), band_px, int(work_size), temporal, threshold,
                          dev, progress, should_cancel, start, stop)


def _non_finite(i: int, near: list[int] | None = None) -> str:
    """The message for NaN/inf input at frame i (or, checked on a GPU, the masks ``near`` it)."""
    where = f"frame or mask {i}" + (f" (or the mask of frame {' or '.join(map(str, near))})" if near else "")
    return f"{where} contains NaN/inf values; fix the node or file that produced it."


class _MaskReader:
    """Masks of a clip read once each, checked, and binarised at the frame size on the device.

    The refiner needs the masks of frames i - 1 and i + 1 next to frame i's (where the mask
    moves, see ``frame_stage.moving_band``); older ones are dropped, so memory stays flat. A
    mask on the CPU with NaN/inf values is refused when it is read, before any frame that
    would use it is handed out; for one on a GPU, :meth:`finite` gives a device flag instead
    (checked on the frame's one device -> host copy, no extra sync)."""

    def __init__(self, masks: Any, n_masks: int, hw: tuple[int, int], work: tuple[int, int], threshold: float,
                 dev: torch.device) -> None:
        self.masks, self.n_masks, self.hw, self.threshold, self.dev = masks, n_masks, hw, threshold, dev
        self.work = work
        self.cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.at_work: dict[int, torch.Tensor] = {}

    def binary(self, i: int) -> torch.Tensor:
        """(1, 1, H, W) {0, 1} float mask of frame i."""
        return self._get(i)[0]

    def working(self, i: int) -> torch.Tensor:
        """Mask i at the working size, as ``frame_stage.solve_working`` makes it (kept: it is a
        neighbour of two frames)."""
        if i not in self.at_work:
            self.at_work[i] = frame_stage.working_mask(self.binary(i), self.work)
        return self.at_work[i]

    def finite(self, i: int) -> torch.Tensor | None:
        """None for a mask checked on the host; else a device bool, True where mask i is finite."""
        return self._get(i)[1]

    def drop_before(self, i: int) -> None:
        for cache in (self.cache, self.at_work):
            for j in [j for j in cache if j < i]:
                del cache[j]

    def _get(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if i not in self.cache:
            m = _matte(self.masks, 0 if self.n_masks == 1 else i, "masks")
            flag = None
            if m.device.type == "cpu":
                if not torch.isfinite(m).all():
                    raise InputError(_non_finite(i))
            else:
                flag = torch.isfinite(m).all().to(self.dev)
            h, w = self.hw
            mk = (_fit_mask(to_device(m, self.dev).float(), h, w)[None, None] >= self.threshold).float()
            self.cache[i] = (mk, flag)
        return self.cache[i]


def _refine_frames(frames, masks, n_masks, first, hw, band_px, work_size, temporal, threshold, dev,
                   progress, should_cancel, start, stop) -> Iterator[tuple[int, torch.Tensor]]:
    h, w = hw
    total = frame_count(frames, "frames")
    window = TemporalWindow(temporal)
    reader = _MaskReader(masks, n_masks, hw, frame_stage.work_hw(h, w, work_size), threshold, dev)
    # One mask for every frame (given once, or a broadcasting MaskSequence): nothing moves.
    still = n_masks == 1 or bool(getattr(masks, "broadcast", False))
    warned = False
    warm = max(0, start - window.past.maxlen) if temporal > 0 else start
    for i in range(warm, stop):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"refinement cancelled at frame {i} of {stop - start}.")
        f = first if i == 0 else frame_at(frames, i)
        if f.shape[:2] != (h, w):
            raise InputError(
                f"frames[{i}] is {f.shape[1]}x{f.shape[0]} but frames[0] is {w}x{h}; every frame must have the same size."
            )
        # The neighbours' masks (clip-wide, not the segment's: a segment equals the full pass).
        near = [] if still else [j for j in (i - 1, i + 1) if 0 <= j < total]
        mask = reader.binary(i)  # read in frame order: i before i + 1
        neighbours = [reader.working(j) for j in near]
        if f.device.type == "cpu" and not torch.isfinite(f).all():
            raise InputError(_non_finite(i))
        # Inputs on a GPU: their check rides on the frame's one device -> host copy below.
        flags = [x for x in [reader.finite(j) for j in (i, *near)] if x is not None]
        if f.device.type != "cpu":
            flags.append(torch.isfinite(f).all().to(dev))
        finite = torch.stack(flags).all() if flags else None
        img = to_device(f, dev).permute(2, 0, 1)[None].float().clamp(0, 1)
        work = frame_stage.solve_working(img, mask, band_px, work_size, neighbours)
        reader.drop_before(i)
        alpha = window(work.image, work.alpha)
        # The current frame's sure regions stay exactly sure: nothing is kept where the mask says no.
        alpha = torch.where(work.fg > 0, torch.ones_like(alpha), torch.where(work.bg > 0, torch.zeros_like(alpha), alpha))
        if i < start:
            if finite is not None and not bool(finite):
                raise InputError(_non_finite(i, near))
            continue
        out = frame_stage.to_full_size(img, work, alpha)[0, 0].float()
        # One device -> host copy (one sync) per frame: the alpha, the thin-share figure, the input check.
        extras = [work.thin[:1].float()] + ([finite.float()[None]] if finite is not None else [])
        host = torch.cat([out.reshape(-1), *extras]).cpu()
        if finite is not None and float(host[-1]) < 0.5:
            raise InputError(_non_finite(i, near))
        thin_share = float(host[out.numel()])
        if thin_share > THIN_WARN_SHARE and not warned:
            warned = True
            log.warning(
                "frame %d: much of the mask (or of the gaps in it) is thinner than the uncertain band (%d px at "
                "the working size, %d px in the frame; %.0f%% of a side's sure pixels come from centre lines of thin "
                "parts). If thin parts come out wrong, lower band or raise work_size.",
                i, work.band_px, band_px, 100 * thin_share,
            )
        yield i, host[: out.numel()].view(out.shape)
        if progress is not None:
            progress(i + 1 - start, stop - start)


def refine_clip(
    frames: Any,
    masks: Any,
    *,
    band: float = DEFAULT_BAND,
    temporal: float = 0.5,
    work_size: int = DEFAULT_WORK_SIZE,
    threshold: float = 0.5,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    start: int = 0,
    stop: int | None = None,
) -> torch.Tensor:
    """:func:`iter_refine` collected into one tensor: (stop - start, H, W) float32 on the CPU.

    Same arguments as :func:`iter_refine`. Memory: the output plus one frame's working set.
    """
    it = iter_refine(frames, masks, band=band, temporal=temporal, work_size=work_size, threshold=threshold,
                     device=device, progress=progress, should_cancel=should_cancel, start=start, stop=stop)
    stop = frame_count(frames, "frames") if stop is None else stop
    h, w = frame_at(frames, 0).shape[:2]
    out = torch.empty(stop - start, h, w, dtype=torch.float32)
    for i, alpha in it:
        out[i - start] = alpha
    return out


# ----------------------------------------------------------------------------------------------
# detail pass for an upsampled alpha
# ----------------------------------------------------------------------------------------------
def detail_refine(
    frames: Any,
    alpha: Any,
    *,
    resolution: int = DEFAULT_WORK_SIZE,
    radius: int = DETAIL_RADIUS,
    eps: float = 1e-5,
    temporal: float = 0.0,
    chunk: int | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> torch.Tensor:
    """Full-resolution detail for an alpha that was computed at a lower resolution and upsampled.

    frames: (T, H, W, 3) full-resolution frames; alpha: (T, H, W) the low-resolution matte
    already scaled to (H, W) (e.g. the output of ``video.matte_clip``).
    resolution: the long side the alpha was computed at (``MatteOptions.resolution``); at or
        above the frame's long side the alpha is returned unchanged.
    radius, eps: guided-filter window (px at that resolution) and regularisation.
    temporal: 0..1 steadiness of static regions, as in :func:`refine_clip`; off by default
        because a video model's alpha is already steady and the blend costs accuracy on motion.

    Method (detail transfer with guided-filter slopes): at the low resolution, alpha is fitted
    as a local linear function of the colour, alpha ~ a . I + b; the colour detail the low
    resolution lost, I - up(down(I)), is turned into alpha detail with the slopes a and added
    to the upsampled alpha. Where F and B are locally constant this is exact
    (I - up(down(I)) = (F - B)(alpha - up(down(alpha))) and a = 1/(F - B)). Only the soft
    part of the matte (0 < alpha < 1, grown by the filter window) changes.

    Returns (T, H, W) float32 on the CPU.
    """
    total = frame_count(frames, "frames")
    n_alpha = frame_count(alpha, "alpha", item_ndim=2)
    if n_alpha != total:
        raise InputError(f"alpha has {n_alpha} frames but frames has {total}; give one matte per frame.")
    if radius < 1 or eps <= 0:
        raise InputError(f"radius={radius} must be >= 1 and eps={eps} > 0.")
    if not 0.0 <= temporal <= 1.0:
        raise InputError(f"temporal={temporal} must lie between 0 (off) and 1.")
    first = frame_at(frames, 0)
    h, w = first.shape[:2]
    if chunk is None:
        chunk = _auto_chunk(h, w)
    dev = _device(device, frames)
    wh, ww = _checked_work_hw(h, w, int(resolution))
    scale = max(h, w) / max(wh, ww)
    out = torch.empty(total, h, w, dtype=torch.float32)
    window = TemporalWindow(temporal)
    for start in range(0, total, chunk):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"detail refinement cancelled at frame {start} of {total}.")
        stop = min(total, start + chunk)
        img = torch.stack([frame_at(frames, i) for i in range(start, stop)]).to(dev).permute(0, 3, 1, 2).clamp(0, 1)
        al = torch.stack([_matte(alpha, i, "alpha") for i in range(start, stop)]).to(dev)[:, None].clamp(0, 1)
        if tuple(al.shape[-2:]) != (h, w):
            raise InputError(
                f"alpha is {al.shape[-1]}x{al.shape[-2]} but frames are {w}x{h}; scale the matte to the frames first."
            )
        if scale <= 1.0:
            out[start:stop] = al[:, 0].float().cpu()
        else:
            img_w = resize_area(img, (wh, ww))
            al_w = resize_area(al, (wh, ww))
            a, _ = guided_coefficients(img_w, al_w, radius, eps)
            # The given full-size alpha stands for up(alpha_small) (see _upsample_with_detail).
            q = (al + (resize_area(a, (h, w)) * (img - resize_area(img_w, (h, w)))).sum(1, keepdim=True)).clamp_(0.0, 1.0)
            soft = ((al_w > 0.01) & (al_w < 0.99)).float()
            region = resize_area(dilate(soft, radius + 1), (h, w)) > 0.0
            q = torch.where(region, q, al)
            for j in range(q.shape[0]):
                out[start + j] = window(img_w[j : j + 1], q[j : j + 1])[0, 0].float().cpu()
        if progress is not None:
            progress(stop, total)
    return out
