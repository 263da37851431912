"""Score the weight-free refiner on real photographs with ground-truth alpha.

    python benchmarks/build_real_eval.py --data /work/data/matting --out /work/data/matting_eval
    python benchmarks/eval_refiner.py --set /work/data/matting_eval                # all conditions
    python benchmarks/eval_refiner.py --set /work/data/matting_eval --conditions down8 --per-image

Methods (``--methods``, comma-separated):

* ``mask``: the coarse mask itself;
* ``cf_band``: closed-form matting (Levin et al.; pymatting's ``estimate_alpha_cf``) with the
  trimap "mask eroded / dilated by ``--cf-band`` px" (12 by default): the classic baseline.
  Needs ``pip install pymatting`` (benchmark only); results are cached under SET/cache/;
* ``base``: the refiner of git revision ``--base-rev`` (default: main before this work);
* ``ours``: ``videomama.imaging.refine.refine_clip`` of this checkout, default settings, or the
  ``--param KEY=VALUE`` ones.

MAD and Grad (videomama.eval.metrics, whole frame) per image, then means over the tuning part,
the held-out part and everything (``split.json`` of the set), plus how many images each
method improves over the mask and its worst image (MAD relative to the mask's).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from videomama.eval.metrics import compute_all
from videomama.imaging.filters import dilate, erode
from videomama.imaging.refine import refine_clip

log = logging.getLogger("eval_refiner")


def load_image(path: Path, gray: bool) -> np.ndarray:
    """An 8-bit image of the set as float32 in [0, 1]: (H, W) if ``gray``, else (H, W, 3)."""
    im = Image.open(path)
    arr = np.asarray(im.convert("L") if gray else im.convert("RGB"), dtype=np.float32) / 255.0
    return arr


def set_refiner_constants(items: list[str]) -> None:
    """Apply ``NAME=VALUE`` items (JSON values) to the refiner's module constants (tuning)."""
    import videomama.imaging.refine as refine_module
    import videomama.imaging.refine_frame as frame_module

    for name, value in _parse_params(items).items():
        owners = [m for m in (refine_module, frame_module) if hasattr(m, name)]
        if not owners:
            raise SystemExit(f"videomama.imaging.refine / videomama.imaging.refine_frame have no constant {name}")
        setattr(owners[0], name, value)


def cf_band(image: np.ndarray, mask: np.ndarray, band: int, cache: Path) -> np.ndarray:
    if cache.exists():
        return load_image(cache, gray=True)
    from pymatting import estimate_alpha_cf

    m = torch.from_numpy(mask)[None, None]
    fg = erode(m, band)[0, 0].numpy()
    bg = 1.0 - dilate(m, band)[0, 0].numpy()
    trimap = np.full(mask.shape, 0.5)
    trimap[fg > 0] = 1.0
    trimap[bg > 0] = 0.0
    alpha = estimate_alpha_cf(image.astype(np.float64), trimap).clip(0, 1)
    cache.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((alpha * 255).round().astype(np.uint8)).save(cache)
    return alpha.astype(np.float32)


