"""Matting metrics in the conventions video-matting papers report (see docs/metrics.md).

All metrics take alpha mattes in [0, 1]: ``pred`` (the estimate) and ``gt`` (the truth), each
(H, W) for one frame or (T, H, W) for a clip, as numpy arrays or torch tensors, and an
optional ``region`` of the same shape (or one (H, W) region for every frame): nonzero = count
the pixel. Matting benchmarks use the trimap's unknown region; :func:`unknown_region` makes
it from a trimap.

Per frame:

* MAD  = 1e3 * mean |pred - gt|
* MSE  = 1e3 * mean (pred - gt)^2
* Grad = sum (|grad pred| - |grad gt|)^2 / 1e3, gradients from first-order Gaussian-derivative
  filters, sigma 1.4, kernels normalised to unit L2 norm, replicated borders. The gradients are
  always computed on the whole frame; ``region`` only selects the pixels that are summed.
* Conn = sum |phi(pred) - phi(gt)| / 1e3 (Rhemann et al. 2009): for thresholds 0.1, 0.2, ... 1.0,
  the largest 4-connected component of the pixels at or above the threshold in BOTH mattes;
  each pixel's level l is the last threshold before the one at which it leaves that component
  (1 if it never does), d = alpha - l and phi = 1 - d * [d >= 0.15]. Components are found on
  the whole frame; ``region`` only selects the pixels that are summed. ("At or above" follows
  the reference evaluation code of the image-matting benchmarks.)
* dtSSD = 1e2 * sqrt(mean ((pred_t - pred_{t-1}) - (gt_t - gt_{t-1}))^2), 0 for frame 0.

For a clip, each metric is the mean of its per-frame values over the frames (so dtSSD is the
sum over t >= 1 divided by T). Frames whose region is empty are left out of the mean of MAD,
MSE and dtSSD (they add 0 to the sums of Grad and Conn); a metric with no pixel at all in its
region is NaN.

Everything here runs in float64 numpy on the CPU (exact and independent of the device the
mattes were made on); the connected components use our own vectorised union-find over
row runs, so no scipy/opencv is needed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "mad",
    "mse",
    "grad",
    "conn",
    "dtssd",
    "compute_all",
    "unknown_region",
    "gaussian_gradient_magnitude",
    "connectivity_phi",
    "largest_component",
    "MetricAccumulator",
]

METRICS: tuple[str, ...] = ("MAD", "MSE", "Grad", "Conn", "dtSSD")

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_THETA = 0.15


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------
def _as_array(x: Any, name: str) -> np.ndarray:
    """A float64 numpy array from a numpy array or a torch tensor (any device)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().float().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} is a {type(x).__name__}; give a numpy array or torch tensor of alpha values.") from exc
    if not np.isfinite(a).all():
        raise InputError(f"{name} contains NaN or infinite values; fix the matte that produced it.")
    return a


def _prepare(
    pred: Any, gt: Any, region: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check shapes and return (T, H, W) float64 pred and gt and a (T, H, W) bool region (or None)."""
    p = _as_array(pred, "pred")
    g = _as_array(gt, "gt")
    if p.ndim not in (2, 3):
        raise InputError(f"pred has shape {p.shape}; give one matte (H, W) or a clip (T, H, W).")
    if p.shape != g.shape:
        raise InputError(f"pred has shape {p.shape} but gt has shape {g.shape}; give mattes of the same size and count.")
    if p.ndim == 2:
        p, g = p[None], g[None]
    r = None
    if region is not None:
        r = _as_array(region, "region") != 0
        if r.ndim == 2:
            r = np.broadcast_to(r, p.shape)
        if r.shape != p.shape:
            raise InputError(
                f"region has shape {r.shape} but the mattes are {p.shape}; give one region per frame or one (H, W) region."
            )
    return p, g, r


def unknown_region(trimap: Any) -> np.ndarray:
    """The unknown region of a trimap in [0, 1]: values strictly between 0 and 1 (e.g. 128/255)."""
    t = _as_array(trimap, "trimap")
    return (t > 0.0) & (t < 1.0)


def _frame_mean(values: np.ndarray, region: np.ndarray | None) -> float | None:
    """Mean over the region of one frame (None when the region is empty)."""
    if region is None:
        return float(values.mean())
    n = int(region.sum())
    return float(values[region].sum() / n) if n else None


def _frame_sum(values: np.ndarray, region: np.ndarray | None) -> float:
    return float(values.sum() if region is None else values[region].sum())


def _mean_of(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else math.nan


# ----------------------------------------------------------------------------------------------
# Grad
# ----------------------------------------------------------------------------------------------
def _gaussian_derivative_kernels(sigma: float = GRAD_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """1-D factors (g, dg) of the x-derivative kernel hx[i, j] = g[i] * dg[j], unit L2 norm overall.

    The half size follows the reference: ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma 0.01))) = 4
    for sigma 1.4, i.e. 9 taps.
    """
    half = math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    dg = -u * g / sigma**2
    norm = math.sqrt(float((g**2).sum() * (dg**2).sum()))  # L2 norm of the outer product
    return g, dg / norm


def _filter1d(x: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    """Correlate (..., H, W) with a 1-D kernel along ``axis`` (-1 or -2), replicating the border."""
    half = len(k) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (half, half)
    xp = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for i, w in enumerate(k):
        if w != 0.0:
            out += w * np.take(xp, np.arange(i, i + n), axis=axis)
    return out


def gaussian_gradient_magnitude(alpha: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """|grad alpha| of (..., H, W) with the Gaussian-derivative filters of the Grad metric."""
    g, dg = _gaussian_derivative_kernels(sigma)
    a = np.asarray(alpha, dtype=np.float64)
    gx = _filter1d(_filter1d(a, dg, -1), g, -2)  # derivative along x (columns), smoothing along y
    gy = _filter1d(_filter1d(a, g, -1), dg, -2)
    return np.sqrt(gx * gx + gy * gy)


# ----------------------------------------------------------------------------------------------
# Conn: connected components (vectorised union-find over row runs)
# ----------------------------------------------------------------------------------------------
def _row_runs(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in a (H, W) bool image: (row, start, end) with end exclusive."""
    h, w = binary.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = binary
    d = np.diff(padded, axis=1)  # (H, W+1): +1 at a run's start, -1 one past its end
    rows_s, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rows_s, starts, ends


