"""Closed-form matting in a band, matrix-free, in torch (private module of the refiner).

The matting Laplacian of Levin, Lischinski and Weiss ("A closed-form solution to natural image
matting", 2008) is applied without building the sparse matrix: for a window k of n_k pixels
with colour mean mu_k and covariance Sigma_k, and Delta_k = (Sigma_k + eps I)^-1,

    (L p)_i = sum_{k contains i} (p_i - a_k . I_i - b_k),
    a_k = Delta_k cov_k(I, p),   b_k = mean_k(p) - a_k . mu_k,

i.e. ``count * p - I . box_sum(a) - box_sum(b)`` - the same window statistics as the guided
filter (He, Sun and Tang showed the connection), so one product costs a few O(pixels) box
filters on any device. :func:`solve_band` minimises

    alpha^T L alpha + sum_i d_i (alpha_i - e_i)^2

over the band pixels (the rest of alpha is fixed) with a fixed number of Jacobi-preconditioned
conjugate-gradient steps: ``e`` is a per-pixel estimate (from colour samples) and ``d`` how much
it is trusted. A fixed step count keeps the result a deterministic function of the frame.
"""

from __future__ import annotations

import torch

from .filters import box_blur, box_sum

__all__ = ["MattingLaplacian", "solve_band"]

_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _inverse_sym3(s: list[torch.Tensor], floor: float) -> list[torch.Tensor]:
    """Inverse of symmetric 3x3 matrices given as their 6 upper entries (00, 01, 02, 11, 12, 22).

    ``floor``: the smallest determinant a regularised covariance can have (eps^3); float32
    round-off can push a nearly singular one below it."""
    s00, s01, s02, s11, s12, s22 = s
    c00 = s11 * s22 - s12 * s12
    c01 = s02 * s12 - s01 * s22
    c02 = s01 * s12 - s02 * s11
    c11 = s00 * s22 - s02 * s02
    c12 = s01 * s02 - s00 * s12
    c22 = s00 * s11 - s01 * s01
    det = (s00 * c00 + s01 * c01 + s02 * c02).clamp_min(floor)
    return [c / det for c in (c00, c01, c02, c11, c12, c22)]


def _mat_vec(d: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """Symmetric 3x3 fields (6 entries, each (N, H, W)) times a 3-vector field (N, 3, H, W)."""
    d00, d01, d02, d11, d12, d22 = d
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    return torch.stack([d00 * x + d01 * y + d02 * z, d01 * x + d11 * y + d12 * z, d02 * x + d12 * y + d22 * z], 1)


class MattingLaplacian:
    """The matting Laplacian of images (N, 3, H, W) for windows of radius ``radius``, as an operator."""

    def __init__(self, image: torch.Tensor, radius: int = 1, eps: float = 1e-5) -> None:
        self.image = image if image.is_floating_point() else image.float()
        self.radius = radius
        I = self.image
        self.mean = box_blur(I, radius)
        prod = torch.stack([I[:, i] * I[:, j] for i, j in _PAIRS], 1)
        mprod = box_blur(prod, radius)
        cov = [mprod[:, k] - self.mean[:, i] * self.mean[:, j] for k, (i, j) in enumerate(_PAIRS)]
        for k in (0, 3, 5):
            cov[k] = cov[k] + eps
        self.delta = _inverse_sym3(cov, eps**3)
        self.count = box_sum(torch.ones_like(I[:1, :1]), radius)  # windows per pixel = pixels per window

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        """L p for p (N, 1, H, W)."""
        r = self.radius
        pbar = box_blur(p, r)
        cov_ip = box_blur(self.image * p, r) - self.mean * pbar
        a = _mat_vec(self.delta, cov_ip)
        b = pbar - (a * self.mean).sum(1, keepdim=True)
        return self.count * p - (self.image * box_sum(a, r)).sum(1, keepdim=True) - box_sum(b, r)

    def diagonal(self) -> torch.Tensor:
        """diag(L) (N, 1, H, W): sum over windows k of 1 - (1 + d^T Delta_k d) / n_k, d = I_i - mu_k."""
        r = self.radius
        inv_n = 1.0 / self.count
        dn = [d * inv_n[:, 0] for d in self.delta]
        s_d = box_sum(torch.stack(dn, 1), r)  # sum_k Delta_k / n_k
        s_dmu = box_sum(_mat_vec(dn, self.mean), r)  # sum_k Delta_k mu_k / n_k
        s_mdm = box_sum((self.mean * _mat_vec(dn, self.mean)).sum(1, keepdim=True), r)
        s_inv = box_sum(inv_n.expand_as(self.image[:, :1]), r)
        I = self.image
        quad = (I * _mat_vec([s_d[:, k] for k in range(6)], I)).sum(1, keepdim=True)
        quad = quad - 2.0 * (I * s_dmu).sum(1, keepdim=True) + s_mdm
        return (self.count - s_inv - quad).clamp_min(1e-6)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=(1, 2, 3), keepdim=True)


def solve_band(
    laplacian: MattingLaplacian,
    alpha: torch.Tensor,
    band: torch.Tensor,
    estimate: torch.Tensor,
    trust: torch.Tensor,
    steps: int,
) -> torch.Tensor:
    """Band pixels of ``alpha`` (N, 1, H, W) minimising alpha^T L alpha + sum trust (alpha - estimate)^2.

    band: {0, 1} (N, 1, H, W), the unknowns; outside it ``alpha`` is kept as given (the sure
    foreground and background). The band starts at ``estimate``. Returns alpha with the band
    solved (not clamped).
    """
    u = band.float()
    known = alpha * (1 - u)
    x = estimate * u
    precond = 1.0 / (laplacian.diagonal() + trust).clamp_min(1e-6) * u
    # r = b - A x with A = U L U + T, b = T e - U L known.
    r = u * (trust * estimate - laplacian(known + x)) - u * trust * x
    z = precond * r
    p = z
    rz = _dot(r, z)
    for _ in range(steps):
        ap = u * laplacian(p) + trust * p
        pap = _dot(p, ap)
        # A frame whose band has converged (or is empty) stops moving: no 0/0 steps.
        live = (pap > 1e-12) & (rz > 1e-12)
        step = torch.where(live, rz / pap.clamp_min(1e-12), torch.zeros_like(rz))
        x = x + step * p
        r = r - step * ap
        z = precond * r
        rz_new = _dot(r, z)
        p = z + torch.where(live, rz_new / rz.clamp_min(1e-12), torch.zeros_like(rz)) * p
        rz = rz_new
    return known + x
