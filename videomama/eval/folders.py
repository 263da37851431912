"""Evaluating folders of mattes against ground truth (the ``evaluate`` command), frame by frame."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ..errors import InputError
from ..io.frames import list_images, read_matte
from .metrics import MetricAccumulator, unknown_region

log = logging.getLogger(__name__)

__all__ = ["evaluate_dirs", "format_table"]


def _list_images(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{what} folder {folder} does not exist or is not a folder; give a folder of images.")
    files = list_images(folder)
    if not files:
        raise InputError(f"{what} folder {folder} has no images (.png, .jpg, .tif ...); check the path.")
    return files


def _check_same_set(a: list[Path], b: list[Path], what_a: str, what_b: str) -> None:
    if len(a) != len(b):
        raise InputError(
            f"{what_a} has {len(a)} images but {what_b} has {len(b)}; give one {what_a} image per {what_b} image "
            "with the same names."
        )
    names_a = [p.stem for p in a]
    names_b = [p.stem for p in b]
    if names_a != names_b:
        for x, y in zip(names_a, names_b):
            if x != y:
                break
        raise InputError(
            f"{what_a} and {what_b} images do not pair up by name ({x!r} vs {y!r}); "
            "give both folders the same file names (extensions may differ)."
        )


def evaluate_dirs(
    pred_dir: str | Path, gt_dir: str | Path, trimap_dir: str | Path | None = None
) -> dict[str, dict[str, float]]:
    """Evaluate a folder of predicted mattes against a folder of true ones.

    Files pair up by name (natural sort; extensions may differ); every pair must have the same
    size. Returns {region: {metric: value}} with region "whole frame" and, when ``trimap_dir``
    is given, "unknown region" (trimap values strictly between 0 and 1). Frames are read one at
    a time, so memory does not grow with the clip length. Raises InputError on mismatched sets.
    """
    pred_files = _list_images(Path(pred_dir), "pred")
    gt_files = _list_images(Path(gt_dir), "gt")
    _check_same_set(pred_files, gt_files, "pred", "gt")
    tri_files = None
    if trimap_dir is not None:
        tri_files = _list_images(Path(trimap_dir), "trimap")
        _check_same_set(tri_files, gt_files, "trimap", "gt")
    whole = MetricAccumulator()
    unknown = MetricAccumulator() if tri_files is not None else None
    for i, (pf, gf) in enumerate(zip(pred_files, gt_files)):
        p = read_matte(pf)
        g = read_matte(gf)
        if p.shape != g.shape:
            raise InputError(
                f"{pf.name} is {p.shape[1]}x{p.shape[0]} but {gf.name} in gt is {g.shape[1]}x{g.shape[0]}; "
                "give predictions at the size of the ground truth."
            )
        whole.add(p, g)
        if unknown is not None and tri_files is not None:
            tri = read_matte(tri_files[i])
            if tri.shape != g.shape:
                raise InputError(
                    f"trimap {tri_files[i].name} is {tri.shape[1]}x{tri.shape[0]} but gt is {g.shape[1]}x{g.shape[0]}; "
                    "give trimaps at the size of the ground truth."
                )
            unknown.add(p, g, unknown_region(tri))
        log.debug("evaluated %s", pf.name)
    table = {"whole frame": whole.result()}
    if unknown is not None:
        table["unknown region"] = unknown.result()
    return table


def format_table(table: dict[str, dict[str, float]], row_header: str = "region") -> str:
    """A plain-text table: one row per entry of ``table``, one column per metric."""
    metrics: list[str] = []
    for row in table.values():
        metrics += [m for m in row if m not in metrics]
    width0 = max([len(row_header)] + [len(k) for k in table])
    cols = [max(len(m), 10) for m in metrics]
    lines = [f"{row_header:<{width0}}  " + "  ".join(f"{m:>{c}}" for m, c in zip(metrics, cols))]
    lines.append("-" * len(lines[0]))
    for name, row in table.items():
        cells = []
        for m, c in zip(metrics, cols):
            v = row.get(m, math.nan)
            cells.append(f"{v:>{c}.4g}" if not math.isnan(v) else f"{'n/a':>{c}}")
        lines.append(f"{name:<{width0}}  " + "  ".join(cells))
    return "\n".join(lines)
