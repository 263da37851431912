"""One frame (or a batch of frames) of the weight-free refiner: band, colour samples, solve, detail.

Private to :mod:`videomama.imaging.refine`, which handles inputs, streaming and time. Stages:

* :func:`solve_working` at the working size: the sure foreground / background of the binary
  mask (thin parts kept, see :func:`_cores`), a per-pixel alpha estimate from the best pair of
  local foreground / background colour means, weighed against "pure foreground" and "pure
  background" with the windows' colour spread (:func:`_colour_alpha`, :func:`_three_way_alpha`),
  with its confidence,
  made locally linear in the colour by a guided filter; then, where the mask moved since the
  previous frame or moves by the next one (the edge may be motion-blurred), the closed-form
  matting solve (:mod:`.matting_solver`) with the estimate as a soft data term: it fills the
  band pixels colour could not tell with a transition that follows the image, soft where the
  image is (see :func:`moving_band`);
* :func:`to_full_size`: the working-size alpha scaled up with the colour detail the working size
  lost turned into alpha detail (:func:`_upsample_with_detail`), then the sure regions of the
  full-size mask put back exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .filters import box_sum, dilate, erode, guided_apply, guided_coefficients
from .matting_solver import MattingLaplacian, solve_band
from .resize import resize_area

SCALES = (0.5, 1.0, 2.0, 4.0)  # candidate colour windows, in band widths
COARSE_DIVISOR = 1.5  # colour means are computed on cells of (smallest window radius / this) px
CONTRAST_TAU = 0.003  # |F - B|^2 at which the colour estimate and the mask get equal weight
GUIDED_RADIUS = 2  # px at the working size: guided filter of the estimate (its slopes carry the detail)
GUIDED_EPS = 1e-3  # regularisation of the guided filter that smooths the colour estimate
FALLBACK_GAIN = 0.0  # where colour cannot tell: the mask itself (0) or the blurred mask, ramp steepened by this gain
RESID_SIGMA2 = 2e-3  # squared colour residual of the best (F, B) pair at which its confidence falls to 1/e
SOLVER_STEPS = 7  # conjugate-gradient steps of the closed-form solve where the mask moves (0: off)
SOLVE_STILL_EDGES = False  # also solve band pixels whose mask did not move (measured worse on still photographs)
MOTION_REACH = 1.0  # band widths around the mask's change between neighbouring frames that count as moving
SOLVER_RADIUS = 1  # matting-Laplacian window radius (3x3, as Levin et al.)
SOLVER_EPS = 1e-4  # its colour-covariance regularisation
DATA_WEIGHT = 0.1  # weight of the colour estimate against the Laplacian (times its confidence)
MASK_WEIGHT = 0.03  # weight of the mask (the estimate's fallback) where colour cannot tell (times 1 - confidence)
MIXED_PRIOR = 0.3  # prior odds of "a mix of F and B" against "pure F" or "pure B" for a band pixel
SEPARATION_K = 5.0  # separation |F - B|^2 / (var F + var B) at which the confidence in colour halves
AMBIGUITY_POWER = 2.0  # confidence x (1 - 2 min(P(pure F), P(pure B)))^this: both pure sides fit -> the mask
NOISE_VAR = 1e-4  # squared colour noise (summed over RGB) added to the window variances


def _cores(mask: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sure part of a {0, 1} mask (N, 1, h, w) for a band of ``radius`` px, keeping thin parts.

    Pixels whose whole (2r+1)^2 window is in the mask are sure; a part of the mask thinner than
    the band (a pole, a strand, a finger) would have no sure pixel at all and be solved as if
    it were background, so for each scale t = 1, 2, 4, ... < r the core erode(mask, t) of the
    parts that are thin at that scale (not within reach of the next deeper core) is kept too.
    Returns (sure, erode(mask, radius)): the second tells where thin parts were added.
    """
    plain = erode(mask, radius)
    sure = plain
    t, core = 1, erode(mask, 1)
    while t < radius:
        nxt = min(2 * t, radius)
        deeper_core = plain if nxt == radius else erode(mask, nxt)
        sure = torch.maximum(sure, core * (1 - dilate(deeper_core, nxt - t + 1)))
        t, core = nxt, deeper_core
    return sure, plain


