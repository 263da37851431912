"""Build the coarse-mask conditions of the real-photo refiner evaluation from a local folder.

    python benchmarks/build_real_eval.py --data /work/data/matting --out /work/data/matting_eval

``--data`` holds one folder per source, each with ``image/NAME.png`` (RGB) and
``alpha/NAME.png`` (ground-truth alpha); see BENCHMARKS.md for the sources we use. The data
stays outside the repository (its licences do not allow redistribution). For every image the
script writes, under ``--out``:

* ``image/SOURCE__NAME.png``, ``alpha/SOURCE__NAME.png``: copies (8-bit);
* ``mask/CONDITION/SOURCE__NAME.png``: the coarse masks, one folder per condition:
  - ``down8``: the paper's "downsample 8x": alpha thresholded at 0.5, area-shrunk 8x, scaled
    back bilinearly, thresholded at 0.5 (``videomama.eval.synthetic.coarse_mask``);
  - ``dilate`` / ``erode``: the thresholded alpha grown / shrunk by 1.5 % of the long side;
  - ``polygon``: each outer contour of the thresholded alpha replaced by a polygon whose
    vertices lie within 1.5 % of the long side of it (Douglas-Peucker), holes kept the same
    way; needs scikit-image (``pip install scikit-image``);
* ``split.json``: which images are for tuning and which are held out (fixed: the first half
  of every source, by name, tunes; the rest is held out).

Nothing is random, so the set is the same on every machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videomama.eval.synthetic import coarse_mask
from videomama.imaging.filters import dilate, erode

log = logging.getLogger("build_real_eval")
CONDITIONS = ("down8", "dilate", "erode", "polygon")
MORPH_FRACTION = 0.015  # dilation/erosion radius and polygon tolerance, fraction of the long side


def _read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _read_alpha(path: Path) -> np.ndarray:
    """8-bit alpha; an RGB(A) ground truth is reduced to its first channel (they are equal)."""
    im = Image.open(path)
    if im.mode in ("I;16", "I"):
        return (np.asarray(im, dtype=np.float64) / 65535.0 * 255.0).round().astype(np.uint8)
    return np.asarray(im.convert("RGB"))[..., 0] if im.mode not in ("L",) else np.asarray(im)


def polygon_mask(binary: np.ndarray, tolerance: float) -> np.ndarray:
    """Each contour of a {0, 1} mask replaced by a Douglas-Peucker polygon; nested contours are
    combined even-odd (exclusive or), so holes stay holes."""
    try:
        from skimage.measure import approximate_polygon, find_contours
    except ImportError as exc:  # pragma: no cover - optional benchmark dependency
        raise SystemExit("the polygon condition needs scikit-image: pip install scikit-image") from exc
    h, w = binary.shape
    padded = np.pad(binary.astype(np.float64), 1)  # closed contours at the border too
    out = np.zeros((h, w), dtype=bool)
    for c in find_contours(padded, 0.5):
        poly = approximate_polygon(c, tolerance) - 1.0  # undo the padding
        if len(poly) < 3:
            continue
        canvas = Image.new("1", (w, h), 0)
        ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for y, x in poly], fill=1)
        out ^= np.asarray(canvas, dtype=bool)
    return out.astype(np.float32)


def conditions_for(alpha: np.ndarray) -> dict[str, np.ndarray]:
    h, w = alpha.shape
    a = torch.from_numpy(alpha.astype(np.float32) / 255.0)
    binary = (a >= 0.5).float()
    r = max(2, round(MORPH_FRACTION * max(h, w)))
    return {
        "down8": coarse_mask(a, factor=8).numpy(),
        "dilate": dilate(binary[None, None], r)[0, 0].numpy(),
        "erode": erode(binary[None, None], r)[0, 0].numpy(),
        "polygon": polygon_mask(binary.numpy(), float(r)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder with SOURCE/image/*.png and SOURCE/alpha/*.png")
    p.add_argument("--out", required=True, help="where to write the evaluation set")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated (default: all)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, out = Path(args.data), Path(args.out)
    wanted = [c for c in args.conditions.split(",") if c]
    bad = [c for c in wanted if c not in CONDITIONS]
    if bad:
        raise SystemExit(f"unknown condition(s) {bad}; choose from {list(CONDITIONS)}")
    sources = sorted(d for d in data.iterdir() if (d / "image").is_dir() and (d / "alpha").is_dir())
    if not sources:
        raise SystemExit(f"{data} has no SOURCE/image + SOURCE/alpha folders")
    for sub in ["image", "alpha", *(f"mask/{c}" for c in wanted)]:
        (out / sub).mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"tune": [], "heldout": []}
    for src in sources:
        names = sorted(p.stem for p in (src / "image").glob("*.png"))
        for k, name in enumerate(names):
            key = f"{src.name}__{name}"
            rgb = _read_rgb(src / "image" / f"{name}.png")
            alpha = _read_alpha(src / "alpha" / f"{name}.png")
            if alpha.shape != rgb.shape[:2]:
                raise SystemExit(f"{src.name}/{name}: alpha {alpha.shape} does not match image {rgb.shape[:2]}")
            Image.fromarray(rgb).save(out / "image" / f"{key}.png")
            Image.fromarray(alpha).save(out / "alpha" / f"{key}.png")
            masks = conditions_for(alpha)
            for c in wanted:
                Image.fromarray((masks[c] * 255).astype(np.uint8)).save(out / "mask" / c / f"{key}.png")
            split["tune" if k < (len(names) + 1) // 2 else "heldout"].append(key)
            log.info("%s %dx%d", key, rgb.shape[1], rgb.shape[0])
    (out / "split.json").write_text(json.dumps(split, indent=1))
    log.info("%d images (%d tune, %d held out), conditions %s -> %s",
             len(split["tune"]) + len(split["heldout"]), len(split["tune"]), len(split["heldout"]), wanted, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
