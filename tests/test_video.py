"""The clip scheduler: windows, blending, noise keyed to frames, progress, cancel, bad inputs."""

from __future__ import annotations

import logging

import pytest
import torch
from standins import PerFrameModel, smooth_clip

from videomama.errors import Cancelled, InputError
from videomama.options import MatteOptions
from videomama.pipeline.matte import iter_matte, iter_window_results, layout_windows, matte_clip
from videomama.pipeline.schedule import blend_weights, split_windows


@pytest.mark.parametrize("num_frames", [1, 5, 16, 17, 29, 40, 100])
@pytest.mark.parametrize("window,overlap", [(16, 4), (8, 2), (4, 3), (16, 0), (1, 0)])
def test_windows_cover_clip_full_length_with_overlap(num_frames, window, overlap):
    windows = split_windows(num_frames, window, overlap)
    covered = sorted({i for w in windows for i in w})
    assert covered == list(range(num_frames))
    assert windows[0].start == 0 and windows[-1].stop == num_frames
    for a, b in zip(windows, windows[1:]):
        assert len(a) == len(b) == window  # no short tail window
        assert a.stop - b.start >= overlap and b.start > a.start
    weights = blend_weights(windows)
    total = torch.zeros(num_frames)
    for w, win in zip(weights, windows):
        assert (w > 0).all() and (w <= 1).all()
        total[list(win)] += w
    assert (total > 0).all()


def test_single_window_clip_is_one_call():
    model = PerFrameModel()
    frames, masks = smooth_clip(12)
    matte_clip(model, frames, masks, MatteOptions(resolution=96, window=16, overlap=4))
    assert model.calls == [12]


@pytest.mark.parametrize("posterior", ["mean", "sample"])
def test_frame_noise_does_not_depend_on_where_windows_fall(posterior):
    """Noise is keyed to (seed, frame): a per-frame model gives the same alpha for any layout."""
    frames, masks = smooth_clip(37)
    runs = [
        matte_clip(PerFrameModel(), frames, masks, MatteOptions(resolution=96, window=w, overlap=o, posterior=posterior))
        for w, o in [(1, 0), (8, 2), (5, 3), (16, 4), (37, 0)]
    ]
    for other in runs[1:]:
        assert float((other - runs[0]).abs().max()) < 1e-6
    # ... and the seed does matter.
    reseeded = matte_clip(PerFrameModel(), frames, masks, MatteOptions(resolution=96, window=8, overlap=2, seed=7,
                                                                         posterior=posterior))
    assert float((reseeded - runs[0]).abs().max()) > 1e-3


def _seam_ratio(alpha: torch.Tensor) -> float:
    """How much the largest frame-to-frame change stands out from the changes around it:
    max over t of |a[t+1] - a[t]| / median of the steps within 8 frames (local, because the
    steps themselves drift with the content). A smooth clip scores about 1."""
    diffs = (alpha[1:] - alpha[:-1]).abs().mean(dim=(1, 2))
    ratios = [float(diffs[t] / diffs[max(0, t - 8): t + 9].median()) for t in range(len(diffs))]
    return max(ratios)


def test_seam_does_not_stand_out():
    """Windows that disagree (a window-wide term, like temporal attention) are cross-faded.

    The model's alpha is a smooth function of the frame plus a term shared by each window; the
    brightness ramps linearly, so inside a window alpha changes by a steady amount per frame.
    A hard cut (overlap 0) puts the whole disagreement D into one step (ratio 1 + D/s); the
    linear cross-fade over L shared frames spreads it over L + 1 steps (ratio 1 + D/((L+1)s)).
    """
    frames, masks = smooth_clip(60)
    masks = torch.zeros_like(masks)  # keep the mask term constant: only the smooth parts move
    model = PerFrameModel(noise_gain=0.0, window_gain=0.2)
    cut_opts = MatteOptions(resolution=96, window=16, overlap=0, posterior="mean")
    cut = _seam_ratio(matte_clip(model, frames, masks, cut_opts))
    fades = {}
    for overlap in (4, 8):
        opts = MatteOptions(resolution=96, window=16, overlap=overlap, posterior="mean")
        fades[overlap] = _seam_ratio(matte_clip(model, frames, masks, opts))
    print(f"seam ratio (largest step / nearby steps): hard cut {cut:.2f}, overlap 4 {fades[4]:.2f}, "
          f"overlap 8 {fades[8]:.2f}")
    assert cut > 2.5  # the measurement does see a seam when there is one
    # Spread evenly: the disagreement (proportional to the stride) over overlap + 1 steps.
    expected4 = 1 + (cut - 1) * (16 - 4) / 16 / (4 + 1)
    assert fades[4] <= expected4 + 0.15
    assert fades[4] < 1.6 and fades[8] < 1.3