def _parse_params(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 1000 else f"{v:.0f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", required=True, help="folder written by build_real_eval.py")
    p.add_argument("--conditions", default="down8,dilate,erode,polygon")
    p.add_argument("--methods", default="mask,cf_band,base,ours")
    p.add_argument("--cf-band", type=int, default=12, help="half-width in px of the closed-form baseline's band")
    p.add_argument("--base-rev", default=None, help="git revision of the 'base' refiner (default: see _baseline.py)")
    p.add_argument("--param", action="append", default=[], help="KEY=VALUE passed to refine_clip for 'ours'")
    p.add_argument("--const", action="append", default=[], help="NAME=VALUE: set a videomama.imaging.refine constant (tuning)")
    p.add_argument("--part", choices=("all", "tune", "heldout"), default="all", help="evaluate only this part")
    p.add_argument("--only", default="", help="comma-separated substrings: evaluate only matching images")
    p.add_argument("--per-image", action="store_true", help="print the per-image table of every condition")
    p.add_argument("--json", help="write all figures here")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.set)
    split = json.loads((root / "split.json").read_text())
    part_of = {k: part for part, keys in split.items() for k in keys}
    keys = sorted(part_of)
    if args.part != "all":
        keys = [k for k in keys if part_of[k] == args.part]
    if args.only:
        keys = [k for k in keys if any(s in k for s in args.only.split(","))]
    methods = [m for m in args.methods.split(",") if m]
    params = _parse_params(args.param)
    set_refiner_constants(args.const)
    base = None
    if "base" in methods:
        from _baseline import DEFAULT_REV, load_refine

        base = load_refine(args.base_rev or DEFAULT_REV)
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    seconds = {m: 0.0 for m in methods}
    for cond in [c for c in args.conditions.split(",") if c]:
        results[cond] = {}
        for key in keys:
            image = load_image(root / "image" / f"{key}.png", gray=False)
            truth = load_image(root / "alpha" / f"{key}.png", gray=True)
            mask = (load_image(root / "mask" / cond / f"{key}.png", gray=True) >= 0.5).astype(np.float32)
            row: dict[str, dict[str, float]] = {}
            for m in methods:
                t0 = time.perf_counter()
                if m == "mask":
                    pred = mask
                elif m == "cf_band":
                    pred = cf_band(image, mask, args.cf_band, root / "cache" / f"cf_band{args.cf_band}" / cond / f"{key}.png")
                elif m == "base":
                    pred = base.refine_clip(image[None], mask[None])[0].numpy()
                elif m == "ours":
                    pred = refine_clip(image[None], mask[None], **params)[0].numpy()
                else:
                    raise SystemExit(f"unknown method {m}")
                seconds[m] += time.perf_counter() - t0
                row[m] = compute_all(pred, truth, metrics=("MAD", "Grad"))
            results[cond][key] = row
            log.info("%s %s %s", cond, key, "  ".join(f"{m} {row[m]['MAD']:.1f}/{row[m]['Grad']:.1f}" for m in methods))
    _print_tables(results, methods, part_of, args.per_image)
    log.info("seconds per method (all images, all conditions): %s",
             ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"params": params, "results": results}, indent=1))
    return 0


def _print_tables(results, methods, part_of, per_image: bool) -> None:
    for cond, rows in results.items():
        keys = list(rows)
        print(f"\n### condition `{cond}` ({len(keys)} images: "
              f"{sum(part_of[k] == 'tune' for k in keys)} tune, {sum(part_of[k] == 'heldout' for k in keys)} held out)\n")
        print("| method | MAD tune | MAD held-out | MAD all | Grad tune | Grad held-out | Grad all "
              "| MAD / mask (all) | images with MAD < mask | worst MAD / mask | images with Grad < mask |")
        print("| --- |" + " --- |" * 10)
        for m in methods:
            def mean(metric, part, m=m, rows=rows, keys=keys):
                vals = [rows[k][m][metric] for k in keys if part in (None, part_of[k])]
                return float(np.mean(vals)) if vals else float("nan")
            mad_ratio = [rows[k][m]["MAD"] / max(rows[k]["mask"]["MAD"], 1e-9) for k in keys] if "mask" in methods else []
            better = sum(r < 1.0 for r in mad_ratio)
            gbetter = sum(rows[k][m]["Grad"] < rows[k]["mask"]["Grad"] for k in keys) if "mask" in methods else 0
            ratio_all = mean("MAD", None) / mean_mask if (mean_mask := (np.mean([rows[k]["mask"]["MAD"] for k in keys]) if "mask" in methods else float("nan"))) else float("nan")
            print(f"| {m} | {_fmt(mean('MAD', 'tune'))} | {_fmt(mean('MAD', 'heldout'))} | {_fmt(mean('MAD', None))} "
                  f"| {_fmt(mean('Grad', 'tune'))} | {_fmt(mean('Grad', 'heldout'))} | {_fmt(mean('Grad', None))} "
                  f"| {ratio_all:.3f} | {better}/{len(keys)} | {max(mad_ratio) if mad_ratio else float('nan'):.3f} "
                  f"| {gbetter}/{len(keys)} |")
        if per_image:
            print("\n| image | part | " + " | ".join(f"{m} MAD | {m} Grad" for m in methods) + " |")
            print("| --- | --- |" + " --- | --- |" * len(methods))
            for k in keys:
                print(f"| {k} | {part_of[k]} | " + " | ".join(
                    f"{_fmt(rows[k][m]['MAD'])} | {_fmt(rows[k][m]['Grad'])}" for m in methods) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
