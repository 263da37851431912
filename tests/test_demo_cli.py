"""`python -m videomama demo` and `evaluate` in a subprocess, as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
METRIC_ROW = re.compile(r"^(?P<name>.+?)\s+(?P<vals>(?:[-+0-9.e]+|n/a)(?:\s+(?:[-+0-9.e]+|n/a)){4})\s*$")


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "videomama", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def parse_table(text: str) -> dict[str, list[float]]:
    rows = {}
    for line in text.splitlines():
        m = METRIC_ROW.match(line.strip())
        if m and not line.startswith(("matte", "region")):
            rows[m["name"].strip()] = [float("nan") if v == "n/a" else float(v) for v in m["vals"].split()]
    return rows


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--out", out, "--frames", "4", "--size", "256x160")
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_demo_writes_every_folder_and_prints_metrics(demo_dir):
    out, stdout = demo_dir
    for name in ("frames", "masks", "alpha", "gt_alpha", "composite"):
        files = sorted((out / name).glob("*.png"))
        assert [f.name for f in files] == [f"{i:05d}.png" for i in range(4)], name
    with Image.open(out / "alpha" / "00002.png") as im:
        assert im.mode.startswith("I") and im.size == (256, 160)  # 16-bit grey
        a = np.asarray(im)
    assert a.dtype == np.uint16 and 0 < np.mean((a > 0) & (a < 65535)) < 0.5  # a soft matte
    with Image.open(out / "composite" / "00000.png") as im:
        assert im.mode == "RGB" and im.size == (256, 160)
    rows = parse_table(stdout)
    assert set(rows) == {"coarse mask", "refined (weight-free)"}, stdout
    coarse, refined = rows["coarse mask"], rows["refined (weight-free)"]
    assert refined[0] < 0.85 * coarse[0]  # MAD
    assert refined[2] < 0.6 * coarse[2]  # Grad


def test_evaluate_reads_the_demo_output(demo_dir, tmp_path):
    out, stdout = demo_dir
    proc = run_cli("evaluate", "--pred", out / "alpha", "--gt", out / "gt_alpha")
    assert proc.returncode == 0, proc.stderr
    rows = parse_table(proc.stdout)
    demo_refined = parse_table(stdout)["refined (weight-free)"]
    # The same matte, through 16-bit PNGs: the same MAD to the printed precision.
    assert rows["whole frame"][0] == pytest.approx(demo_refined[0], rel=2e-3)

    # A trimap (0 / 128 / 255) adds the unknown-region row.
    tri_dir = tmp_path / "trimap"
    tri_dir.mkdir()
    for f in sorted((out / "gt_alpha").glob("*.png")):
        g = np.asarray(Image.open(f)).astype(np.float64) / 65535
        tri = np.where(g <= 0.0, 0, np.where(g >= 1.0, 255, 128)).astype(np.uint8)
        Image.fromarray(tri, mode="L").save(tri_dir / f.name)
    proc = run_cli("evaluate", "--pred", out / "masks", "--gt", out / "gt_alpha", "--trimap", tri_dir)
    assert proc.returncode == 0, proc.stderr
    rows = parse_table(proc.stdout)
    assert set(rows) == {"whole frame", "unknown region"}
    # Errors concentrate in the unknown region: its mean error is far above the whole frame's.
    assert rows["unknown region"][0] > 3 * rows["whole frame"][0]


def test_evaluate_refuses_mismatched_sets_with_one_line(demo_dir, tmp_path):
    out, _ = demo_dir
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in sorted((out / "alpha").glob("*.png"))[:3]:
        (partial / f.name).write_bytes(f.read_bytes())
    proc = run_cli("evaluate", "--pred", partial, "--gt", out / "gt_alpha")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "3 images but gt has 4" in lines[0], proc.stderr
    assert proc.stdout == ""


def test_demo_rejects_a_bad_size(tmp_path):
    proc = run_cli("demo", "--out", tmp_path, "--size", "big")
    assert proc.returncode != 0
    assert "--size" in proc.stderr and "640x360" in proc.stderr