def test_progress_per_window_and_cancel_between_windows():
    frames, masks = smooth_clip(40)
    seen: list[tuple[int, int]] = []
    matte_clip(PerFrameModel(), frames, masks, MatteOptions(resolution=96, window=8, overlap=2),
               progress=lambda d, t: seen.append((d, t)))
    total = len(split_windows(40, 8, 2))
    assert seen == [(k, total) for k in range(1, total + 1)]

    model = PerFrameModel()
    asked = []

    def cancel_after_two() -> bool:
        asked.append(1)
        return len(model.calls) >= 2

    with pytest.raises(Cancelled, match="window 3 of"):
        matte_clip(model, frames, masks, MatteOptions(resolution=96, window=8, overlap=2), should_cancel=cancel_after_two)
    assert len(model.calls) == 2  # stopped between windows, never inside one


def test_single_mask_is_broadcast():
    frames, masks = smooth_clip(10)
    one = matte_clip(PerFrameModel(), frames, masks[3:4], MatteOptions(resolution=96))
    many = matte_clip(PerFrameModel(), frames, masks[3:4].expand(10, -1, -1), MatteOptions(resolution=96))
    assert torch.equal(one, many)


def test_soft_masks_are_binarised_by_threshold():
    frames, masks = smooth_clip(6)
    soft = masks * 0.7  # a soft mask whose subject is at 0.7
    base = matte_clip(PerFrameModel(), frames, masks, MatteOptions(resolution=96))
    same = matte_clip(PerFrameModel(), frames, soft, MatteOptions(resolution=96, mask_threshold=0.5))
    empty = matte_clip(PerFrameModel(), frames, soft, MatteOptions(resolution=96, mask_threshold=0.8))
    assert torch.equal(base, same)
    assert float((empty - base).abs().max()) > 0.1


def test_output_is_float32_at_source_size_for_odd_aspects():
    for h, w in [(50, 173), (173, 50), (64, 64), (33, 97)]:
        frames = torch.rand(3, h, w, 3)
        masks = (torch.rand(3, h, w) > 0.5).float()
        alpha = matte_clip(PerFrameModel(), frames, masks, MatteOptions(resolution=128))
        assert alpha.shape == (3, h, w) and alpha.dtype == torch.float32
        assert 0 <= float(alpha.min()) and float(alpha.max()) <= 1
        assert len(torch.unique(alpha)) > 256  # no 8-bit quantisation anywhere


def test_mask_size_mismatch_is_resized_with_a_warning(caplog):
    frames, masks = smooth_clip(4, 64, 96)
    small = torch.nn.functional.interpolate(masks[:, None], size=(32, 48), mode="nearest")[:, 0]
    with caplog.at_level(logging.WARNING):
        alpha = matte_clip(PerFrameModel(), frames, small, MatteOptions(resolution=96))
    assert alpha.shape == (4, 64, 96)
    assert "48x32" in caplog.text and "96x64" in caplog.text


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda f, m: (f, m[:3]), r"3 masks for 6 frames"),
        (lambda f, m: (f[:0], m), r"frames is empty"),
        (lambda f, m: (f, m[:0]), r"masks is empty"),
        (lambda f, m: (torch.cat([f, f[:, :, :, :1]], dim=-1), m), r"frames\[0\] has shape .*RGBA"),
        (lambda f, m: (f.index_put((torch.tensor([4]),), torch.tensor(float("nan"))), m), r"frames\[4\] contains NaN"),
        (lambda f, m: (f, m.index_put((torch.tensor([2]),), torch.tensor(float("inf")))), r"masks\[2\] contains NaN"),
        (lambda f, m: (f[:, :, :, 0], m), r"frames\[0\] has shape"),
    ],
)
def test_bad_inputs_name_the_input(make, match):
    frames, masks = smooth_clip(6)
    frames, masks = make(frames, masks)
    with pytest.raises(InputError, match=match):
        matte_clip(PerFrameModel(), frames, masks, MatteOptions(resolution=96))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"overlap": 16}, "overlap=16"),
        ({"window": 0}, "window=0"),
        ({"resolution": 10}, "resolution=10"),
        ({"posterior": "mode"}, "posterior"),
        ({"mask_threshold": 1.0}, "mask_threshold"),
    ],
)
def test_impossible_settings_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        MatteOptions(**kwargs)


