"""crop='auto': per window, the padded box around the subject is processed and pasted back."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from videomama.errors import InputError
from videomama.options import MatteOptions
from videomama.pipeline import crop
from videomama.pipeline.masks import MaskSequence
from videomama.pipeline.matte import layout_windows, matte_clip
from videomama.pipeline.model import VideoMaMaModel
from videomama.pipeline.schedule import split_windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OFF = MatteOptions(resolution=64, window=4, overlap=1, posterior="mean")
AUTO = dataclasses.replace(OFF, crop="auto")


def _disc_clip(t: int, h: int, w: int, cx: float, cy: float, r: float, step: float = 0.0):
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(t, h, w, 3, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.stack([(((xx - cx - step * i) ** 2 + (yy - cy) ** 2) < r * r).float() for i in range(t)])
    return frames, masks


@pytest.fixture(scope="module")
def model(tiny_unet, tiny_vae):
    return VideoMaMaModel(tiny_unet, tiny_vae)


def test_auto_is_zero_outside_the_box_and_a_manual_crop_inside(model):
    frames, masks = _disc_clip(4, 256, 384, cx=250, cy=90, r=20)
    (region,) = [s.region for s in layout_windows(4, AUTO, masks=masks, hw=(256, 384))]
    assert region == (39, 199, 142, 302)  # the disc's pixels (rows 71-110, columns 231-269) + 32 px each side
    auto = matte_clip(model, frames, masks, AUTO)
    top, left, bottom, right = region
    outside = auto.clone()
    outside[:, top:bottom, left:right] = 0
    assert outside.abs().max() == 0
    manual = matte_clip(model, frames[:, top:bottom, left:right], masks[:, top:bottom, left:right], OFF)
    assert (auto[:, top:bottom, left:right] - manual).abs().max() < 1e-6
    assert (auto - matte_clip(model, frames, masks, OFF)).abs().max() > 0.01  # it does change the result


def test_a_subject_filling_the_frame_is_the_same_as_off(model):
    frames, masks = _disc_clip(4, 64, 96, cx=48, cy=32, r=40)
    assert [s.region for s in layout_windows(4, AUTO, masks=masks, hw=(64, 96))] == [None]
    assert torch.equal(matte_clip(model, frames, masks, AUTO), matte_clip(model, frames, masks, OFF))


def test_boxes_follow_a_moving_subject_without_jitter():
    _, masks = _disc_clip(40, 270, 480, cx=40, cy=135, r=15, step=1.0)
    windows = split_windows(40, 8, 2)
    regions = crop.subject_regions(MaskSequence(masks, 40, 0.5), windows, (270, 480))
    assert all(r is not None for r in regions)
    lefts, rights = [r[1] for r in regions], [r[3] for r in regions]
    assert lefts == sorted(lefts) and rights == sorted(rights)  # the box only moves with the subject
    for a, b in zip(regions, regions[1:]):  # neighbours share most of their box (union with neighbours)
        inter = max(0, min(a[3], b[3]) - max(a[1], b[1])) * max(0, min(a[2], b[2]) - max(a[0], b[0]))
        assert inter >= 0.7 * (b[3] - b[1]) * (b[2] - b[0])


def test_empty_windows_keep_the_whole_frame_and_edges_clip():
    masks = torch.zeros(8, 100, 200)
    masks[4:, 0:10, 190:200] = 1  # only the second window has a subject, in the top right corner
    regions = crop.subject_regions(MaskSequence(masks, 8, 0.5), [range(0, 4), range(4, 8)], (100, 200))
    assert regions[0] is None  # no subject in the window: whole frame (an empty mask, as without crop)
    assert regions[1] == (0, 158, 42, 200)  # 32 px around the corner box, clipped to the frame
    none = crop.subject_regions(MaskSequence(torch.zeros(4, 100, 200), 4, 0.5), [range(0, 4)], (100, 200))
    assert none == [None]


def test_masks_of_another_size_map_to_frame_pixels():
    masks = torch.zeros(2, 50, 100)
    masks[:, 10:20, 40:50] = 1  # half-size masks: the box in frame pixels is twice as large
    (region,) = crop.subject_regions(MaskSequence(masks, 2, 0.5), [range(0, 2)], (100, 200))
    assert region == (0, 48, 72, 132)


def test_crop_is_validated_and_ignored_without_weights(caplog):
    with pytest.raises(InputError, match="crop='tight' must be one of off, auto"):
        MatteOptions(crop="tight")
    with pytest.raises(InputError, match="crop='auto' places its boxes from the masks"):
        layout_windows(4, AUTO)
    from videomama.shots import Engine, ShotSettings, iter_shot_alpha

    frames, masks = _disc_clip(2, 32, 48, cx=24, cy=16, r=8)
    with caplog.at_level(logging.WARNING, logger="videomama.shots"):
        list(iter_shot_alpha(frames, masks, AUTO, Engine(ShotSettings(), torch.device("cpu"))))
    assert any("--crop auto does nothing without --unet and --vae" in r.getMessage() for r in caplog.records)


def test_one_mask_for_the_whole_clip_is_read_once():
    reads = []

    class Counted(list):
        def __getitem__(self, i):
            reads.append(i)
            return super().__getitem__(i)

    mask = torch.zeros(100, 200)
    mask[40:60, 80:120] = 1
    seq = MaskSequence(Counted([mask]), 12, 0.5)
    regions = crop.subject_regions(seq, split_windows(12, 4, 1), (100, 200))
    assert reads == [0] and len(set(regions)) == 1 and regions[0] == (8, 48, 92, 152)
