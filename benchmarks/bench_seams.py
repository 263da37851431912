"""What ``--overlap`` costs and buys: UNet frames per shot against the seam ratio at window boundaries.

Cost is exact arithmetic on the window layout (``videomama.pipeline.schedule.split_windows``):
every window is full length, so a shot of T frames runs ``windows * window`` frames through the
UNet and the decoder (the VAE encodes each frame once whatever the overlap).

Buys: the seam ratio of ``python -m videomama evaluate`` (``videomama.eval.seams``) on a clip
matted by the stand-in model of the tests (``tests/standins.PerFrameModel``) whose windows
disagree by a window-wide term (``window_gain``), as temporal attention makes real windows do.
The stand-in fixes the size of the disagreement, so the figures show how much the cross-fade
hides a given disagreement; how large it is on real footage is what ``evaluate`` tells on a shot.

Command::

    OMP_NUM_THREADS=1 python benchmarks/bench_seams.py [--frames 60] [--window 16] [--long 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    import torch
    from standins import PerFrameModel, smooth_clip

    from videomama.eval.seams import frame_steps, seams_of_steps
    from videomama.options import MatteOptions
    from videomama.pipeline.matte import matte_clip
    from videomama.pipeline.schedule import split_windows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames of the stand-in clip")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--long", type=int, default=1000, help="a long shot's length, for the cost column")
    parser.add_argument("--overlaps", default="0,2,4,8")
    args = parser.parse_args()

    frames, masks = smooth_clip(args.frames)
    print(f"window {args.window}; seam ratio on a {args.frames}-frame stand-in clip; cost on a {args.long}-frame shot")
    print(f"{'overlap':>7}  {'UNet frames':>11}  {'cost':>5}  {'seam worst':>10}  {'seam mean':>9}")
    base = len(split_windows(args.long, args.window, 0)) * args.window
    for overlap in (int(x) for x in args.overlaps.split(",")):
        model = PerFrameModel(noise_gain=0.0, window_gain=0.2)
        opts = MatteOptions(resolution=96, window=args.window, overlap=overlap, posterior="mean")
        alpha = matte_clip(model, frames, torch.zeros_like(masks), opts)
        report = seams_of_steps(frame_steps(list(alpha.numpy())), args.window, overlap)
        unet = len(split_windows(args.long, args.window, overlap)) * args.window
        print(f"{overlap:>7}  {unet:>11}  {unet / base:>4.2f}x  {report.worst:>10.2f}  {report.mean:>9.2f}")


if __name__ == "__main__":
    main()
