"""Compositing maths, backgrounds, and the measured benefit of foreground colour estimation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videomama.errors import Cancelled, InputError
from videomama.eval.synthetic import make_clip
from videomama.imaging.composite import (
    broadcast_frames,
    checkerboard,
    composite,
    estimate_foreground,
    fit_image,
    from_rgba,
    parse_color,
    premultiply,
    prepare_background,
    solid_background,
    to_rgba,
    unpremultiply,
)
from videomama.imaging.filters import box_blur


@pytest.fixture(scope="module")
def rgb_alpha():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 6, 7, 3, generator=g)
    alpha = torch.rand(3, 6, 7, generator=g)
    alpha[0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])
    return rgb, alpha


def test_premultiply_round_trip(rgb_alpha):
    rgb, alpha = rgb_alpha
    pm = premultiply(rgb, alpha)
    assert torch.allclose(pm, rgb * alpha[..., None])
    assert pm[0, 0, 0].abs().max() == 0  # alpha 0 -> black
    back = unpremultiply(pm, alpha)
    visible = alpha > 1e-3
    assert torch.allclose(back[visible], rgb[visible], atol=1e-5)
    assert back[0, 0, 0].abs().max() == 0  # colour under alpha 0 is undefined: 0, not NaN
    assert torch.isfinite(back).all()


@pytest.mark.parametrize("premultiplied", [False, True])
def test_rgba_round_trip(rgb_alpha, premultiplied):
    rgb, alpha = rgb_alpha
    rgba = to_rgba(rgb, alpha, premultiplied=premultiplied)
    assert rgba.shape == (3, 6, 7, 4)
    assert torch.equal(rgba[..., 3], alpha)
    expect = rgb * alpha[..., None] if premultiplied else rgb
    assert torch.allclose(rgba[..., :3], expect)
    c, a = from_rgba(rgba, premultiplied=premultiplied)
    visible = alpha > 1e-3
    assert torch.allclose(c[visible], rgb[visible], atol=1e-5)
    assert torch.equal(a, alpha)


def test_composite_identities_and_hand_value(rgb_alpha):
    rgb, alpha = rgb_alpha
    bg = torch.rand(3, 6, 7, 3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(composite(rgb, torch.ones_like(alpha), bg), rgb)
    assert torch.allclose(composite(rgb, torch.zeros_like(alpha), bg), bg)
    # straight == premultiplied path
    assert torch.allclose(
        composite(premultiply(rgb, alpha), alpha, bg, premultiplied=True), composite(rgb, alpha, bg), atol=1e-6
    )
    # white over black at alpha 0.25 -> 0.25
    out = composite(torch.ones(1, 2, 2, 3), torch.full((1, 2, 2), 0.25), torch.zeros(1, 2, 2, 3))
    assert torch.allclose(out, torch.full_like(out, 0.25))


def test_broadcasting_and_count_errors(rgb_alpha):
    rgb, alpha = rgb_alpha
    # A single background image and a single mask are used for every frame.
    one_bg = torch.rand(6, 7, 3)
    out = composite(rgb, alpha[:1], one_bg)
    assert out.shape == (3, 6, 7, 3)
    assert torch.allclose(out[2], rgb[2] * alpha[0, ..., None] + one_bg * (1 - alpha[0, ..., None]))
    with pytest.raises(InputError, match="bg has 2 frames but the clip has 3"):
        composite(rgb, alpha, torch.rand(2, 6, 7, 3))
    with pytest.raises(InputError, match="alpha is 8x6"):
        composite(rgb, torch.rand(3, 6, 8), one_bg)
    with pytest.raises(InputError, match="bg is 5x6"):
        composite(rgb, alpha, torch.rand(6, 5, 3))
    assert broadcast_frames(torch.zeros(1, 2), 4, "x").shape == (4, 2)
    with pytest.raises(InputError, match="x has 2 frames"):
        broadcast_frames(torch.zeros(2, 2), 4, "x")


def test_parse_color():
    assert parse_color("#FF8000") == pytest.approx((1.0, 128 / 255, 0.0))
    assert parse_color("00ff00") == pytest.approx((0.0, 1.0, 0.0))
    assert parse_color(" 0, 128 ,255 ") == pytest.approx((0.0, 128 / 255, 1.0))
    assert parse_color((0.1, 0.2, 0.3)) == pytest.approx((0.1, 0.2, 0.3))
    for bad in ("#12345", "red", "0,0,256", "1,2"):
        with pytest.raises(InputError, match="#RRGGBB"):
            parse_color(bad)
    bg = solid_background("#0000FF", 3, 4)
    assert bg.shape == (1, 3, 4, 3) and torch.equal(bg[0, 1, 2], torch.tensor([0.0, 0.0, 1.0]))


def test_checkerboard_alternates():
    board = checkerboard(16, 24, square=4)
    assert board.shape == (1, 16, 24, 3)
    assert board[0, 0, 0, 0] == pytest.approx(0.8) and board[0, 0, 4, 0] == pytest.approx(0.55)
    assert board[0, 4, 0, 0] == pytest.approx(0.55) and board[0, 4, 4, 0] == pytest.approx(0.8)
    assert board.unique().tolist() == pytest.approx([0.55, 0.8])


def test_fit_rules():
    # A 4x8 image: left half red, right half blue, with a green column marking the centre.
    img = torch.zeros(4, 8, 3)
    img[:, :4, 0] = 1
    img[:, 4:, 2] = 1
    stretched = fit_image(img, 6, 6, "stretch")
    assert stretched.shape == (1, 6, 6, 3)
    # cover 4x4: scale max(4/4, 4/8) = 1 -> crop the centre columns 2..5 (2 red, 2 blue)
    covered = fit_image(img, 4, 4, "cover")
    assert torch.allclose(covered[0, :, :2], img[:, 2:4]) and torch.allclose(covered[0, :, 2:], img[:, 4:6])
    # contain 8x8: scale min(8/4, 8/8) = 1 -> rows 2..5 hold the image, rows 0-1 and 6-7 the fill
    contained = fit_image(img, 8, 8, "contain", fill="#00FF00")
    assert torch.allclose(contained[0, 2:6], img)
    assert torch.allclose(contained[0, :2], torch.tensor([0.0, 1.0, 0.0]).expand(2, 8, 3))
    with pytest.raises(InputError, match="stretch, cover, contain"):
        fit_image(img, 4, 4, "fill")


def test_prepare_background_specs():
    assert prepare_background("#FF0000", 5, 3, 4).shape == (5, 3, 4, 3)
    assert prepare_background("checkerboard", 2, 32, 32).shape == (2, 32, 32, 3)
    clip = torch.rand(5, 6, 8, 3)
    assert torch.equal(prepare_background(clip, 5, 6, 8), clip)
    one = prepare_background(torch.rand(12, 16, 3), 5, 6, 8, rule="cover")
    assert one.shape == (5, 6, 8, 3) and torch.equal(one[0], one[4])
    with pytest.raises(InputError, match="background has 3 frames but the clip has 5"):
        prepare_background(torch.rand(3, 6, 8, 3), 5, 6, 8)


def test_box_blur_is_exact_mean_and_precise_on_large_frames():
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(2))
    for r in (1, 3, 7):
        ref = F.avg_pool2d(x.double(), 2 * r + 1, 1, r, count_include_pad=False)
        assert (box_blur(x, r).double() - ref).abs().max() < 1e-6
    big = torch.rand(1, 1, 1080, 1920, generator=torch.Generator().manual_seed(3))
    big = big + torch.linspace(0, 3, 1920)  # a large smooth ramp stresses float32 running sums
    err = (box_blur(big, 40).double() - box_blur(big.double(), 40)).abs().max().item()
    assert err < 1e-5, err


# ---------------------------------------------------------------------------------------------
# foreground colour estimation: the measured claim
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hair_clip():
    return make_clip(4, 256, 256, seed=1)


def _recomposite_errors(clip, new_bg: torch.Tensor) -> tuple[float, float]:
    """Mean |error| over the semi-transparent pixels of re-compositing on ``new_bg``: (naive, estimated F).

    Straight compositing makes the error a * |F_used - F_true| whatever the new background, so
    one background measures it.
    """
    a = clip.alpha[..., None]
    truth = clip.fg * a + new_bg * (1 - a)
    naive = clip.frames * a + new_bg * (1 - a)
    fg = estimate_foreground(clip.frames, clip.alpha)
    est = fg * a + new_bg * (1 - a)
    semi = (clip.alpha > 0) & (clip.alpha < 1)
    err = lambda x: (x - truth).abs().mean(-1)[semi].mean().item()  # noqa: E731
    return err(naive), err(est)


@pytest.mark.parametrize(
    "size, seed, speed", [((256, 256), 1, 1.0), ((180, 320), 5, 2.5)], ids=["hair-256", "fast-motion-320"]
)
def test_foreground_estimation_beats_naive_recomposite(size, seed, speed):
    clip = make_clip(4, *size, seed=seed, speed=speed)
    semi = ((clip.alpha > 0) & (clip.alpha < 1)).float().mean().item()
    assert semi > 0.03  # the clip really has a large semi-transparent region (hair, blur, soft edge)
    new_bg = solid_background("#10D020", *size)
    naive, est = _recomposite_errors(clip, new_bg)
    print(f"\n{size[1]}x{size[0]} seed {seed} speed {speed}: mean |error| of the re-composite in 0<alpha<1 "
          f"({semi:.1%} of pixels): naive {naive:.4f}, estimated fg {est:.4f} ({est / naive:.0%})")
    assert est < 0.6 * naive, (naive, est)


def test_foreground_estimation_recovers_colour_and_is_chunk_invariant(hair_clip):
    fg1 = estimate_foreground(hair_clip.frames, hair_clip.alpha, chunk=1)
    fg4 = estimate_foreground(hair_clip.frames, hair_clip.alpha, chunk=4)
    assert torch.allclose(fg1, fg4, atol=1e-5)
    a = hair_clip.alpha
    strong = a > 0.3  # where F is well determined, weighted colour error much below the image's
    err_est = ((fg1 - hair_clip.fg).abs().mean(-1) * a)[strong].mean()
    err_img = ((hair_clip.frames - hair_clip.fg).abs().mean(-1) * a)[strong].mean()
    assert err_est < 0.6 * err_img
    # Where alpha = 1 the colour is the image's.
    solid = a == 1
    assert (fg1 - hair_clip.frames).abs().amax(-1)[solid].max() < 1e-4


def test_foreground_estimation_checks_and_cancels(hair_clip):
    with pytest.raises(InputError, match="alpha has 2 frames but frames has 4"):
        estimate_foreground(hair_clip.frames, hair_clip.alpha[:2])
    with pytest.raises(InputError, match="alpha is 8x8"):
        estimate_foreground(hair_clip.frames, torch.zeros(4, 8, 8))
    with pytest.raises(Cancelled):
        estimate_foreground(hair_clip.frames, hair_clip.alpha, should_cancel=lambda: True)
    seen = []
    estimate_foreground(hair_clip.frames[:3], hair_clip.alpha[0], chunk=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 3), (3, 3)]
