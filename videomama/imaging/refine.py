"""Weight-free, edge-aware matte refinement (no model, no download).

:func:`refine_clip` turns a coarse binary mask and the frames into a soft matte:

1. **Uncertain band.** Pixels farther than ``w`` px inside the mask are foreground, farther
   than ``w`` px outside it are background; the band between them is solved from the image.
   ``w`` is a fraction of the long side (``band``), at least 4 px.
2. **Colour samples.** For every band pixel, candidate foreground colours are local means of
   the sure-foreground pixels at four scales (w/2, w, 2w, 4w), and likewise for the
   background. Each (F, B) pair gives alpha = (I - B).(F - B) / |F - B|^2 (clamped), and the
   pair whose line F-B passes closest to the pixel colour wins (the sampling idea of
   Bayesian/robust matting, with box-filter means instead of sparse samples). Where F and B
   are nearly the same colour alpha is uninformative and the blurred mask is used instead.
3. **Guided filter.** The per-pixel estimate is smoothed with a colour guided filter
   (He, Sun and Tang), which makes alpha locally a linear function of the colour: edges
   follow the image, noise averages out, thin strands keep their shape.
4. **Temporal steadiness.** Each frame's alpha is blended with the previous output where the
   image did not change (a per-pixel weight from the blurred frame difference), so static
   regions do not flicker while moving edges follow the motion.
5. **Resolution.** Steps 1-3 run at a working size (long side ``work_size``, default 768);
   the alpha is scaled up to the frame and the colour detail the working size lost is turned
   into alpha detail with the guided filter's local slopes d alpha / d colour (see
   :func:`_upsample_with_detail`), which puts full-resolution edges and strands into the matte.
   Step 4 then runs at full size.

:func:`detail_refine` is step 5 on its own, for an alpha that was made at a lower resolution and
scaled up (e.g. VideoMaMa's output at its processing size).

Everything is torch, batched over frames, on any device; clips are processed in chunks of
frames so memory does not grow with the clip length. Output alpha is float32 on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..inputs import as_tensor
from .filters import box_blur, box_sum, dilate, guided_apply, guided_coefficients, resize

log = logging.getLogger(__name__)

# Integer dtypes holding 16-bit image values (torch.uint16 only exists in torch >= 2.3).

__all__ = ["refine_clip", "detail_refine", "band_pixels", "DEFAULT_BAND", "MIN_BAND_PX"]

DEFAULT_BAND = 0.0125  # half-width of the uncertain band as a fraction of the long side
MIN_BAND_PX = 4
DEFAULT_WORK_SIZE = 768
SCALES = (0.5, 1.0, 2.0, 4.0)  # candidate colour windows, in band widths
GUIDED_RADIUS = 2  # px at the working size
GUIDED_EPS = 1e-3
CONTRAST_TAU = 0.01  # |F - B|^2 at which the colour estimate and the mask get equal weight
TEMPORAL_RADIUS = 3  # px (working size) over which the frame difference is averaged
TEMPORAL_SIGMA2 = 5e-4  # squared (blurred) frame difference at which smoothing falls to 1/e

Progress = Callable[[int, int], None]
ShouldCancel = Callable[[], bool]


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------


def _length(x: Any, name: str) -> int:
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim < 3:
        raise InputError(f"{name} has shape {tuple(x.shape)}; give a clip with a leading frame axis.")
    try:
        n = len(x)
    except TypeError as exc:
        raise InputError(f"{name} is a {type(x).__name__}; give a (T, ...) tensor/array or a sequence of frames.") from exc
    if n == 0:
        raise InputError(f"{name} is empty: the clip has no frames.")
    return n


def _frame(frames: Any, i: int, name: str = "frames") -> torch.Tensor:
    f = as_tensor(frames[i], f"{name}[{i}]")
    if f.ndim != 3 or f.shape[-1] != 3:
        raise InputError(f"{name}[{i}] has shape {tuple(f.shape)}; expected (height, width, 3) RGB in [0, 1].")
    return f


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
    """Frames per chunk: about 6 megapixels of frames at a time (1080p: 2 frames, 4K: 1)."""
    return int(max(1, min(16, 6_000_000 // max(1, h * w))))


def band_pixels(height: int, width: int, band: float = DEFAULT_BAND) -> int:
    """Half-width in px of the uncertain band for a frame size: ``band`` * long side, at least 4 px."""
    if not 0.0 < band < 0.5:
        raise InputError(f"band={band} must be a fraction of the long side between 0 and 0.5 (e.g. {DEFAULT_BAND}).")
    return max(MIN_BAND_PX, round(band * max(height, width)))


def _work_hw(h: int, w: int, work_size: int) -> tuple[int, int]:
    if work_size < 64:
        raise InputError(f"work_size={work_size} must be at least 64 px.")
    scale = max(h, w) / work_size
    if scale <= 1.0:
        return h, w
    return max(1, round(h / scale)), max(1, round(w / scale))


# ----------------------------------------------------------------------------------------------
# temporal smoothing
# ----------------------------------------------------------------------------------------------
@dataclass
class _TemporalState:
    """Previous frame's working-size image and its (smoothed) output alpha, carried across chunks."""

    image: torch.Tensor | None = None  # (1, 3, h, w) working size
    alpha: torch.Tensor | None = None  # (1, 1, H, W) full size