def _sure_regions(mask: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sure foreground, sure background, thin share (N,)) of a {0, 1} mask, thin parts of either
    side kept; the share is the larger, over the two sides, part of a side's sure pixels that
    only the thin-part cores made sure."""
    fg, plain_fg = _cores(mask, radius)
    bg, plain_bg = _cores(1 - mask, radius)
    dims = (1, 2, 3)
    share_fg = (fg - plain_fg).sum(dims) / fg.sum(dims).clamp_min(1.0)
    share_bg = (bg - plain_bg).sum(dims) / bg.sum(dims).clamp_min(1.0)
    return fg, bg, torch.maximum(share_fg, share_bg)


def work_hw(h: int, w: int, work_size: int) -> tuple[int, int]:
    """Frame size at the working size (long side ``work_size``; never larger than the frame)."""
    scale = max(h, w) / work_size
    if scale <= 1.0:
        return h, w
    return max(1, round(h / scale)), max(1, round(w / scale))


@dataclass
class Working:
    """A batch of frames at the working size and their solved alpha (all (N, C, h, w))."""

    image: torch.Tensor
    alpha: torch.Tensor
    fg: torch.Tensor  # sure foreground (1) ...
    bg: torch.Tensor  # ... and background (1) of the mask at the working size
    band_px: int  # band half-width at the working size
    thin: torch.Tensor  # (N,) share of a side's sure pixels that come from parts thinner than the band
    slopes: torch.Tensor  # (N, 3, h, w) guided-filter slopes d alpha / d colour, for the detail transfer


def moving_band(mask: torch.Tensor, neighbours: Sequence[torch.Tensor], band: torch.Tensor, bw: int) -> torch.Tensor:
    """Band pixels (N, 1, h, w) within MOTION_REACH band widths of where ``mask`` differs from a
    neighbouring frame's mask (same size): the subject moves there, so its edge may be
    motion-blurred, wider and softer than a still edge, and the solve may make it so."""
    if not neighbours:
        return torch.zeros_like(band)
    changed = torch.stack([(mask - nb).abs() for nb in neighbours]).amax(0)
    return band * dilate(changed, max(1, round(MOTION_REACH * bw)))


def solve_working(
    frames: torch.Tensor, masks: torch.Tensor, band_px: int, work_size: int,
    neighbours: Sequence[torch.Tensor] = (),
) -> Working:
    """frames (N, 3, H, W) in [0, 1], masks (N, 1, H, W) in {0, 1}; band_px at full size.

    neighbours: the masks of the previous and / or next frame, if any, already at the working
    size (:func:`working_mask`, (N, 1, h, w)): where the mask moves the band is also solved
    with the matting Laplacian (motion blur)."""
    h, w = frames.shape[-2:]
    wh, ww = work_hw(h, w, work_size)
    scale = max(h, w) / max(wh, ww)
    img = resize_area(frames, (wh, ww))
    mask = working_mask(masks, (wh, ww))
    bw = max(2, round(band_px / scale))
    fg, bg, thin = _sure_regions(mask, bw)
    band = (1 - fg) * (1 - bg)
    est, conf = _colour_alpha(img, mask, fg, bg, band, bw)
    # The guided filter makes the estimate locally linear in the colour; its slopes d alpha /
    # d colour also carry the detail the working size lost back to full size (to_full_size).
    slopes, offsets = guided_coefficients(img, est, GUIDED_RADIUS, GUIDED_EPS)
    est = torch.where(band > 0, guided_apply(img, slopes, offsets), est)
    alpha = est * band + fg
    if SOLVER_STEPS > 0 and (SOLVE_STILL_EDGES or neighbours):
        unknown = band if SOLVE_STILL_EDGES else moving_band(mask, neighbours, band, bw)
        alpha = _solve_moving(img, alpha, unknown, est, (DATA_WEIGHT * conf + MASK_WEIGHT * (1 - conf)) * unknown)
    return Working(img, alpha.clamp_(0.0, 1.0), fg, bg, bw, thin, slopes)


def _solve_moving(
    img: torch.Tensor, alpha: torch.Tensor, unknown: torch.Tensor, est: torch.Tensor, trust: torch.Tensor
) -> torch.Tensor:
    """``alpha`` with its ``unknown`` pixels solved (:func:`.matting_solver.solve_band`).

    On the CPU the solve runs on the bounding box of the unknowns grown by 2 window radii (the
    farthest (L p)_i reaches from i) plus one, so the result is the full-frame solve's (up to
    float rounding) at a fraction of the cost, and a frame with nothing to solve costs nothing. On a GPU finding the
    box would cost a host sync, and the full-frame solve is cheap there."""
    box = (slice(None), slice(None))
    if unknown.device.type == "cpu":
        rows = unknown.amax(dim=(0, 1, 3)).nonzero()
        cols = unknown.amax(dim=(0, 1, 2)).nonzero()
        if rows.numel() == 0:
            return alpha
        m = 2 * SOLVER_RADIUS + 1
        h, w = unknown.shape[-2:]
        box = (slice(max(0, int(rows[0]) - m), min(h, int(rows[-1]) + 1 + m)),
               slice(max(0, int(cols[0]) - m), min(w, int(cols[-1]) + 1 + m)))
    crop = (Ellipsis, *box)
    lap = MattingLaplacian(img[crop], SOLVER_RADIUS, SOLVER_EPS)
    solved = solve_band(lap, alpha[crop], unknown[crop], est[crop], trust[crop], SOLVER_STEPS)
    alpha = alpha.clone()
    alpha[crop] = solved
    return alpha


def working_mask(masks: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """{0, 1} masks (N, 1, H, W) at the working size (h, w): area-averaged, then thresholded."""
    return (resize_area(masks, hw) >= 0.5).float()


def to_full_size(frames: torch.Tensor, work: Working, alpha: torch.Tensor) -> torch.Tensor:
    """Working-size ``alpha`` (N, 1, h, w) of ``work`` scaled to ``frames`` (N, 3, H, W) with detail."""
    size = frames.shape[-2:]
    q = _upsample_with_detail(frames, work.image, alpha, work.slopes).clamp_(0.0, 1.0)
    if tuple(size) != tuple(alpha.shape[-2:]):
        fg = resize_area(work.fg, size) > 0.5
        bg = resize_area(work.bg, size) > 0.5
        q = torch.where(fg, torch.ones_like(q), torch.where(bg, torch.zeros_like(q), q))
    return q


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha estimate (N, 1, h, w) from the best (F, B) candidate pair in the band (the mask
    elsewhere), and its trust (N, 1, h, w) in [0, 1]: 0 where colour cannot tell."""
    radii = sorted({max(1, round(s * w)) for s in SCALES})
    step = max(1, int(radii[0] // COARSE_DIVISOR))
    alpha = mask.clone()
    n_idx, _, y_idx, x_idx = band.nonzero(as_tuple=True)
    if n_idx.numel() == 0:
        return alpha, torch.zeros_like(mask)
    pix = image[n_idx, :, y_idx, x_idx]  # (K, 3)
    # Means of the colour and of its squared norm: the windows' colour spread comes with them.
    with_sq = torch.cat([image, (image * image).sum(1, keepdim=True)], 1)
    stats, valid = [], []  # per side: (scales, K, 4) window means of with_sq, (scales, K) bool
    for sure in (fg_sure, bg_sure):
        means = _CoarseMeans(with_sq, sure, step)
        grids = [means.at_radius(r) for r in radii]
        stats.append(torch.stack([means.sample(mean, n_idx, y_idx, x_idx) for mean, _ in grids]))
        valid.append(torch.stack([means.sample_all(ok, n_idx, y_idx, x_idx) for _, ok in grids]))
    # The pair that explains the pixel best; only its index is carried through the loop.
    best_cost = torch.full((n_idx.numel(),), float("inf"), device=image.device)
    best_pair = torch.zeros(n_idx.numel(), dtype=torch.long, device=image.device)
    n_scales = len(radii)
    for i in range(n_scales):
        for j in range(n_scales):
            cost = _pair_fit(pix, stats[0][i, :, :3], stats[1][j, :, :3])[1]
            cost = torch.where(valid[0][i] & valid[1][j], cost, torch.full_like(cost, float("inf")))
            take = cost < best_cost
            best_cost = torch.where(take, cost, best_cost)
            best_pair = torch.where(take, torch.full_like(best_pair, i * n_scales + j), best_pair)
    rows = torch.arange(n_idx.numel(), device=image.device)
    best_f = _ColourStats.of(stats[0][best_pair // n_scales, rows])
    best_b = _ColourStats.of(stats[1][best_pair % n_scales, rows])
    best_alpha = _pair_fit(pix, best_f.mean, best_b.mean)[0]
    best_alpha, p_pure_f, p_pure_b = _three_way_alpha(pix, best_alpha, best_f, best_b)
    # Low contrast between F and B: trust the (blurred) mask more than the colour.
    if FALLBACK_GAIN > 0:  # the blurred mask, its ramp steepened by the gain
        mask_means = _CoarseMeans(mask, torch.ones_like(mask), step)
        soft = mask_means.sample(mask_means.at_radius(max(1, w // 2))[0], n_idx, y_idx, x_idx)[:, 0]
        soft = ((soft - 0.5) * FALLBACK_GAIN + 0.5).clamp(0.0, 1.0)
    else:  # the mask itself: where colour cannot tell, a hard guess errs least on average (median)
        soft = mask[n_idx, 0, y_idx, x_idx]
    contrast = ((best_f.mean - best_b.mean) ** 2).sum(1)
    separation = contrast / (best_f.var + best_b.var + NOISE_VAR)
    conf = contrast / (contrast + CONTRAST_TAU) * separation / (separation + SEPARATION_K)
    # A pixel that fits the foreground and the background equally well says nothing.
    conf = conf * (1 - 2 * torch.minimum(p_pure_f, p_pure_b)).clamp_min(0.0) ** AMBIGUITY_POWER
    if RESID_SIGMA2 > 0:
        conf = conf * torch.exp(-torch.nan_to_num(best_cost, posinf=1e3) / RESID_SIGMA2)
    est = conf * best_alpha + (1 - conf) * soft
    defined = torch.isfinite(best_cost)
    est = torch.where(defined, est, soft)  # no candidate pair defined: the mask's
    alpha[n_idx, 0, y_idx, x_idx] = est
    trust = torch.zeros_like(mask)
    trust[n_idx, 0, y_idx, x_idx] = torch.where(defined, conf, torch.zeros_like(conf))
    return alpha, trust


def _pair_fit(pix: torch.Tensor, f: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = (I - B).(F - B) / |F - B|^2 clamped to [0, 1] (K,), and the squared colour
    residual of I - (alpha F + (1 - alpha) B) (K,), for colours I, F, B (K, 3)."""
    d = f - b
    a = (((pix - b) * d).sum(1) / ((d * d).sum(1) + 1e-6)).clamp(0.0, 1.0)
    resid = pix - a[:, None] * f - (1 - a[:, None]) * b
    return a, (resid * resid).sum(1)


@dataclass
class _ColourStats:
    """Mean colour (K, 3) and colour variance (K,), summed over RGB, of K windows."""

    mean: torch.Tensor
    var: torch.Tensor

    @staticmethod
    def of(stats: torch.Tensor) -> _ColourStats:
        """From the window means of (R, G, B, R^2 + G^2 + B^2), (K, 4)."""
        mean = stats[:, :3]
        return _ColourStats(mean, (stats[:, 3] - (mean * mean).sum(1)).clamp_min(0.0))


def _log_gauss(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Log-density (up to a constant) of colours x (K, 3) under isotropic Gaussians with total variance var (K,)."""
    return -1.5 * torch.log(var) - 1.5 * ((x - mean) ** 2).sum(1) / var


def _three_way_alpha(
    pix: torch.Tensor, a: torch.Tensor, f: _ColourStats, b: _ColourStats
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior mean of alpha over "pure foreground" (1), "pure background" (0) and "mix" (a).

    Each hypothesis is a Gaussian in colour with the windows' own spread: F, B, or the blend
    a F + (1 - a) B with variance a^2 var F + (1 - a)^2 var B. On textured subjects and
    backgrounds a pixel's projection onto the line between the two *means* is a fraction even
    when the pixel is simply one of the background's colours; the spread tells the two apart.
    The mix gets prior odds MIXED_PRIOR (few band pixels are truly mixed on solid objects; a
    hair pixel that neither side explains stays mixed). Returns (alpha, P(pure F), P(pure B)).
    """
    vf, vb = f.var + NOISE_VAR, b.var + NOISE_VAR
    log_f = _log_gauss(pix, f.mean, vf)
    log_b = _log_gauss(pix, b.mean, vb)
    blend = a[:, None] * f.mean + (1 - a[:, None]) * b.mean
    log_m = _log_gauss(pix, blend, a * a * vf + (1 - a) ** 2 * vb + NOISE_VAR) + math.log(MIXED_PRIOR)
    p = torch.softmax(torch.stack([log_f, log_b, log_m], 1), 1)
    return p[:, 0] + p[:, 2] * a, p[:, 0], p[:, 1]


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
    detail = (resize_area(a, size) * (frames - resize_area(small, size))).sum(1, keepdim=True)
    return resize_area(alpha_small, size) + detail