def test_real_tiny_model_windows_and_precisions(tiny_model):
    """The real UNet+VAE path over several windows; bf16 stays close to fp32."""
    import copy

    frames, masks = smooth_clip(12, 64, 64)
    opts = MatteOptions(resolution=64, window=8, overlap=4, posterior="mean")
    ref = matte_clip(tiny_model, frames, masks, opts)
    assert ref.shape == (12, 64, 64) and torch.isfinite(ref).all()
    again = matte_clip(tiny_model, frames, masks, opts)
    assert torch.equal(ref, again)  # deterministic
    # Random weights amplify rounding far more than trained ones; these bounds catch a broken
    # dtype path (wrong casts give errors of the order of the alpha itself), not fine drift.
    for dtype in (torch.float16, torch.bfloat16):
        low = matte_clip(copy.deepcopy(tiny_model).to(dtype), frames, masks, opts)
        err_max, err_mean = float((low - ref).abs().max()), float((low - ref).abs().mean())
        print(f"{dtype} vs fp32 |alpha diff| on the tiny model: max {err_max:.4f}, mean {err_mean:.4f}")
        assert err_mean < 0.02 and err_max < 0.2


def _merge(parts: list) -> dict[int, torch.Tensor]:
    """Merge FrameResults of several runs the way a distributed batch does: sums, then divide."""
    sums: dict[int, list] = {}
    for r in parts:
        s = sums.setdefault(r.index, [0.0, 0.0])
        s[0] = s[0] + r.weighted_sum
        s[1] += r.weight
    return {i: (s / w).clamp(0, 1) for i, (s, w) in sums.items()}


def test_windows_split_into_runs_merge_to_the_single_run():
    """Runs of consecutive windows report finished frames and partial sums; merged, they equal one run."""
    frames, masks = smooth_clip(29)
    opts = MatteOptions(resolution=96, window=8, overlap=3)
    model = PerFrameModel(window_gain=0.2)  # windows disagree, so a wrong merge would show
    whole = matte_clip(model, frames, masks, opts)
    specs = layout_windows(29, opts)
    assert len(specs) == 6
    for cut in (1, 3, 5):
        a = list(iter_window_results(model, frames, masks, opts, windows=specs, run=range(0, cut)))
        b = list(iter_window_results(model, frames, masks, opts, windows=specs, run=range(cut, len(specs))))
        shared = set(specs[cut - 1].frames) & set(specs[cut].frames)
        assert {r.index for r in a if not r.complete} == shared == {r.index for r in b if not r.complete}
        merged = _merge(a + b)
        assert sorted(merged) == list(range(29))
        assert float((torch.stack([merged[i] for i in range(29)]) - whole).abs().max()) <= 1e-6


def test_a_window_region_is_matted_at_full_resolution_and_zero_outside():
    frames, masks = smooth_clip(6, h=64, w=96)
    opts = MatteOptions(resolution=64, window=6, overlap=0)
    box = (8, 24, 56, 88)  # top, left, bottom, right
    specs = layout_windows(6, opts, regions=[box])
    cropped = matte_clip(PerFrameModel(), frames[:, 8:56, 24:88], masks[:, 8:56, 24:88], opts)
    got = dict(iter_matte(PerFrameModel(), frames, masks, opts, windows=specs))
    alpha = torch.stack([got[i] for i in range(6)])
    assert float((alpha[:, 8:56, 24:88] - cropped).abs().max()) <= 1e-6  # the box, matted on its own
    outside = alpha.clone()
    outside[:, 8:56, 24:88] = 0
    assert float(outside.abs().max()) == 0.0
    with pytest.raises(InputError, match="not a box inside"):
        list(iter_matte(PerFrameModel(), frames, masks, opts, windows=layout_windows(6, opts, regions=[(0, 0, 65, 96)])))
    with pytest.raises(InputError, match="1 regions were given for 2 windows"):
        layout_windows(12, opts, regions=[box])