def _smooth_in_time(image: torch.Tensor, alpha: torch.Tensor, state: _TemporalState, strength: float) -> torch.Tensor:
    """Blend each frame's alpha (N, 1, H, W) with the previous output where the image is unchanged.

    image: (N, 3, h, w) at the working size. The weight is ``strength`` where the blurred
    frame difference is zero and falls off as exp(-|blurred diff|^2 / sigma^2), so moving
    edges follow the image while static regions (and sensor noise) do not flicker.
    """
    if strength <= 0.0:
        return alpha
    out = alpha.clone()
    for i in range(image.shape[0]):
        if state.image is not None and state.alpha is not None and state.image.shape == image[i : i + 1].shape:
            # Blur the signed difference first: sensor noise averages out, real changes stay.
            diff = (box_blur(image[i : i + 1] - state.image, TEMPORAL_RADIUS) ** 2).sum(1, keepdim=True)
            k = resize(strength * torch.exp(-diff / TEMPORAL_SIGMA2), alpha.shape[-2:])
            out[i : i + 1] = (1 - k) * alpha[i : i + 1] + k * state.alpha
        state.image, state.alpha = image[i : i + 1], out[i : i + 1]
    return out


# ----------------------------------------------------------------------------------------------
# the band solve
# ----------------------------------------------------------------------------------------------
def _split_mask(mask: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sure foreground, sure background) of a {0, 1} mask (N, 1, h, w): pixels whose whole
    (2r+1)^2 window is inside / outside the mask (one box sum for both)."""
    count = box_sum(mask, radius)
    full = box_sum(torch.ones_like(mask[:1]), radius)
    return (count > full - 0.5).float(), (count < 0.5).float()


class _CoarseMeans:
    """Window means of some channels over a weight map, on a grid ``step`` times coarser.

    Pixels are grouped into step x step cells (zero-padded at the right/bottom, which adds
    no weight); box sums over the cells give, for each radius, the weighted mean of the
    channels around each cell. :meth:`sample` interpolates them bilinearly at given pixels.
    """

    def __init__(self, values: torch.Tensor, weight: torch.Tensor, step: int) -> None:
        self.step = step
        h, w = values.shape[-2:]
        ph, pw = (-h) % step, (-w) % step
        stacked = torch.cat([values * weight, weight], 1)
        if ph or pw:
            stacked = torch.nn.functional.pad(stacked, (0, pw, 0, ph))
        self.cells = torch.nn.functional.avg_pool2d(stacked, step) if step > 1 else stacked

    def at_radius(self, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means (N, C, ch, cw), defined (N, 1, ch, cw) bool) for a window radius in px."""
        sums = box_sum(self.cells, max(1, round(radius / self.step)))
        count = sums[:, -1:]
        return sums[:, :-1] / count.clamp_min(1e-6), count > 1e-6

    def sample(self, grid: torch.Tensor, n: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bilinear samples (K, C) of a coarse map (N, C, ch, cw) at pixel centres (n, y, x)."""
        ch, cw = grid.shape[-2:]
        u = ((y.float() + 0.5) / self.step - 0.5).clamp(0, ch - 1)
        v = ((x.float() + 0.5) / self.step - 0.5).clamp(0, cw - 1)
        u0, v0 = u.floor().long(), v.floor().long()
        u1, v1 = (u0 + 1).clamp(max=ch - 1), (v0 + 1).clamp(max=cw - 1)
        fu, fv = (u - u0)[:, None], (v - v0)[:, None]
        g = grid.permute(0, 2, 3, 1)  # (N, ch, cw, C) view
        top = g[n, u0, v0].float() * (1 - fv) + g[n, u0, v1].float() * fv
        bottom = g[n, u1, v0].float() * (1 - fv) + g[n, u1, v1].float() * fv
        return top * (1 - fu) + bottom * fu

    def sample_all(self, grid: torch.Tensor, n: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """True where all four cells around each pixel are true (grid bool (N, 1, ch, cw)) -> (K,)."""
        return self.sample(grid.float(), n, y, x)[:, 0] > 0.999


def _colour_alpha(
    image: torch.Tensor, mask: torch.Tensor, fg_sure: torch.Tensor, bg_sure: torch.Tensor, band: torch.Tensor, w: int
) -> torch.Tensor:
    """Alpha estimate (N, 1, h, w) from the best (F, B) candidate pair in the band; the mask elsewhere."""
    radii = sorted({max(1, round(s * w)) for s in SCALES})
    step = max(1, radii[0] // 3)
    alpha = mask.clone()
    n_idx, _, y_idx, x_idx = band.nonzero(as_tuple=True)
    if n_idx.numel() == 0:
        return alpha
    pix = image[n_idx, :, y_idx, x_idx]  # (K, 3)
    fg_means = _CoarseMeans(image, fg_sure, step)
    bg_means = _CoarseMeans(image, bg_sure, step)
    candidates = []
    for means in (fg_means, bg_means):
        side = []
        for r in radii:
            mean, defined = means.at_radius(r)
            side.append((means.sample(mean, n_idx, y_idx, x_idx), means.sample_all(defined, n_idx, y_idx, x_idx)))
        candidates.append(side)
    best_cost = torch.full((n_idx.numel(),), float("inf"), device=image.device)
    best_alpha = torch.zeros_like(best_cost)
    best_contrast = torch.zeros_like(best_cost)
    for f, fv in candidates[0]:
        for b, bv in candidates[1]:
            d = f - b
            n2 = (d * d).sum(1)
            a = (((pix - b) * d).sum(1) / (n2 + 1e-6)).clamp(0.0, 1.0)
            resid = pix - a[:, None] * f - (1 - a[:, None]) * b
            cost = torch.where(fv & bv, (resid * resid).sum(1), torch.full_like(n2, float("inf")))
            take = cost < best_cost
            best_cost = torch.where(take, cost, best_cost)
            best_alpha = torch.where(take, a, best_alpha)
            best_contrast = torch.where(take, n2, best_contrast)
    # Low contrast between F and B: trust the (blurred) mask more than the colour.
    mask_means = _CoarseMeans(mask, torch.ones_like(mask), step)
    soft = mask_means.sample(mask_means.at_radius(max(1, w // 2))[0], n_idx, y_idx, x_idx)[:, 0]
    conf = best_contrast / (best_contrast + CONTRAST_TAU)
    est = conf * best_alpha + (1 - conf) * soft
    est = torch.where(torch.isfinite(best_cost), est, soft)  # no candidate pair defined: the mask's
    alpha[n_idx, 0, y_idx, x_idx] = est
    return alpha


def _upsample_with_detail(
    frames: torch.Tensor, small: torch.Tensor, alpha_small: torch.Tensor, a: torch.Tensor
) -> torch.Tensor:
    """Scale a working-size alpha up to the frames and add the image detail lost at that size.

    frames (N, 3, H, W); small: the frames at the working size (N, 3, h, w); alpha_small
    (N, 1, h, w); a: guided-filter slopes d alpha / d colour at the working size (N, 3, h, w).
    alpha = up(alpha_small) + up(a) . (frames - up(small)): where the subject's and the
    background's colours are locally constant, frames - up(small) = (F - B)(alpha - up(alpha_small)),
    so the slope 1/(F - B) turns the lost colour detail back into the lost alpha detail.
    """
    size = frames.shape[-2:]
    if tuple(alpha_small.shape[-2:]) == tuple(size):
        return alpha_small
    detail = (resize(a, size) * (frames - resize(small, size))).sum(1, keepdim=True)
    return resize(alpha_small, size) + detail


def _refine_chunk(
    frames: torch.Tensor,
    masks: torch.Tensor,
    band_px: int,
    work_size: int,
    temporal: float,
    state: _TemporalState,
) -> torch.Tensor:
    """frames (N, 3, H, W), masks (N, 1, H, W) binary -> alpha (N, 1, H, W)."""
    h, w = frames.shape[-2:]
    wh, ww = _work_hw(h, w, work_size)
    scale = max(h, w) / max(wh, ww)
    img_w = resize(frames, (wh, ww))
    m_w = (resize(masks, (wh, ww)) >= 0.5).float()
    bw = max(2, round(band_px / scale))
    fg_sure, bg_sure = _split_mask(m_w, bw)
    band_w = (1 - fg_sure) * (1 - bg_sure)
    est = _colour_alpha(img_w, m_w, fg_sure, bg_sure, band_w, bw)
    a, b = guided_coefficients(img_w, est, GUIDED_RADIUS, GUIDED_EPS)
    q_w = guided_apply(img_w, a, b)
    q = _upsample_with_detail(frames, img_w, q_w, a).clamp_(0.0, 1.0)
    fg_full, bg_full = _split_mask(masks, band_px)
    q = torch.where(fg_full > 0, torch.ones_like(q), torch.where(bg_full > 0, torch.zeros_like(q), q))
    return _smooth_in_time(img_w, q, state, temporal)


def refine_clip(
    frames: Any,
    masks: Any,
    *,
    band: float = DEFAULT_BAND,
    temporal: float = 0.5,
    work_size: int = DEFAULT_WORK_SIZE,
    threshold: float = 0.5,
    chunk: int | None = None,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> torch.Tensor:
    """Soft matte from a coarse mask and the image, without any model weights.

    frames: (T, H, W, 3) in [0, 1] (tensor, array or lazy sequence of (H, W, 3) frames).
    masks: (T, H, W) coarse masks (1 = subject), or a single mask for every frame;
        binarised at ``threshold``; resized to the frames if their size differs.
    band: half-width of the uncertain band around the mask edge, as a fraction of the long
        side (0.0125: 24 px at 1920, 8 at 640; at least 4 px). Make it about as large as
        the mask's edge error; strands farther out than the band are not recovered.
    temporal: 0..1, how strongly the matte of static image regions is held steady over
        time (0 = each frame on its own).
    work_size: long side at which the band is solved; the result is applied at full size.
    chunk: frames per step (memory bound; default about 6 megapixels of frames).
    device: where to compute (default: CPU, or the frames' device if they are a tensor).
    progress(done, total) after each chunk; should_cancel() before each chunk (-> Cancelled).

    Returns (T, H, W) float32 on the CPU, values in [0, 1].
    """
    total = _length(frames, "frames")
    n_masks = _length(masks, "masks")
    if n_masks not in (1, total):
        raise InputError(
            f"masks has {n_masks} masks for {total} frames; give one mask per frame or a single mask for every frame."
        )
    if not 0.0 <= temporal <= 1.0:
        raise InputError(f"temporal={temporal} must lie between 0 (off) and 1.")
    if not 0.0 < threshold < 1.0:
        raise InputError(f"threshold={threshold} must lie strictly between 0 and 1 (0.5 is the default).")
    first = _frame(frames, 0)
    h, w = first.shape[:2]
    band_px = band_pixels(h, w, band)
    work_size = int(work_size)
    _work_hw(h, w, work_size)  # validates work_size
    if chunk is None:
        chunk = _auto_chunk(h, w)
    if chunk < 1:
        raise InputError(f"chunk={chunk} must be at least 1 frame.")
    dev = _device(device, frames)
    out = torch.empty(total, h, w, dtype=torch.float32)
    state = _TemporalState()
    log.debug("refine_clip: %d frames %dx%d, band %d px, chunk %d, device %s", total, w, h, band_px, chunk, dev)
    for start in range(0, total, chunk):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"refinement cancelled at frame {start} of {total}.")
        stop = min(total, start + chunk)
        imgs, ms = [], []
        for i in range(start, stop):
            f = first if i == 0 else _frame(frames, i)
            if f.shape[:2] != (h, w):
                raise InputError(
                    f"frames[{i}] is {f.shape[1]}x{f.shape[0]} but frames[0] is {w}x{h}; every frame must have the same size."
                )
            m = _matte(masks, 0 if n_masks == 1 else i, "masks")
            if not torch.isfinite(m).all() or not torch.isfinite(f).all():
                raise InputError(f"frame or mask {i} contains NaN/inf values; fix the node or file that produced it.")
            imgs.append(f)
            ms.append(m)
        img = torch.stack(imgs).to(dev).permute(0, 3, 1, 2).clamp(0, 1)
        mk = torch.stack([_fit_mask(m, h, w) for m in ms]).to(dev)[:, None]
        mk = (mk >= threshold).float()
        alpha = _refine_chunk(img, mk, band_px, work_size, temporal, state)
        out[start:stop] = alpha[:, 0].float().cpu()
        if progress is not None:
            progress(stop, total)
    return out


def _fit_mask(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if tuple(m.shape) == (h, w):
        return m
    return resize(m[None, None].float(), (h, w))[0, 0]


# ----------------------------------------------------------------------------------------------
# detail pass for an upsampled alpha
# ----------------------------------------------------------------------------------------------
def detail_refine(
    frames: Any,
    alpha: Any,
    *,
    resolution: int = DEFAULT_WORK_SIZE,
    radius: int = GUIDED_RADIUS,
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
    total = _length(frames, "frames")
    n_alpha = _length(alpha, "alpha")
    if n_alpha != total:
        raise InputError(f"alpha has {n_alpha} frames but frames has {total}; give one matte per frame.")
    if radius < 1 or eps <= 0:
        raise InputError(f"radius={radius} must be >= 1 and eps={eps} > 0.")
    if not 0.0 <= temporal <= 1.0:
        raise InputError(f"temporal={temporal} must lie between 0 (off) and 1.")
    first = _frame(frames, 0)
    h, w = first.shape[:2]
    if chunk is None:
        chunk = _auto_chunk(h, w)
    dev = _device(device, frames)
    wh, ww = _work_hw(h, w, int(resolution))
    scale = max(h, w) / max(wh, ww)
    out = torch.empty(total, h, w, dtype=torch.float32)
    state = _TemporalState()
    for start in range(0, total, chunk):
        if should_cancel is not None and should_cancel():
            raise Cancelled(f"detail refinement cancelled at frame {start} of {total}.")
        stop = min(total, start + chunk)
        img = torch.stack([_frame(frames, i) for i in range(start, stop)]).to(dev).permute(0, 3, 1, 2).clamp(0, 1)
        al = torch.stack([_matte(alpha, i, "alpha") for i in range(start, stop)]).to(dev)[:, None].clamp(0, 1)
        if tuple(al.shape[-2:]) != (h, w):
            raise InputError(
                f"alpha is {al.shape[-1]}x{al.shape[-2]} but frames are {w}x{h}; scale the matte to the frames first."
            )
        if scale <= 1.0:
            out[start:stop] = al[:, 0].float().cpu()
        else:
            img_w = resize(img, (wh, ww))
            al_w = resize(al, (wh, ww))
            a, _ = guided_coefficients(img_w, al_w, radius, eps)
            # The given full-size alpha stands for up(alpha_small) (see _upsample_with_detail).
            q = (al + (resize(a, (h, w)) * (img - resize(img_w, (h, w)))).sum(1, keepdim=True)).clamp_(0.0, 1.0)
            soft = ((al_w > 0.01) & (al_w < 0.99)).float()
            region = resize(dilate(soft, radius + 1), (h, w)) > 0.0
            q = _smooth_in_time(img_w, torch.where(region, q, al), state, temporal)
            out[start:stop] = q[:, 0].float().cpu()
        if progress is not None:
            progress(stop, total)
    return out
