"""Memory is bounded by the window, not the clip: no per-frame state outlives its window.

The real clip pipeline (``videomama.pipeline.matte.iter_matte``, tiny random model) runs on lazily made
clips while a dispatch-mode counter (``LiveTensorBytes``) tracks the bytes of every live
tensor created during the run (model weights, made before, are not counted). Right after the
last alpha of each window is handed out, what is still alive is what the pipeline carries to
the next window: latents and noise of the shared frames, their partial alphas, and the last
window's inputs. In the steady state (every window but the first two and the last) that must
not change from window to window: any per-frame state kept for the clip grows it by that
state's bytes per window, and here one frame's latents alone are 512 bytes. The run's peak
must also be the same for 4N frames as for N.

The test proves its own power: two leaking variants, one that never forgets noise
(``FrameNoise.forget_before`` a no-op) and one that keeps every frame it reads (the whole
clip), must fail the same check. (Peak RSS, which the previous version of this test compared,
could not tell: at these sizes the process's baseline dwarfs per-frame state.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from benchmarks.bench_matte import LiveTensorBytes
from videomama.options import MatteOptions
from videomama.pipeline import matte as video
from videomama.pipeline.schedule import FrameNoise, split_windows

SIDE = 64  # 8x8 latents: one frame's frame + mask latents are 512 bytes, its noise 768 bytes
OPTIONS = MatteOptions(resolution=SIDE, window=8, overlap=2)
# Lengths with regular windows only (8 + 6k frames): a last window shifted back to stay full
# shares more frames with its neighbour, which is carried state but not a leak.
SHORT = 14  # 2 windows
LONG = 44  # 7 windows
SLACK = 256  # bytes the carried state may vary by in the steady state (it is constant when nothing leaks)
PEAK_MARGIN = 1.02

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class LazyClip(Sequence):
    """Frames (H, W, 3) or masks (H, W) made on access, as a video reader would."""

    def __init__(self, n: int, channels: int):
        self.n, self.channels = n, channels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        x = torch.rand(SIDE, SIDE, self.channels, generator=torch.Generator().manual_seed(i))
        return x if self.channels == 3 else (x[..., 0] > 0.5).float()


def _measure(model, frames: int) -> tuple[list[int], int]:
    """(bytes alive after each window's last alpha is handed out, peak live bytes) over a run."""
    windows = split_windows(frames, OPTIONS.window, OPTIONS.overlap)
    last_of_window = [(windows[k + 1].start if k + 1 < len(windows) else frames) - 1 for k in range(len(windows))]
    counter = LiveTensorBytes()
    carried = []
    count = 0
    with counter, torch.no_grad():
        for i, alpha in video.iter_matte(model, LazyClip(frames, 3), LazyClip(frames, 1), OPTIONS):
            assert alpha.shape == (SIDE, SIDE)
            del alpha
            if i in last_of_window:
                carried.append(counter.current)
            count += 1
    assert count == frames
    return carried, counter.peak


def _bounded(model, short_peak: int) -> tuple[bool, str]:
    carried, peak = _measure(model, LONG)
    steady = carried[2:-1]
    ok = max(steady) - min(steady) <= SLACK and peak <= short_peak * PEAK_MARGIN
    return ok, (f"bytes carried after windows 3..{len(carried) - 1} of {LONG} frames: {steady}; "
                f"peak {peak} B ({SHORT} frames: {short_peak} B)")


@pytest.fixture(scope="module")
def short_run(tiny_model) -> int:
    return _measure(tiny_model, SHORT)[1]


def test_state_between_windows_flat_in_clip_length(tiny_model, short_run):
    ok, figures = _bounded(tiny_model, short_run)
    print(figures)
    assert ok, figures


def test_check_catches_noise_never_forgotten(tiny_model, short_run, monkeypatch):
    """Negative control: keeping every frame's UNet and posterior noise must fail the check."""
    monkeypatch.setattr(FrameNoise, "forget_before", lambda self, index: None)
    ok, figures = _bounded(tiny_model, short_run)
    print("leaking noise:", figures)
    assert not ok, f"a run that keeps all noise passed the memory check: {figures}"


def test_check_catches_the_whole_clip_kept(tiny_model, short_run, monkeypatch):
    """Negative control: keeping every frame read (the whole clip in memory) must fail the check."""
    read = video._read_frames
    hoard: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keeping(inputs, indices, device):
        batch = read(inputs, indices, device)
        hoard.append(batch)
        return batch

    monkeypatch.setattr(video, "_read_frames", keeping)
    ok, figures = _bounded(tiny_model, short_run)
    print("keeping the clip:", figures)
    assert not ok, f"a run that keeps every frame passed the memory check: {figures}"
