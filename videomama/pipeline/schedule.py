"""Time layout of a clip: overlapping windows, their blend weights, and noise keyed to frame indices."""

from __future__ import annotations

import torch

__all__ = ["FrameNoise", "blend_weights", "ramp", "split_windows"]


def split_windows(num_frames: int, window: int, overlap: int) -> list[range]:
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


def ramp(length: int, lead: int, trail: int) -> torch.Tensor:
    """Weights 1 in the middle with linear ramps over ``lead`` / ``trail`` samples at the ends (0 < w <= 1).

    Two neighbours that share ``n`` samples, one ramping down (trail ``n``) where the other
    ramps up (lead ``n``), sum to 1 on every shared sample, so a cross-fade has no step.
    """
    pos = torch.arange(length, dtype=torch.float32)
    w = torch.ones(length)
    if lead > 0:
        w = torch.minimum(w, (pos + 1) / (lead + 1))
    if trail > 0:
        w = torch.minimum(w, (length - pos) / (trail + 1))
    return w


def blend_weights(windows: list[range]) -> list[torch.Tensor]:
    """Per-window frame weights: linear ramps across each overlap, 1 elsewhere.

    Inside an overlap the earlier window fades out as the later fades in, so the blended alpha
    moves from one window's answer to the next without a step.
    """
    weights = []
    for k, win in enumerate(windows):
        lead = max(0, windows[k - 1].stop - win.start) if k > 0 else 0
        trail = max(0, win.stop - windows[k + 1].start) if k + 1 < len(windows) else 0
        weights.append(ramp(len(win), lead, trail))
    return weights


class FrameNoise:
    """Standard normal noise for frame i from a stream seeded once: it depends only on (seed, i).

    Frames are drawn in increasing order from one CPU generator; on the CPU, drawing frame by
    frame gives exactly the numbers of one draw for the whole clip, so a clip that fits one
    window gets the noise the official single-call pipeline would draw on the CPU.
    """

    def __init__(self, seed: int, shape: tuple[int, ...]):
        self._gen = torch.Generator(device="cpu").manual_seed(seed)
        self._shape = shape
        self._next = 0
        self._floor = 0  # frames below this are drawn (to advance the stream) but not kept
        self._kept: dict[int, torch.Tensor] = {}

    def get(self, index: int) -> torch.Tensor:
        while self._next <= index:
            noise = torch.randn(self._shape, generator=self._gen)
            if self._next >= self._floor:
                self._kept[self._next] = noise
            self._next += 1
        return self._kept[index]

    def forget_before(self, index: int) -> None:
        self._floor = max(self._floor, index)
        for i in [i for i in self._kept if i < index]:
            del self._kept[i]
