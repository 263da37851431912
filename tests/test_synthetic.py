"""The synthetic clip generator: deterministic, exact compositing, and hard enough to measure with."""

from __future__ import annotations

import pytest
import torch

from videomama.errors import InputError
from videomama.eval.synthetic import SyntheticScene, coarse_mask, make_clip


def test_deterministic_and_lazy_frames_match():
    a = make_clip(3, 64, 96, seed=7)
    b = make_clip(3, 64, 96, seed=7)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.alpha, b.alpha)
    assert not torch.equal(a.alpha, make_clip(3, 64, 96, seed=8).alpha)
    scene = SyntheticScene(64, 96, 3, seed=7)
    assert len(scene) == 3 and torch.equal(scene[2], a.frames[2]) and torch.equal(scene[-1], a.frames[2])
    with pytest.raises(IndexError):
        scene[3]


def test_compositing_equation_and_matte_content():
    clip = make_clip(3, 128, 160, seed=0)
    assert clip.frames.shape == (3, 128, 160, 3) and clip.alpha.shape == (3, 128, 160)
    recomposed = clip.fg * clip.alpha[..., None] + clip.bg * (1 - clip.alpha[..., None])
    assert (recomposed - clip.frames).abs().max() < 1e-5
    a = clip.alpha
    semi = ((a > 0) & (a < 1)).float().mean()
    assert 0.03 < semi < 0.3  # strands, soft edges and motion blur
    assert 0.05 < (a == 1).float().mean() < 0.5  # a solid body
    # The subject moves: consecutive mattes differ.
    assert (a[1] - a[0]).abs().mean() > 1e-3
    # Sensor noise changes the frames only.
    noisy = make_clip(2, 64, 64, seed=0, noise=0.05)
    clean = make_clip(2, 64, 64, seed=0)
    assert torch.equal(noisy.alpha, clean.alpha)
    assert 0.02 < (noisy.frames - clean.frames).std() < 0.06


def test_coarse_mask_is_blocky_and_binary():
    alpha = torch.zeros(1, 64, 64)
    alpha[0, 10:40, 13:45] = 1.0
    alpha[0, 20, 50] = 1.0  # a one-pixel speck disappears at 1/8 size
    m = coarse_mask(alpha, factor=8)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert m[0, 20, 50] == 0 and m[0, 25, 30] == 1
    assert torch.equal(coarse_mask(alpha, factor=1), (alpha >= 0.5).float())
    with pytest.raises(InputError, match="factor"):
        coarse_mask(alpha, factor=0)
    with pytest.raises(InputError, match="16x16"):
        SyntheticScene(8, 8)
