"""Time and thin-structure figures of the weight-free refiner, old (``--base-rev``) against new.

    python benchmarks/bench_refine_temporal.py            # 960x540 disc, 1080p pole, 40x3000 strip

* moving disc (7 px/frame over random texture whose mean is the disc's colour, coarse masks
  shrunk 8x): alpha > 0.05 farther than the band from the mask, as a share of the band's
  pixels (limit 1 %), and "trail" pixels per frame (alpha > 0.05 where the truth is 0 and
  the frame refined alone is below 0.05), temporal 0.5 (the default);
* dtSSD / MAD with temporal 0.5 and 0 on a static noisy clip and a moving clip
  (``videomama.eval.synthetic.make_clip``);
* a 10-px pole with a 16-px mask in a 1920x1080 frame: lowest alpha on the pole and highest
  beside it (2 px away from its edges); a 12-px strip in a 40x3000 frame: mean alpha on and off.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _baseline import DEFAULT_REV, load_refine  # noqa: E402
from refine_scenes import ghost_pixels, moving_disc, pole, pole_figures  # noqa: E402

import videomama.imaging.refine as new  # noqa: E402
from videomama.eval.metrics import compute_all  # noqa: E402
from videomama.eval.synthetic import coarse_mask, make_clip  # noqa: E402


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-rev", default=DEFAULT_REV)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    old = load_refine(args.base_rev)
    versions = {f"old ({args.base_rev})": old, "new": new}

    frames, truth = moving_disc(8, 540, 960, radius=60.0, speed=7.0)
    masks = coarse_mask(truth)
    band_px = new.band_pixels(540, 960)
    print(f"## moving disc 960x540, 8 frames, 7 px/frame, band {band_px} px\n")
    print("| refiner | far from mask (share of band px) | far px | trail px / frame | dtSSD | MAD |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, mod in versions.items():
        on = mod.refine_clip(frames, masks, temporal=0.5)
        alone = mod.refine_clip(frames, masks, temporal=0.0)
        g = ghost_pixels(on, truth, masks, band_px, alone)
        m = compute_all(on, truth, metrics=("MAD", "dtSSD"))
        print(f"| {name} | {g['far_fraction']:.4%} | {g['far_px']:.0f} | {g['trail_px_per_frame']:.0f} "
              f"| {m['dtSSD']:.3f} | {m['MAD']:.2f} |")

    print("\n## synthetic clips (make_clip), dtSSD and MAD, temporal 0.5 (0)\n")
    print("| clip | refiner | dtSSD | dtSSD temporal 0 | MAD |")
    print("| --- | --- | --- | --- | --- |")
    clips = {"static, noise 0.02, 224x160": make_clip(8, 160, 224, seed=3, speed=0.0, noise=0.02),
             "moving (speed 2.5: centre up to 9 px/frame, shutter 0.8), 224x160": make_clip(8, 160, 224, seed=5, speed=2.5, noise=0.01)}
    for cname, clip in clips.items():
        cm = coarse_mask(clip.alpha)
        for name, mod in versions.items():
            on = compute_all(mod.refine_clip(clip.frames, cm, temporal=0.5), clip.alpha, metrics=("MAD", "dtSSD"))
            off = compute_all(mod.refine_clip(clip.frames, cm, temporal=0.0), clip.alpha, metrics=("dtSSD",))
            print(f"| {cname} | {name} | {on['dtSSD']:.3f} | {off['dtSSD']:.3f} | {on['MAD']:.2f} |")

    print("\n## thin structures\n")
    print("| case | refiner | on the subject | beside it | warning logged |")
    print("| --- | --- | --- | --- | --- |")
    frame, ptruth, pmask = pole(1080, 1920, 10, 16)
    strip = [x.transpose(0, 1) if x.ndim == 3 else x.t() for x in pole(3000, 40, 12, 16)]
    for name, mod in versions.items():
        for case, (f, t, m) in (("pole 10 px, mask 16 px, 1920x1080 (min on / max beside)", (frame, ptruth, pmask)),
                                ("strip 12 px, mask 16 px, 3000x40 (mean on / mean off)", tuple(strip))):
            handler = _Count()
            logging.getLogger(mod.__name__).setLevel(logging.WARNING)
            logging.getLogger(mod.__name__).addHandler(handler)
            a = mod.refine_clip(f[None], m[None])[0]
            logging.getLogger(mod.__name__).removeHandler(handler)
            if case.startswith("pole"):
                on, off = pole_figures(a, t)
            else:
                on, off = a[t > 0.5].mean().item(), a[t < 0.5].mean().item()
            print(f"| {case} | {name} | {on:.3f} | {off:.3f} | {'yes' if handler.messages else 'no'} |")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    raise SystemExit(main())
