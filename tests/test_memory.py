"""Peak memory is bounded by the window, not the clip (16 vs 256 frames, real tiny model)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("memory_probe.py")


def _peak_mib(frames: int) -> float:
    out = subprocess.run(
        [sys.executable, str(PROBE), str(frames), "64", "64"], capture_output=True, text=True, timeout=600, check=True
    ).stdout
    return float(re.search(r"peak_rss_mib=([\d.]+)", out).group(1))


def test_peak_rss_flat_in_clip_length():
    short, long = _peak_mib(16), _peak_mib(256)
    print(f"peak RSS: 16 frames {short:.1f} MiB, 256 frames {long:.1f} MiB ({(long / short - 1) * 100:+.1f}%)")
    assert long <= short * 1.10
