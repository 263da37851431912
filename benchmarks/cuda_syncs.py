"""Host syncs and copies a GPU run would pay, counted on fake CUDA tensors (no GPU needed).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cuda_syncs.py

Prints one table: host syncs and blocking host->device copies per window of ``iter_matte``
(tiny random model, CPU frames, and frames already on the GPU), host syncs per frame of the
weight-free refiner, and the largest ``scaled_dot_product_attention`` batch (sequences x heads)
of one UNet step at 2048x2048. Counters: tests/fake_cuda.py.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_cuda import fake_cuda  # noqa: E402

from videomama.imaging.refine import iter_refine  # noqa: E402
from videomama.options import MatteOptions  # noqa: E402
from videomama.pipeline.matte import iter_matte  # noqa: E402
from videomama.weights.configs import build_random_model  # noqa: E402

FRAMES, WINDOW, OVERLAP = 10, 4, 1  # 3 windows


def _clip(n: int, h: int = 64, w: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, h, w, 3, generator=g), (torch.rand(n, h, w, generator=g) > 0.5).float()


def pipeline_counts(model: torch.nn.Module, frames_on_gpu: bool) -> tuple[float, float]:
    frames, masks = _clip(FRAMES)
    options = MatteOptions(resolution=64, window=WINDOW, overlap=OVERLAP)
    with fake_cuda() as rec:
        fake = rec.fake(copy.deepcopy(model), "cuda")
        if frames_on_gpu:
            frames, masks = rec.fake(frames, "cuda"), rec.fake(masks, "cuda")
        rec.reset()
        n = sum(1 for _ in iter_matte(fake, frames, masks, options))
        assert n == FRAMES and rec.unfinished_reads == 0
    windows = 3
    return rec.syncs / windows, rec.h2d_blocking / windows


def refiner_syncs_per_frame(frames_on_gpu: bool) -> float:
    frames, masks = _clip(8, 96, 128)
    with fake_cuda() as rec:
        if frames_on_gpu:
            frames, masks = rec.fake(frames, "cuda"), rec.fake(masks, "cuda")
        rec.reset()
        n = sum(1 for _ in iter_refine(frames, masks, device="cuda", work_size=128))
    return rec.syncs / n


def largest_attention_batch(model: torch.nn.Module, side: int = 2048) -> int:
    latent = side // 8
    with fake_cuda() as rec, torch.no_grad():
        fake = rec.fake(copy.deepcopy(model), "cuda")
        z = torch.zeros(2, 4, latent, latent, device="cuda")
        rec.reset()
        fake.denoise(z, z, z)
    return max(rec.attention_batches)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    model = build_random_model()
    rows = []
    for on_gpu in (False, True):
        where = "GPU frames" if on_gpu else "CPU frames"
        try:
            syncs, blocking = (f"{v:.2f}" for v in pipeline_counts(model, on_gpu))
        except RuntimeError as exc:  # e.g. pinning frames that already live on the GPU
            syncs = blocking = f"crash: {str(exc).splitlines()[0][:60]}"
        rows.append((f"iter_matte host syncs per window ({where})", syncs))
        rows.append((f"iter_matte blocking H2D copies per window ({where})", blocking))
    for on_gpu in (False, True):
        rows.append((f"refiner host syncs per frame ({'GPU' if on_gpu else 'CPU'} frames)",
                     f"{refiner_syncs_per_frame(on_gpu):.2f}"))
    rows.append(("largest SDPA batch (sequences x heads), UNet step at 2048x2048",
                 f"{largest_attention_batch(model):,}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
