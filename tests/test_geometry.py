"""Processing geometry: multiples of 64 by padding, aspect kept, alpha back at source size."""

from __future__ import annotations

import pytest
import torch

from videomama.pipeline.geometry import alpha_to_source, fit_geometry, frames_to_model, masks_to_model


@pytest.mark.parametrize(
    "h,w,res,content,padded",
    [
        (1080, 1920, 1024, (576, 1024), (576, 1024)),
        (1920, 1080, 1024, (1024, 576), (1024, 576)),
        (2160, 3840, 1024, (576, 1024), (576, 1024)),
        (804, 1920, 1024, (429, 1024), (448, 1024)),  # 2.39:1 scope
        (480, 640, 1024, (768, 1024), (768, 1024)),  # small sources are scaled up to the model's size
        (333, 517, 512, (330, 512), (384, 512)),
        (100, 100, 64, (64, 64), (64, 64)),
    ],
)
def test_plan(h, w, res, content, padded):
    geo = fit_geometry(h, w, res)
    assert (geo.content_h, geo.content_w) == content
    assert (geo.pad_h, geo.pad_w) == padded
    assert geo.pad_h % 64 == 0 and geo.pad_w % 64 == 0
    # Never stretched: the content keeps the source aspect to within one pixel of rounding.
    assert abs(geo.content_w / geo.content_h - w / h) <= w / h * (1 / min(content))


def test_padding_is_cropped_and_content_is_not_stretched():
    h, w = 90, 200
    geo = fit_geometry(h, w, 256)  # content 115x256 -> padded 128x256
    assert (geo.content_h, geo.pad_h) == (115, 128)
    # A vertical ramp survives the round trip without any shift or squeeze.
    ramp = torch.linspace(0, 1, h)[:, None].expand(h, w)
    frames = ramp[None, :, :, None].expand(1, h, w, 3)
    model_in = frames_to_model(frames, geo)
    assert model_in.shape == (1, 3, 128, 256)
    assert torch.equal(model_in[0, :, 115:], model_in[0, :, 114:115].expand(-1, 13, -1))  # edge repeated
    back = alpha_to_source((model_in[:, 0] + 1) / 2, geo)
    assert back.shape == (1, h, w)
    assert float((back[0] - ramp).abs().max()) < 0.02


def test_masks_stay_binary_after_resizing():
    geo = fit_geometry(97, 131, 256)
    mask = (torch.rand(2, 97, 131) > 0.5).float()
    out = masks_to_model(mask, geo)
    assert set(torch.unique(out).tolist()) <= {-1.0, 1.0}
    assert out.shape == (2, 3, geo.pad_h, geo.pad_w)
    # A half-covered frame stays about half covered.
    half = torch.zeros(1, 97, 131)
    half[:, :, :65] = 1
    cover = (masks_to_model(half, geo)[0, 0, : geo.content_h, : geo.content_w] > 0).float().mean()
    assert abs(float(cover) - 65 / 131) < 0.01
