"""Deterministic synthetic clips with a known alpha, for tests, the demo and benchmarks.

A textured subject (a head-like blob with a cap of hair) moves over a textured, slowly
panning background. Its matte has the three things that make matting hard:

* fine hair-like strands (about one pixel wide, partly transparent) on the hair side,
* soft (defocused) edges on part of the outline, sharp anti-aliased edges elsewhere,
* motion blur: each frame averages ``subsamples`` positions of the subject over the shutter.

Everything is an analytic function of the pixel coordinates, the frame index and the seed,
so any frame can be rendered on its own (:class:`SyntheticScene`, lazy and memory-bounded)
and the same call always gives the same pixels. Each frame satisfies the compositing
equation exactly: ``frame = fg * alpha + bg * (1 - alpha)``, with ``fg`` the straight
(un-premultiplied) colour of the subject, motion blur included.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["SyntheticClip", "SyntheticScene", "make_clip", "coarse_mask"]


@dataclass(frozen=True)
class SyntheticClip:
    """A rendered clip. All tensors are float32 on the CPU (or the scene's device), values in [0, 1].

    frames: (T, H, W, 3) composites; alpha: (T, H, W) true matte (1 = subject);
    fg: (T, H, W, 3) straight foreground colour; bg: (T, H, W, 3) background.
    """

    frames: torch.Tensor
    alpha: torch.Tensor
    fg: torch.Tensor
    bg: torch.Tensor


def _hash_noise(x: torch.Tensor, y: torch.Tensor, seed: float) -> torch.Tensor:
    """Cheap deterministic per-position noise in [0, 1) (the classic fract(sin(dot)) hash)."""
    v = torch.sin(x * 12.9898 + y * 78.233 + seed * 37.719) * 43758.5453
    return v - torch.floor(v)


def _value_noise(x: torch.Tensor, y: torch.Tensor, cell: float, seed: float) -> torch.Tensor:
    """Smooth value noise in [0, 1]: hashed lattice values, smoothstep-interpolated; ``cell`` in px."""
    u, v = x / cell, y / cell
    iu, iv = torch.floor(u), torch.floor(v)
    fu, fv = u - iu, v - iv
    su, sv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    n00 = _hash_noise(iu, iv, seed)
    n10 = _hash_noise(iu + 1, iv, seed)
    n01 = _hash_noise(iu, iv + 1, seed)
    n11 = _hash_noise(iu + 1, iv + 1, seed)
    return (n00 * (1 - su) + n10 * su) * (1 - sv) + (n01 * (1 - su) + n11 * su) * sv


class SyntheticScene(Sequence):
    """A deterministic scene; ``scene[t]`` is frame ``t`` as (H, W, 3), ``scene.render(t)`` gives all layers.

    height, width: frame size in pixels (every length in the scene scales with it).
    num_frames: clip length (the scene is defined for any t; this is what ``len()`` reports).
    seed: picks strand positions, lengths, opacities and texture phases.
    subsamples: positions averaged per frame for motion blur (1 = no blur; None = enough
        that consecutive positions are at most ~2 px apart, 2..12).
    shutter: fraction of the frame interval the shutter is open.
    speed: motion speed multiplier (1.0: the centre moves up to ~2% of the width per frame).
    noise: standard deviation of per-frame sensor noise added to ``frames`` only (0 keeps
        the compositing equation exact).
    device: where frames are rendered.
    """

    def __init__(
        self,
        height: int = 256,
        width: int = 256,
        num_frames: int = 8,
        *,
        seed: int = 0,
        subsamples: int | None = None,
        shutter: float = 0.8,
        speed: float = 1.0,
        noise: float = 0.0,
        device: torch.device | str | None = None,
    ) -> None:
        if height < 16 or width < 16:
            raise InputError(f"size {width}x{height} is too small for a synthetic clip; use at least 16x16.")
        if num_frames < 1:
            raise InputError(f"num_frames={num_frames} must be at least 1.")
        if subsamples is not None and subsamples < 1:
            raise InputError(f"subsamples={subsamples} must be at least 1 (1 = no motion blur).")
        self.height, self.width, self.num_frames = int(height), int(width), int(num_frames)
        self.seed, self.shutter = int(seed), float(shutter)
        self.speed, self.noise = float(speed), float(noise)
        self.device = torch.device(device) if device is not None else torch.device("cpu")

        g = torch.Generator().manual_seed(self.seed)
        s = min(self.height, self.width)
        self._scale = s
        self.radius = 0.24 * s  # body radius (px)
        n_strands = 96
        self._n_strands = n_strands
        self._strand_len = (0.10 + 0.14 * torch.rand(n_strands, generator=g)) * s  # px
        self._strand_opacity = 0.55 + 0.45 * torch.rand(n_strands, generator=g)
        self._strand_jitter = (torch.rand(n_strands, generator=g) - 0.5) * 0.6  # fraction of spacing
        self._strand_wave = torch.rand(n_strands, generator=g) * 2 * math.pi
        self._strand_shade = torch.rand(n_strands, generator=g)
        self._phase = (torch.rand(8, generator=g) * 2 * math.pi).tolist()
        self._path = (0.5 + 0.5 * torch.rand(4, generator=g)).tolist()
        self._tex_seed = float(torch.randint(0, 1000, (1,), generator=g).item())
        if subsamples is None:
            ax, ay, fx, fy = self._path
            vmax = self.speed * (  # upper bound of the px motion per frame of any subject pixel
                self.width * 0.10 * ax * 2 * math.pi / (40 * fx)
                + self.height * 0.06 * ay * 2 * math.pi / (28 * fy)
                + 0.12 * 2 * math.pi / 50 * 0.5 * s
            )
            subsamples = min(12, max(2, math.ceil(vmax * self.shutter / 2.0) + 1))
        self.subsamples = int(subsamples)
        # Pixel grid (y down, x right), float32.
        ys = torch.arange(self.height, dtype=torch.float32, device=self.device) + 0.5
        xs = torch.arange(self.width, dtype=torch.float32, device=self.device) + 0.5
        self._y, self._x = torch.meshgrid(ys, xs, indexing="ij")

    # -- Sequence protocol: lazily rendered frames -------------------------------------------
    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not -self.num_frames <= index < self.num_frames:
            raise IndexError(index)
        return self.render(index % self.num_frames)[0]

    # -- motion ----------------------------------------------------------------------------------
    def _pose(self, time: float) -> tuple[float, float, float]:
        """Centre (x, y) in px and rotation (rad) at a (fractional) frame time."""
        w, h = self.width, self.height
        ax, ay, fx, fy = self._path
        t = time * self.speed
        cx = w * (0.5 + 0.10 * ax * math.sin(2 * math.pi * t / (40 * fx) + self._phase[0]))
        cy = h * (0.55 + 0.06 * ay * math.sin(2 * math.pi * t / (28 * fy) + self._phase[1]))
        rot = 0.12 * math.sin(2 * math.pi * t / 50 + self._phase[2])
        return cx, cy, rot

    # -- layers ----------------------------------------------------------------------------------
    def _background(self, time: float) -> torch.Tensor:
        """(H, W, 3) textured background, panning slowly to the left."""
        x = self._x + 0.35 * time * self._scale / 256
        y = self._y
        s = self._scale
        p = self._phase
        n1 = _value_noise(x, y, 0.09 * s, self._tex_seed + 1)
        n2 = _value_noise(x, y, 0.02 * s, self._tex_seed + 2)
        stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * (x * 0.8 + y * 0.6) / (0.11 * s) + p[3])
        r = 0.25 + 0.30 * n1 + 0.15 * stripes + 0.10 * n2
        g = 0.40 + 0.25 * n1 + 0.10 * (1 - stripes) + 0.10 * n2
        b = 0.55 + 0.25 * (1 - n1) + 0.10 * stripes - 0.10 * n2
        return torch.stack([r, g, b], -1).clamp(0, 1)

    def _textures(self, time: float, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Skin and hair colour (h, w, 3) at pixels (x, y), moving with the subject's pose at ``time``.

        Taken once per frame (at the middle of the shutter): motion blur smears the matte but
        not the texture, which keeps rendering cheap and the compositing equation exact.
        """
        cx, cy, rot = self._pose(time)
        s = self._scale
        dx, dy = x - cx, y - cy
        lx = dx * math.cos(rot) + dy * math.sin(rot)
        ly = -dx * math.sin(rot) + dy * math.cos(rot)
        tn = _value_noise(lx + 1000, ly + 1000, 0.05 * s, self._tex_seed + 3)
        fine = _value_noise(lx + 1000, ly + 1000, 0.012 * s, self._tex_seed + 4)
        skin = torch.stack(
            [0.80 + 0.12 * tn - 0.05 * fine, 0.55 + 0.10 * tn + 0.05 * fine, 0.42 + 0.08 * tn], -1
        )
        hair_col = torch.stack([0.45 + 0.20 * fine, 0.28 + 0.12 * fine, 0.12 + 0.06 * fine], -1)
        return skin, hair_col

    def _subject(
        self, time: float, x: torch.Tensor, y: torch.Tensor, skin: torch.Tensor, hair_col: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alpha (h, w) and premultiplied colour (h, w, 3) of the subject at one instant, at pixels (x, y)."""
        cx, cy, rot = self._pose(time)
        R = self.radius
        s = self._scale
        dx, dy = x - cx, y - cy
        r = torch.sqrt(dx * dx + dy * dy).clamp_min(1e-6)
        theta = torch.atan2(dy, dx) - rot  # subject-local angle, 0 = right, -pi/2 = up
        p = self._phase
        # Outline radius with a little shape; distance outside the outline in px.
        R_t = R * (1 + 0.07 * torch.sin(3 * theta + p[4]) + 0.04 * torch.cos(5 * theta + p[5]))
        d = r - R_t
        # Soft (defocused) edge on the lower right, sharp anti-aliased edge elsewhere.
        soft = 1.0 + (0.035 * s) * torch.clamp(torch.cos(theta - 0.9), min=0) ** 3
        a_body = torch.clamp(0.5 - d / soft, 0.0, 1.0)

        # Hair: on the upper side (theta around -pi/2), a cap inside and strands outside.
        up = torch.cos(theta + math.pi / 2)  # 1 at the top, -1 at the bottom
        hair_side = torch.clamp((up - 0.05) / 0.35, 0.0, 1.0)
        cap = hair_side * torch.clamp((d + 0.30 * R) / (0.08 * R), 0.0, 1.0)  # 1 near the edge
        # Strands: curves theta = theta_j + bend(r); pixel distance to the nearest ones.
        n = self._n_strands
        spacing = 2 * math.pi / n
        bend = 0.2 * torch.sin(d / (0.09 * s) + p[6]) * (d.clamp_min(0) / (0.2 * s))
        u = (theta - bend) / spacing
        j0 = torch.floor(u)
        a_hair = torch.zeros_like(r)
        shade = torch.zeros_like(r)
        width = max(0.9, 1.3 * s / 512)  # strand half-width in px
        for k in (-1, 0, 1, 2):
            j = (j0 + k).remainder(n).long()
            jit = self._strand_jitter.to(r.device)[j]
            wave = self._strand_wave.to(r.device)[j]
            centre = j0 + k + 0.5 + jit + 0.15 * torch.sin(d / (0.05 * s) + wave)
            dist = (u - centre).abs() * spacing * r  # px across the strand
            length = self._strand_len.to(r.device)[j]
            along = torch.clamp(1 - d / length, 0.0, 1.0) * torch.clamp(d / 1.5 + 1.0, 0.0, 1.0)
            a_k = (
                torch.clamp(1 - dist / width, 0.0, 1.0)
                * self._strand_opacity.to(r.device)[j]
                * along.sqrt()
                * hair_side
            )
            take = a_k > a_hair
            shade = torch.where(take, self._strand_shade.to(r.device)[j], shade)
            a_hair = torch.maximum(a_hair, a_k)
        a_hair = a_hair * (d > -1.0)  # strands only outside the outline

        body_col = skin * (1 - cap[..., None]) + hair_col * cap[..., None]
        strand_col = torch.stack([0.40 + 0.35 * shade, 0.25 + 0.25 * shade, 0.10 + 0.12 * shade], -1)
        alpha = a_hair + a_body * (1 - a_hair)  # strands over the body
        premult = a_hair[..., None] * strand_col + ((1 - a_hair) * a_body)[..., None] * body_col
        return alpha.clamp(0, 1), premult

    def render(self, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame ``t``: (frame (H,W,3), alpha (H,W), fg (H,W,3), bg (H,W,3)), float32 in [0, 1]."""
        k = self.subsamples
        offsets = [0.0] if k == 1 else [self.shutter * (i / (k - 1) - 0.5) for i in range(k)]
        # Only the box the subject can reach during the shutter is rendered.
        reach = self.radius * 1.12 + float(self._strand_len.max()) + 0.04 * self._scale + 4
        poses = [self._pose(t + off) for off in offsets]
        x0 = max(0, int(math.floor(min(p[0] for p in poses) - reach)))
        x1 = min(self.width, int(math.ceil(max(p[0] for p in poses) + reach)))
        y0 = max(0, int(math.floor(min(p[1] for p in poses) - reach)))
        y1 = min(self.height, int(math.ceil(max(p[1] for p in poses) + reach)))
        alpha = torch.zeros(self.height, self.width, device=self.device)
        premult = torch.zeros(self.height, self.width, 3, device=self.device)
        if x1 > x0 and y1 > y0:
            xs, ys = self._x[y0:y1, x0:x1], self._y[y0:y1, x0:x1]
            skin, hair_col = self._textures(float(t), xs, ys)
            for off in offsets:
                a, p = self._subject(t + off, xs, ys, skin, hair_col)
                alpha[y0:y1, x0:x1] += a
                premult[y0:y1, x0:x1] += p
        alpha /= k
        premult /= k
        bg = self._background(float(t))
        # Straight colour where the subject is present; mid grey elsewhere (never used: alpha = 0).
        fg = torch.where(
            alpha[..., None] > 1e-6, premult / alpha.clamp_min(1e-6)[..., None], torch.full_like(premult, 0.5)
        ).clamp(0, 1)
        frame = fg * alpha[..., None] + bg * (1 - alpha[..., None])
        if self.noise > 0:
            g = torch.Generator(device="cpu").manual_seed(self.seed * 100003 + t)
            n = torch.randn(frame.shape, generator=g).to(frame.device) * self.noise
            frame = (frame + n).clamp(0, 1)
        return frame, alpha, fg, bg


def make_clip(
    num_frames: int = 8,
    height: int = 256,
    width: int = 256,
    *,
    seed: int = 0,
    subsamples: int | None = None,
    speed: float = 1.0,
    noise: float = 0.0,
    device: torch.device | str | None = None,
) -> SyntheticClip:
    """Render a whole clip of a :class:`SyntheticScene` (see there for the arguments)."""
    scene = SyntheticScene(
        height, width, num_frames, seed=seed, subsamples=subsamples, speed=speed, noise=noise, device=device
    )
    layers = [scene.render(t) for t in range(num_frames)]
    frames, alpha, fg, bg = (torch.stack(x) for x in zip(*layers))
    log.debug("synthetic clip %dx%d x %d frames, seed %d", width, height, num_frames, seed)
    return SyntheticClip(frames=frames, alpha=alpha, fg=fg, bg=bg)


def coarse_mask(alpha: torch.Tensor, factor: int = 8, threshold: float = 0.5) -> torch.Tensor:
    """The coarse input mask used in our measurements: threshold the true alpha, shrink by ``factor``, grow back.

    alpha: (..., H, W). The thresholded matte is area-averaged down by ``factor``, scaled back
    up bilinearly and thresholded at 0.5 again (a blocky, low-resolution segmentation).
    Returns a float32 {0, 1} tensor of the same shape.
    """
    if factor < 1:
        raise InputError(f"factor={factor} must be at least 1.")
    lead = alpha.shape[:-2]
    h, w = alpha.shape[-2:]
    x = (alpha.reshape(-1, 1, h, w) >= threshold).float()
    if factor > 1:
        small = torch.nn.functional.interpolate(
            x, size=(max(1, round(h / factor)), max(1, round(w / factor))), mode="area"
        )
        x = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (x >= 0.5).float().reshape(*lead, h, w)
