"""Run the real clip pipeline on a lazily generated clip and print the peak RSS (MiB).

Used by test_memory.py in a fresh subprocess per clip length, so each figure is that run's
own peak. Frames are produced on access, as a video reader would, and alphas are consumed
as they come, as the CLI writes them: what remains is the pipeline's own working set.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.options import MatteOptions
from videomama.pipeline.matte import iter_matte
from videomama.weights.configs import build_random_model


class LazyClip(Sequence):
    def __init__(self, n: int, h: int, w: int, channels: int):
        self.n, self.h, self.w, self.c = n, h, w, channels

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        gen = torch.Generator().manual_seed(i)
        x = torch.rand(self.h, self.w, self.c, generator=gen)
        return x if self.c == 3 else (x[..., 0] > 0.5).float()


def main() -> None:
    frames_n, h, w = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(2)
    model = build_random_model()
    frames, masks = LazyClip(frames_n, h, w, 3), LazyClip(frames_n, h, w, 1)
    checksum, count = 0.0, 0
    for _, alpha in iter_matte(model, frames, masks, MatteOptions(resolution=max(h, w), window=16, overlap=4)):
        checksum += float(alpha.mean())
        count += 1
    assert count == frames_n
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"frames={frames_n} peak_rss_mib={peak_mib:.1f} checksum={checksum:.4f}")


if __name__ == "__main__":
    main()
