"""Where the weight-free refiner's frame-to-frame error (dtSSD) comes from, by colour confidence.

    python benchmarks/refine_dtssd_breakdown.py

On the moving synthetic clip of ``bench_refine_temporal.py`` (temporal smoothing off), the
squared error of the frame-to-frame change of alpha, summed over pixels, split by the colour
estimate's confidence (the lower of two consecutive frames'), plus the same sum for the coarse
mask itself. Figures: BENCHMARKS.md, "Time and thin structures".
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.eval.synthetic import coarse_mask, make_clip
from videomama.imaging import refine_frame
from videomama.imaging.refine import band_pixels, refine_clip

BINS = ((0.0, 0.001), (0.001, 0.2), (0.2, 0.5), (0.5, 0.8), (0.8, 1.01))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    clip = make_clip(8, 160, 224, seed=5, speed=2.5, noise=0.01)
    masks = coarse_mask(clip.alpha)
    alpha = refine_clip(clip.frames, masks, temporal=0.0)
    band_px = band_pixels(160, 224)  # the frames are below the working size: no rescaling
    confidence = []
    for t in range(clip.frames.shape[0]):
        image, mask = clip.frames[t].permute(2, 0, 1)[None], masks[t][None, None]
        fg, bg, _ = refine_frame._sure_regions(mask, band_px)
        _, trust = refine_frame._colour_alpha(image, mask, fg, bg, (1 - fg) * (1 - bg), band_px)
        confidence.append(trust[0, 0])
    conf = torch.stack(confidence)
    err = ((alpha[1:] - alpha[:-1]) - (clip.alpha[1:] - clip.alpha[:-1])) ** 2
    low = torch.minimum(conf[1:], conf[:-1])
    in_band = (conf[1:] > 0) | (conf[:-1] > 0)
    print(f"total {err.sum():.1f}; outside the band {err[~in_band].sum():.1f}; "
          f"coarse mask itself {(((masks[1:] - masks[:-1]) - (clip.alpha[1:] - clip.alpha[:-1])) ** 2).sum():.1f}")
    for lo, hi in BINS:
        sel = in_band & (low >= lo) & (low < hi)
        print(f"confidence {lo:g}..{min(hi, 1.0):g}: {int(sel.sum())} px, {err[sel].sum():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