def _union_find(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Component root of each of n nodes joined by edges (u, v): hooking + pointer jumping."""
    parent = np.arange(n)
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            return parent
        lo = np.minimum(pu, pv)[differ]
        hi = np.maximum(pu, pv)[differ]
        np.minimum.at(parent, hi, lo)  # hook the larger root under the smaller one
        while True:  # compress every path to its root
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp


def largest_component(binary: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a (H, W) bool image (ties: the one met first in raster order)."""
    h, w = binary.shape
    out = np.zeros((h, w), dtype=bool)
    rows, starts, ends = _row_runs(binary)
    n = len(rows)
    if n == 0:
        return out
    # Runs in consecutive rows are 4-connected when their column ranges overlap:
    # a in row y, b in row y+1 with start_b < end_a and end_b > start_a. With keys row*(W+2)+col
    # the candidate b of each a form one contiguous range of the (raster-ordered) runs.
    stride = w + 2
    start_key = rows * stride + starts
    end_key = rows * stride + ends
    lo = np.searchsorted(end_key, (rows + 1) * stride + starts, side="right")
    hi = np.searchsorted(start_key, (rows + 1) * stride + ends, side="left")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), count)
    offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    b = np.repeat(lo, count) + offsets
    root = _union_find(n, a, b)
    sizes = np.bincount(root, weights=(ends - starts).astype(np.float64), minlength=n)
    best = int(np.argmax(sizes))
    keep = root == best
    # Paint the kept runs with a +1/-1 difference image and a cumulative sum along rows.
    paint = np.zeros((h, w + 1), dtype=np.int32)
    np.add.at(paint, (rows[keep], starts[keep]), 1)
    np.add.at(paint, (rows[keep], ends[keep]), -1)
    out[:] = np.cumsum(paint, axis=1)[:, :w] > 0
    return out


def connectivity_phi(pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP) -> tuple[np.ndarray, np.ndarray]:
    """phi(pred), phi(gt) of one (H, W) frame pair, in the Conn convention (see the module docstring)."""
    n_steps = int(round(1.0 / step))
    level = np.full(pred.shape, -1.0)
    for i in range(1, n_steps + 1):
        t = i / n_steps  # 0.1, 0.2, ... 1.0 exactly as decimal literals
        omega = largest_component((pred >= t) & (gt >= t))
        leaves = (level == -1.0) & ~omega
        level[leaves] = (i - 1) / n_steps
    level[level == -1.0] = 1.0
    d_pred = pred - level
    d_gt = gt - level
    phi_pred = 1.0 - d_pred * (d_pred >= CONN_THETA)
    phi_gt = 1.0 - d_gt * (d_gt >= CONN_THETA)
    return phi_pred, phi_gt


