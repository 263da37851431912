"""Shots on disk for the batch tests: PNG frame and mask folders, manifests, reading alpha folders back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from standins import smooth_clip

from videomama.options import MatteOptions
from videomama.shots import ShotSettings, load_engine, matte_shot

ROOT = Path(__file__).resolve().parents[1]

# Small enough for 2 CI cores, large enough for several windows per shot: 48x80 frames at the
# model's smallest size, windows of 4 frames sharing 1.
SIZE = (48, 80)
MATTE_ARGS = ("--resolution", "64", "--window", "4", "--overlap", "1")
OPTIONS = MatteOptions(resolution=64, window=4, overlap=1)


@contextmanager
def torch_threads(n: int):
    """CPU results depend on torch's thread count at the float-rounding level (random tiny weights
    amplify it): references run with the workers' count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cli(*args, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "videomama", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def reference(root: Path, entry: dict, settings: ShotSettings, options: MatteOptions = OPTIONS) -> Path:
    """What `matte --out REF/<name>` writes for this shot (one torch thread, as the CLI runs below)."""
    out = root / "ref" / f"{entry['name']}-{'vm' if settings.unet else 'wf'}"
    if not (out / "alpha").is_dir():
        with torch_threads(1):
            matte_shot(root / entry["frames"], root / entry["masks"], out, options, load_engine(settings))
    return out / "alpha"


def tiny_weights(layouts: dict) -> ShotSettings:
    """Batch settings with the tiny random-weight UNet and VAE files, fp32 on the CPU."""
    return ShotSettings(unet=str(layouts["unet_file"]), vae=str(layouts["vae_file_sgm"]), precision="fp32", device="cpu")


def write_shots(root: Path, lengths: dict[str, int]) -> dict[str, dict]:
    """Shots of the given lengths (seeded by their order); their manifest entries by name."""
    return {name: write_shot(root, name, frames, seed=k + 1) for k, (name, frames) in enumerate(lengths.items())}


def write_shot(root: Path, name: str, frames: int, seed: int) -> dict:
    """A shot's frames/ and masks/ folders under ``root/shots/name``; returns its manifest entry."""
    images, masks = smooth_clip(frames, *SIZE, seed=seed)
    base = root / "shots" / name
    for sub, data, mode in (("frames", images, "RGB"), ("masks", masks, "L")):
        (base / sub).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(data):
            Image.fromarray((img.numpy() * 255).round().astype(np.uint8)).convert(mode).save(base / sub / f"f{i}.png")
    return {"name": name, "frames": f"shots/{name}/frames", "masks": f"shots/{name}/masks"}


def write_manifest(root: Path, entries: list[dict], name: str = "manifest.json") -> Path:
    path = root / name
    path.write_text(json.dumps(entries, indent=1))
    return path


def read_alpha(folder: Path) -> tuple[list[str], np.ndarray]:
    """File names and uint16 values of an alpha folder."""
    files = sorted(folder.iterdir())
    return [f.name for f in files], np.stack([np.asarray(Image.open(f)) for f in files]).astype(np.int64)


def max_step_diff(a: Path, b: Path) -> int:
    """Largest difference between two alpha folders in 16-bit steps (1/65535); they must hold the same files."""
    names_a, values_a = read_alpha(a)
    names_b, values_b = read_alpha(b)
    assert names_a == names_b, (names_a, names_b)
    return int(np.abs(values_a - values_b).max())
