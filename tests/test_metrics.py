"""Matting metrics against hand-computed small cases, an independent reference, and properties."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch
from PIL import Image

from videomama.errors import InputError
from videomama.eval.folders import evaluate_dirs, format_table
from videomama.eval.metrics import (
    MetricAccumulator,
    compute_all,
    conn,
    dtssd,
    gaussian_gradient_magnitude,
    grad,
    largest_component,
    mad,
    mse,
    unknown_region,
)
from videomama.io.frames import read_matte

# ---------------------------------------------------------------------------------------------
# MAD / MSE
# ---------------------------------------------------------------------------------------------


def test_mad_mse_hand_computed():
    pred = np.array([[0.0, 1.0], [0.5, 0.5]])
    gt = np.zeros((2, 2))
    # |err| = 0, 1, .5, .5 -> mean .5 -> MAD 500; err^2 = 0, 1, .25, .25 -> mean .375 -> MSE 375
    assert mad(pred, gt) == pytest.approx(500.0)
    assert mse(pred, gt) == pytest.approx(375.0)
    # Region = bottom row only: |err| mean (.5+.5)/2 = .5 -> 500; err^2 mean .25 -> 250
    region = np.array([[0, 0], [1, 1]])
    assert mad(pred, gt, region) == pytest.approx(500.0)
    assert mse(pred, gt, region) == pytest.approx(250.0)
    # Region = top row: |err| (0+1)/2 -> 500; err^2 (0+1)/2 -> 500
    assert mse(pred, gt, np.array([[1, 1], [0, 0]])) == pytest.approx(500.0)


def test_clip_metrics_average_frames_and_skip_empty_regions():
    gt = np.zeros((2, 3, 3))
    pred = np.stack([np.full((3, 3), 0.1), np.full((3, 3), 0.3)])
    # frame MADs 100 and 300 -> mean 200
    assert mad(pred, gt) == pytest.approx(200.0)
    # With frame 1's region empty, only frame 0 counts.
    region = np.stack([np.ones((3, 3)), np.zeros((3, 3))])
    assert mad(pred, gt, region) == pytest.approx(100.0)
    # No region pixel at all: NaN, not a crash or a fake 0.
    assert math.isnan(mad(pred, gt, np.zeros((3, 3))))


def test_torch_and_numpy_inputs_agree():
    rng = np.random.default_rng(1)
    p, g = rng.random((3, 12, 10)), rng.random((3, 12, 10))
    a = compute_all(p, g)
    b = compute_all(torch.from_numpy(p).float(), torch.from_numpy(g).float())
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


# ---------------------------------------------------------------------------------------------
# Grad
# ---------------------------------------------------------------------------------------------


def _reference_grad_magnitude(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """The definition written out: 2-D kernel hx[i, j] = g(i) dg(j), L2-normalised, replicate border."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 0.01)))
    size = 2 * half + 1
    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            u, v = i - half, j - half
            g = math.exp(-u * u / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            gv = math.exp(-v * v / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            hx[i, j] = g * (-v * gv / sigma**2)
    hx /= math.sqrt((hx**2).sum())
    hy = hx.T
    pad = np.pad(a, half, mode="edge")
    h, w = a.shape
    gx = np.zeros((h, w))
    gy = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            win = pad[y : y + size, x : x + size]
            gx[y, x] = (win * hx).sum()
            gy[y, x] = (win * hy).sum()
    return np.sqrt(gx**2 + gy**2)


def test_grad_kernel_matches_written_out_definition():
    rng = np.random.default_rng(0)
    a = rng.random((7, 11))
    np.testing.assert_allclose(gaussian_gradient_magnitude(a), _reference_grad_magnitude(a), rtol=1e-10, atol=1e-12)


def test_grad_hand_computed_ramp():
    # sigma 1.4 -> half size ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) 1.4 0.01))) = ceil(3.62) = 4 (9 taps).
    # g(u) = exp(-u^2/3.92)/(1.4 sqrt(2 pi)), dg(u) = -u g(u)/1.96 for u = -4..4:
    #   sum g = 0.998971, sum u*dg(u) = -0.986518, ||g|| * ||dg|| = 0.101768 (the L2 norm of hx).
    # On a ramp alpha = c*x, away from the border, the correlation gives
    #   gx = c * sum g * sum u dg / norm = -9.68383 c, gy = 0  ->  |grad| = 9.68383 c.
    c = 0.01
    x = np.arange(12, dtype=np.float64)
    gt = np.tile(c * x, (12, 1))  # (12, 12) ramp along x, values 0 .. 0.11
    pred = np.zeros_like(gt)  # |grad pred| = 0
    region = np.zeros_like(gt)
    region[4:8, 4:8] = 1  # 16 interior pixels, >= 4 px from every border
    # Grad = 16 * (9.68383 * 0.01)^2 / 1e3 = 16 * 0.00937766 / 1e3 = 1.500426e-4
    assert grad(pred, gt, region) == pytest.approx(16 * (9.683830838816398 * c) ** 2 / 1e3, rel=1e-9)
    assert grad(pred, gt, region) == pytest.approx(1.500426e-4, rel=1e-5)
    # The same ramp along y gives the same value (hy = hx transposed).
    assert grad(pred.T, gt.T, region.T) == pytest.approx(grad(pred, gt, region), rel=1e-12)
    # A constant offset does not change any gradient (replicated border): Grad 0.
    assert grad(gt + 0.3, gt) == pytest.approx(0.0, abs=1e-20)


# ---------------------------------------------------------------------------------------------
# Conn
# ---------------------------------------------------------------------------------------------


def test_conn_hand_computed_hole():
    gt = np.ones((4, 4))
    pred = gt.copy()
    pred[1, 1] = 0.0
    # At t = 0.1 the pixel leaves the largest component (pred < 0.1) -> level l = 0.
    # pred: d = 0 - 0 = 0 -> phi = 1; gt: d = 1 - 0 = 1 >= 0.15 -> phi = 0. Others: l = 1, d = 0.
    # Conn = |1 - 0| / 1e3 = 0.001
    assert conn(pred, gt) == pytest.approx(0.001)
    pred[1, 1] = 0.5
    # In the component for t <= 0.5 (0.5 >= 0.5), out at 0.6 -> l = 0.5.
    # pred: d = 0 -> phi 1; gt: d = 0.5 -> phi 0.5. Conn = 0.5 / 1e3
    assert conn(pred, gt) == pytest.approx(0.0005)


def test_conn_uses_4_connectivity():
    gt = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pred = gt.copy()
    pred[2, 2] = 0.1
    # 4-connectivity: (2,2) touches the 2x2 block only diagonally, so it is its own component
    # (size 1 < 4) from t = 0.1 on -> l = 0. pred: d = 0.1 < 0.15 -> phi = 1; gt: d = 1 -> phi = 0.
    # Conn = 1 / 1e3. (With 8-connectivity it would stay until t = 0.1 -> l = 0.1,
    # pred phi = 1, gt d = 0.9 -> phi = 0.1, Conn = 0.9 / 1e3.)
    assert conn(pred, gt) == pytest.approx(0.001)


def test_conn_region_and_identity():
    rng = np.random.default_rng(3)
    a = rng.random((9, 9))
    assert conn(a, a) == 0.0
    gt = np.ones((4, 4))
    pred = gt.copy()
    pred[1, 1] = 0.0
    region = np.zeros((4, 4))
    region[0] = 1  # the changed pixel is outside the region
    assert conn(pred, gt, region) == 0.0


def _bfs_largest(b: np.ndarray) -> np.ndarray:
    h, w = b.shape
    seen = np.zeros((h, w), bool)
    best: list[tuple[int, int]] = []
    for i in range(h):
        for j in range(w):
            if b[i, j] and not seen[i, j]:
                comp, q = [(i, j)], deque([(i, j)])
                seen[i, j] = True
                while q:
                    y, x = q.popleft()
                    for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                        if 0 <= yy < h and 0 <= xx < w and b[yy, xx] and not seen[yy, xx]:
                            seen[yy, xx] = True
                            comp.append((yy, xx))
                            q.append((yy, xx))
                if len(comp) > len(best):
                    best = comp
    out = np.zeros((h, w), bool)
    for y, x in best:
        out[y, x] = True
    return out


def test_largest_component_matches_bfs_reference():
    rng = np.random.default_rng(7)
    for k in range(150):
        h, w = rng.integers(1, 16, 2)
        b = rng.random((h, w)) < rng.random()
        np.testing.assert_array_equal(largest_component(b), _bfs_largest(b), err_msg=f"case {k}")
    # A spiral (long, winding component) and an empty image.
    spiral = np.zeros((9, 9), bool)
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = spiral[2:7, 6] = True
    np.testing.assert_array_equal(largest_component(spiral), _bfs_largest(spiral))
    assert not largest_component(np.zeros((3, 3), bool)).any()


# ---------------------------------------------------------------------------------------------
# dtSSD
# ---------------------------------------------------------------------------------------------


def test_dtssd_hand_computed():
    gt = np.zeros((2, 2, 2))
    pred = np.stack([np.zeros((2, 2)), np.ones((2, 2))])
    # frame 1: ((1 - 0) - 0)^2 = 1 everywhere -> 1e2 * sqrt(1) = 100; frame 0 counts 0 -> mean 50
    assert dtssd(pred, gt) == pytest.approx(50.0)
    pred3 = np.zeros((3, 1, 1))
    pred3[1:] = 0.2
    # t1: 1e2 * 0.2 = 20, t2: 0 -> (0 + 20 + 0) / 3
    assert dtssd(pred3, np.zeros((3, 1, 1))) == pytest.approx(20.0 / 3)


def test_dtssd_frame_zero_contributes_nothing():
    rng = np.random.default_rng(4)
    gt = rng.random((1, 6, 6))
    assert dtssd(rng.random((1, 6, 6)), gt) == 0.0  # one frame: nothing temporal to compare
    g = rng.random((4, 6, 6))
    # A constant offset is wrong in every frame (MAD > 0) but has no temporal error.
    assert dtssd(g + 0.1, g) == pytest.approx(0.0, abs=1e-9)
    assert mad(g + 0.1, g) == pytest.approx(100.0)


# ---------------------------------------------------------------------------------------------
# properties and errors
# ---------------------------------------------------------------------------------------------


def test_identical_inputs_score_zero_and_metrics_are_symmetric():
    rng = np.random.default_rng(5)
    p = rng.random((3, 16, 14))
    g = np.clip(p + rng.normal(0, 0.2, p.shape), 0, 1)
    zero = compute_all(g, g)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in zero.values()), zero
    ab, ba = compute_all(p, g), compute_all(g, p)
    for k in ab:
        assert ab[k] > 0, k
        assert ab[k] == pytest.approx(ba[k], rel=1e-12), k


def test_accumulator_streams_like_compute_all():
    rng = np.random.default_rng(6)
    p, g = rng.random((4, 10, 12)), rng.random((4, 10, 12))
    acc = MetricAccumulator()
    for t in range(4):
        acc.add(p[t], g[t])
    assert acc.result() == pytest.approx(compute_all(p, g))


def test_input_errors_name_the_input():
    with pytest.raises(InputError, match="gt"):
        mad(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="NaN"):
        mad(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(InputError, match="region"):
        mad(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), np.ones((3, 4, 4)))
    with pytest.raises(InputError, match="metric"):
        MetricAccumulator(metrics=("SAD",))


def test_unknown_region_of_trimap():
    tri = np.array([0.0, 128 / 255, 1.0, 0.5])
    np.testing.assert_array_equal(unknown_region(tri), [False, True, False, True])


# ---------------------------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------------------------


def _save(path, arr: np.ndarray, bits: int) -> None:
    if bits == 16:
        Image.fromarray(np.rint(arr * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.rint(arr * 255).astype(np.uint8), mode="L").save(path)


def test_read_matte_8_and_16_bit(tmp_path):
    a = np.linspace(0, 1, 40).reshape(5, 8)
    _save(tmp_path / "a16.png", a, 16)
    _save(tmp_path / "a8.png", a, 8)
    np.testing.assert_allclose(read_matte(tmp_path / "a16.png"), a, atol=0.5 / 65535 + 1e-12)
    np.testing.assert_allclose(read_matte(tmp_path / "a8.png"), a, atol=0.5 / 255 + 1e-12)
    rgba = np.zeros((5, 8, 4), np.uint8)
    rgba[..., 3] = np.rint(a * 255)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_matte(tmp_path / "rgba.png"), a, atol=0.5 / 255 + 1e-12)


def test_evaluate_dirs_table_and_mismatches(tmp_path):
    rng = np.random.default_rng(8)
    gt = rng.random((3, 12, 16))
    pred = np.clip(gt + rng.normal(0, 0.1, gt.shape), 0, 1)
    tri = np.where(gt < 0.3, 0.0, np.where(gt > 0.7, 1.0, 128 / 255))
    for name, data, bits in (("pred", pred, 16), ("gt", gt, 16), ("tri", tri, 8)):
        (tmp_path / name).mkdir()
        for t in range(3):
            _save(tmp_path / name / f"f{t + 1}.png", data[t], bits)
    table = evaluate_dirs(tmp_path / "pred", tmp_path / "gt", tmp_path / "tri")
    q = lambda x: np.rint(x * 65535) / 65535  # noqa: E731 - the 16-bit quantisation of the files
    expect = compute_all(q(pred), q(gt))
    expect_unknown = compute_all(q(pred), q(gt), unknown_region(np.rint(tri * 255) / 255))
    assert table["whole frame"] == pytest.approx(expect, rel=1e-9)
    assert table["unknown region"] == pytest.approx(expect_unknown, rel=1e-9)
    assert table["unknown region"]["MAD"] != pytest.approx(table["whole frame"]["MAD"], rel=1e-3)
    text = format_table(table)
    assert "unknown region" in text and "dtSSD" in text and f"{expect['MAD']:.4g}" in text

    # Different counts, names and sizes are refused with a message naming the problem.
    (tmp_path / "gt" / "f3.png").rename(tmp_path / "gt" / "f9.png")
    with pytest.raises(InputError, match="by name"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    (tmp_path / "gt" / "f9.png").unlink()
    with pytest.raises(InputError, match="3 images but gt has 2"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    _save(tmp_path / "gt" / "f3.png", np.zeros((12, 15)), 16)
    with pytest.raises(InputError, match="16x12 but f3.png in gt is 15x12"):
        evaluate_dirs(tmp_path / "pred", tmp_path / "gt")
    with pytest.raises(InputError, match="does not exist"):
        evaluate_dirs(tmp_path / "nope", tmp_path / "gt")