# ----------------------------------------------------------------------------------------------
# per-frame metrics and the accumulator
# ----------------------------------------------------------------------------------------------
@dataclass
class MetricAccumulator:
    """Streams a clip frame by frame (memory: two frames) and averages per-frame metrics.

    ``add(pred, gt, region)`` takes one (H, W) frame of each; ``result()`` returns
    {metric: value} for the metrics in ``metrics``.
    """

    metrics: Sequence[str] = METRICS
    frames: int = field(default=0, init=False)
    _values: dict[str, list[float | None]] = field(default_factory=dict, init=False, repr=False)
    _prev: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise InputError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}.")
        self._values = {m: [] for m in self.metrics}

    def add(self, pred: Any, gt: Any, region: Any = None) -> dict[str, float | None]:
        """Add one frame; returns its per-frame values (None where its region is empty)."""
        p, g, r = _prepare(pred, gt, region)
        if p.shape[0] != 1:
            raise InputError(f"MetricAccumulator.add takes one (H, W) frame, got pred of shape {p.shape[1:]} x {p.shape[0]}.")
        p, g = p[0], g[0]
        rr = None if r is None else r[0]
        if self._prev is not None and self._prev[0].shape != p.shape:
            raise InputError(
                f"frame {self.frames} is {p.shape[1]}x{p.shape[0]} but earlier frames are "
                f"{self._prev[0].shape[1]}x{self._prev[0].shape[0]}; every frame of a clip must have the same size."
            )
        out: dict[str, float | None] = {}
        diff = p - g
        if "MAD" in self._values:
            out["MAD"] = None if (v := _frame_mean(np.abs(diff), rr)) is None else 1e3 * v
        if "MSE" in self._values:
            out["MSE"] = None if (v := _frame_mean(diff * diff, rr)) is None else 1e3 * v
        if "Grad" in self._values:
            e = gaussian_gradient_magnitude(p) - gaussian_gradient_magnitude(g)
            out["Grad"] = _frame_sum(e * e, rr) / 1e3
        if "Conn" in self._values:
            phi_p, phi_g = connectivity_phi(p, g)
            out["Conn"] = _frame_sum(np.abs(phi_p - phi_g), rr) / 1e3
        if "dtSSD" in self._values:
            if self._prev is None:
                out["dtSSD"] = 0.0 if (rr is None or rr.any()) else None
            else:
                dd = (p - self._prev[0]) - (g - self._prev[1])
                v = _frame_mean(dd * dd, rr)
                out["dtSSD"] = None if v is None else 1e2 * math.sqrt(v)
            self._prev = (p, g)
        elif self._prev is None:
            self._prev = (p, g)
        for k, v in out.items():
            self._values[k].append(v)
        self.frames += 1
        return out

    def result(self) -> dict[str, float]:
        """{metric: mean over frames} (NaN for a metric that saw no region pixel)."""
        if self.frames == 0:
            raise InputError("no frames were added; give at least one frame to evaluate.")
        return {k: _mean_of(v) for k, v in self._values.items()}


def _iter_frames(p: np.ndarray, g: np.ndarray, r: np.ndarray | None) -> Iterator[tuple[np.ndarray, ...]]:
    for t in range(p.shape[0]):
        yield (p[t], g[t]) if r is None else (p[t], g[t], r[t])


def compute_all(pred: Any, gt: Any, region: Any = None, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Every metric in ``metrics`` for (H, W) or (T, H, W) mattes; {name: value}."""
    p, g, r = _prepare(pred, gt, region)
    acc = MetricAccumulator(metrics=metrics)
    for args in _iter_frames(p, g, r):
        acc.add(*args)
    return acc.result()


def mad(pred: Any, gt: Any, region: Any = None) -> float:
    """MAD = 1e3 * mean |pred - gt| (per frame, averaged over frames)."""
    return compute_all(pred, gt, region, ("MAD",))["MAD"]


def mse(pred: Any, gt: Any, region: Any = None) -> float:
    """MSE = 1e3 * mean (pred - gt)^2 (per frame, averaged over frames)."""
    return compute_all(pred, gt, region, ("MSE",))["MSE"]


def grad(pred: Any, gt: Any, region: Any = None) -> float:
    """Grad = sum (|grad pred| - |grad gt|)^2 / 1e3 (Gaussian derivatives, sigma 1.4); mean over frames."""
    return compute_all(pred, gt, region, ("Grad",))["Grad"]


def conn(pred: Any, gt: Any, region: Any = None) -> float:
    """Conn = sum |phi(pred) - phi(gt)| / 1e3 (connectivity, thresholds step 0.1); mean over frames."""
    return compute_all(pred, gt, region, ("Conn",))["Conn"]


def dtssd(pred: Any, gt: Any, region: Any = None) -> float:
    """dtSSD = 1e2 * sqrt(mean of squared temporal-difference errors), frame 0 counting 0; mean over frames."""
    return compute_all(pred, gt, region, ("dtSSD",))["dtSSD"]
