"""The weight-free refiner and the detail pass, measured on synthetic clips with a known alpha."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videomama.errors import Cancelled, InputError
from videomama.eval.metrics import compute_all
from videomama.eval.synthetic import SyntheticScene, coarse_mask, make_clip
from videomama.imaging.refine import band_pixels, detail_refine, refine_clip


@pytest.mark.parametrize(
    "size, seed, speed",
    [((256, 256), 1, 1.0), ((192, 320), 5, 2.5)],
    ids=["hair-256", "fast-motion-320"],
)
def test_refiner_beats_the_coarse_mask(size, seed, speed):
    """Coarse mask = true alpha thresholded at 0.5, shrunk 8x, grown back and thresholded."""
    clip = make_clip(4, *size, seed=seed, speed=speed)
    masks = coarse_mask(clip.alpha, factor=8)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    alpha = refine_clip(clip.frames, masks)
    assert alpha.dtype == torch.float32 and alpha.shape == clip.alpha.shape and alpha.device.type == "cpu"
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    base = compute_all(masks, clip.alpha, metrics=("MAD", "Grad"))
    ours = compute_all(alpha, clip.alpha, metrics=("MAD", "Grad"))
    print(
        f"\n{size[1]}x{size[0]} seed {seed} speed {speed}: coarse mask MAD {base['MAD']:.2f} Grad {base['Grad']:.3f}"
        f" -> refined MAD {ours['MAD']:.2f} Grad {ours['Grad']:.3f}"
    )
    assert ours["MAD"] < 0.8 * base["MAD"]
    assert ours["Grad"] < 0.5 * base["Grad"]


def test_temporal_smoothing_steadies_static_noisy_clip():
    # The subject stands still; only sensor noise (sd 0.02) changes between frames.
    clip = make_clip(6, 160, 224, seed=3, speed=0.0, noise=0.02)
    masks = coarse_mask(clip.alpha)
    off = refine_clip(clip.frames, masks, temporal=0.0)
    on = refine_clip(clip.frames, masks, temporal=0.5)
    m_off = compute_all(off, clip.alpha, metrics=("MAD", "dtSSD"))
    m_on = compute_all(on, clip.alpha, metrics=("MAD", "dtSSD"))
    print(f"\nstatic noisy clip dtSSD: temporal 0 -> {m_off['dtSSD']:.3f}, temporal 0.5 -> {m_on['dtSSD']:.3f}")
    assert m_on["dtSSD"] < 0.7 * m_off["dtSSD"]
    assert m_on["MAD"] < 1.02 * m_off["MAD"]
    # Frame 0 has no past: identical with or without smoothing.
    assert torch.equal(on[0], off[0])


def test_chunks_give_the_same_result_and_report_progress():
    clip = make_clip(5, 96, 128, seed=2)
    masks = coarse_mask(clip.alpha)
    seen: list[tuple[int, int]] = []
    one = refine_clip(clip.frames, masks, chunk=5)
    two = refine_clip(clip.frames, masks, chunk=2, progress=lambda d, t: seen.append((d, t)))
    assert torch.allclose(one, two, atol=1e-5)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(Cancelled):
        refine_clip(clip.frames, masks, should_cancel=lambda: True)


def test_lazy_frames_single_mask_and_resized_masks():
    scene = SyntheticScene(96, 128, 3, seed=4)  # frames rendered on access
    _, alpha0, _, _ = scene.render(0)
    mask = coarse_mask(alpha0[None])  # one mask for every frame
    out = refine_clip(scene, mask)
    assert out.shape == (3, 96, 128)
    small = F.interpolate(mask[None], size=(48, 64), mode="nearest")[0]  # half-size mask
    out_small = refine_clip(scene, small)
    assert (out_small - out).abs().mean() < 0.02


def test_solid_masks_stay_solid_and_inputs_are_checked():
    frames = torch.rand(2, 40, 50, 3, generator=torch.Generator().manual_seed(0))
    assert refine_clip(frames, torch.zeros(2, 40, 50)).abs().max() == 0
    assert refine_clip(frames, torch.ones(2, 40, 50)).min() == 1
    with pytest.raises(InputError, match="masks has 3 masks for 2 frames"):
        refine_clip(frames, torch.zeros(3, 40, 50))
    with pytest.raises(InputError, match="band="):
        refine_clip(frames, torch.zeros(2, 40, 50), band=0.7)
    with pytest.raises(InputError, match=r"frames\[0\] has shape"):
        refine_clip(torch.rand(2, 40, 50, 4), torch.zeros(2, 40, 50))
    assert band_pixels(1080, 1920) == 24 and band_pixels(100, 100) == 4


def test_detail_refine_restores_full_resolution_detail():
    clip = make_clip(3, 256, 256, seed=1)
    factor = 4
    small = F.interpolate(clip.alpha[:, None], size=(64, 64), mode="area")
    up = F.interpolate(small, size=(256, 256), mode="bilinear", align_corners=False)[:, 0]
    out = detail_refine(clip.frames, up, resolution=256 // factor)
    base = compute_all(up, clip.alpha, metrics=("MAD", "Grad"))
    ours = compute_all(out, clip.alpha, metrics=("MAD", "Grad"))
    print(
        f"\ndetail pass, alpha made at 1/{factor} size: upsampled MAD {base['MAD']:.2f} Grad {base['Grad']:.3f}"
        f" -> detail MAD {ours['MAD']:.2f} Grad {ours['Grad']:.3f}"
    )
    assert ours["MAD"] < 0.6 * base["MAD"]
    assert ours["Grad"] < 0.4 * base["Grad"]
    # Solid regions of the input stay exactly as they were.
    solid = F.max_pool2d((small[:, 0] > 0).float()[:, None], 15, 1, 7)[:, 0] == 0  # no alpha within 7 cells
    solid = F.interpolate(solid[:, None].float(), size=(256, 256), mode="nearest")[:, 0] > 0
    assert torch.equal(out[solid], up[solid])
    # At (or above) the frame size there is nothing to add.
    assert torch.equal(detail_refine(clip.frames, up, resolution=256), up)
