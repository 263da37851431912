"""One window reproduces the authors' single-step pipeline (VideoInferencePipeline.run).

How the comparison was established: ``reference_run`` below restates, step by step and in our
own words, what the official ``run()`` (pipeline_svd_mask.py, github.com/cvlab-kaist/VideoMaMa)
does for one call: frames and masks scaled to [-1, 1] with masks repeated to 3 channels; one
batched VAE encode of all frames; latents multiplied by and divided again by the scaling
factor; noise from ``torch.randn`` of shape (1, T, 4, h, w) with a generator seeded on the
device; the UNet on ``cat([noise, frame latents, mask latents], dim=2)`` at integer timestep 1
with zero encoder states of shape (1, 1, cross_dim) and time ids [7, 127, 0]; decode in chunks
of 8 after dividing by the scaling factor; alpha = channel mean of clamp(x / 2 + 0.5). The one
change is the posterior mean instead of a sample (the official sample uses the global RNG, so
it cannot be reproduced). In addition, the official class itself was run once outside this
repository with the same tiny random weights (its CLIP encoder replaced by a tiny random one,
whose output it zeroes anyway): max |alpha difference| against our ``matte_clip`` was recorded
in the issue's closing note. Nothing of the official code is vendored here.

The residual (about 5e-5 with these random weights) is float re-association: the reference,
like the official code, feeds the VAE channels-last views of the frames, so the convolutions
pick other kernels; random weights amplify such ulp-level differences far more than trained
ones do.
"""

from __future__ import annotations

import pytest
import torch
from standins import smooth_clip

from videomama.options import MatteOptions
from videomama.pipeline.matte import matte_clip


@torch.no_grad()
def reference_run(unet, vae, frames: torch.Tensor, masks: torch.Tensor, seed: int) -> torch.Tensor:
    """frames (T, H, W, 3) in [0, 1], masks (T, H, W) in {0, 1} -> alpha (T, H, W)."""
    device = torch.device("cpu")
    cond = frames.permute(0, 3, 1, 2)[None] * 2.0 - 1.0  # (1, T, 3, H, W)
    mask = masks[:, None].repeat(1, 3, 1, 1)[None] * 2.0 - 1.0
    scale = vae.config.scaling_factor

    def to_latent(video):
        t = video.shape[1]
        flat = video.flatten(0, 1)
        lat = vae.encode(flat).latent_dist.mean  # the official run samples; the mean is reproducible
        return (lat.reshape(1, t, *lat.shape[1:]) * scale) / scale

    cond_lat, mask_lat = to_latent(cond), to_latent(mask)
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn(cond_lat.shape, generator=gen, device=device, dtype=cond_lat.dtype)
    timesteps = torch.full((1,), 1.0, device=device, dtype=torch.long)
    time_ids = torch.tensor([[7, 127, 0.0]], dtype=cond_lat.dtype)
    context = torch.zeros(1, 1, unet.config.cross_attention_dim)
    pred = unet(torch.cat([noise, cond_lat, mask_lat], dim=2), timesteps, context, added_time_ids=time_ids).sample
    pred = pred[0] / scale
    chunks = [vae.decode(pred[i : i + 8], num_frames=pred[i : i + 8].shape[0]).sample for i in range(0, len(pred), 8)]
    video = torch.cat(chunks)
    return (video / 2.0 + 0.5).clamp(0, 1).mean(dim=1)


@pytest.mark.parametrize("num_frames,seed", [(8, 42), (12, 7), (16, 42)])
def test_one_window_matches_the_official_single_step(tiny_unet, tiny_vae, tiny_model, num_frames, seed):
    frames, masks = smooth_clip(num_frames, 64, 128)
    frames = (frames * 255).round() / 255  # the official CLI reads 8-bit images
    expected = reference_run(tiny_unet, tiny_vae, frames, masks, seed)
    ours = matte_clip(tiny_model, frames, masks, MatteOptions(resolution=128, window=16, seed=seed, posterior="mean"))
    err = float((ours - expected).abs().max())
    print(f"T={num_frames} seed={seed}: max |alpha - official| = {err:.2e}")
    assert err <= 1e-4
    # The comparison is sensitive: another seed moves alpha far beyond the tolerance.
    other = reference_run(tiny_unet, tiny_vae, frames, masks, seed + 1)
    assert float((other - expected).abs().max()) > 1e-2
