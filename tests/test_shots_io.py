"""Shots as VFX delivers them, on real files: numbered sequences, EXR and 16-bit in and out, RGBA
and preview outputs, truncated videos, RGBA masks, and one clear line for every odd input.

Runs the weight-free path of the real CLI (fast; the file handling is the same with weights).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from standins import smooth_clip
from test_cli import run_cli

oiio = pytest.importorskip("OpenImageIO")


def _png8(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(np.rint(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(path)


def _write_oiio(path: Path, arr: np.ndarray, fmt, names: tuple[str, ...] | None = None) -> None:
    arr = np.ascontiguousarray(arr if arr.ndim == 3 else arr[..., None])
    spec = oiio.ImageSpec(arr.shape[1], arr.shape[0], arr.shape[2], fmt)
    if names:
        spec.channelnames = names
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), oiio.geterror()
    out.write_image(arr.astype(np.float32) if fmt in (oiio.FLOAT, oiio.HALF) else arr)
    out.close()


def _read_oiio(path: Path) -> tuple[np.ndarray, tuple[str, ...], str]:
    """The pixels as stored (OpenImageIO would premultiply PNG colour by alpha on reading)."""
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    inp = oiio.ImageInput.open(str(path), config)
    spec = inp.spec()
    px = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
    inp.close()
    return np.asarray(px).reshape(spec.height, spec.width, spec.nchannels), tuple(spec.channelnames), str(spec.format)


def _one_error_line(res, needle: str) -> str:
    assert res.returncode != 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    """A numbered plate shot_v01.1001-1008.png and roto roto.1001-1008.png (8-bit)."""
    root = tmp_path_factory.mktemp("seq")
    frames, masks = smooth_clip(8, 40, 56)
    (root / "plate").mkdir()
    (root / "roto").mkdir()
    for i in range(8):
        _png8(root / "plate" / f"shot_v01.{1001 + i}.png", frames[i].numpy())
        _png8(root / "roto" / f"roto.{1001 + i}.png", masks[i].numpy())
    return root, frames, masks


def test_numbered_sequence_keeps_frame_numbers_and_range(sequence, tmp_path):
    root, _, _ = sequence
    res = run_cli("matte", "--frames", root / "plate", "--masks", root / "roto", "--out", tmp_path,
                  "--start", 1003, "--end", 1006)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "alpha").iterdir())
    assert names == [f"shot_v01.{n}.png" for n in range(1003, 1007)]
    with Image.open(tmp_path / "alpha" / "shot_v01.1004.png") as im:
        assert im.mode.startswith("I;16") and im.size == (56, 40)

    # Out of range, in the sequence's own numbers: one line with the range it holds.
    res = run_cli("matte", "--frames", root / "plate", "--masks", root / "roto", "--out", tmp_path / "b",
                  "--start", 990)
    _one_error_line(res, "--start 990 is outside --frames, which holds frames 1001-1008")


def test_masks_pair_with_frames_by_frame_number(sequence, tmp_path):
    """A roto that covers more frames than the plate (0990-1012) pairs by number, not position."""
    from videomama.shots import ShotFiles, open_shot

    root, _, masks = sequence
    roto = tmp_path / "roto"
    roto.mkdir()
    for n in range(990, 1013):
        m = masks[n - 1001].numpy() if 1001 <= n <= 1008 else np.zeros((40, 56))
        _png8(roto / f"roto.{n:04d}.png", m)
    frames, paired = open_shot(root / "plate", roto, ShotFiles(start=1002, end=1005))
    assert len(frames) == len(paired) == 4
    for k in range(4):
        assert torch.equal(paired[k], masks[1 + k]), k  # frame 1002 + k gets roto.1002 + k


def test_exr_plate_in_exr_alpha_and_rgba_out(sequence, tmp_path):
    """Linear half-float EXR plates are read as the sRGB frames they show; alpha comes out as a
    float EXR with one channel A; straight RGBA EXR holds the plate's linear colour where alpha is 1."""
    from videomama.io.frames import open_frames
    from videomama.io.images import decode_srgb

    _, frames, masks = sequence
    plate = tmp_path / "plate"
    plate.mkdir()
    linear = decode_srgb(frames.numpy())
    for i in range(4):
        _write_oiio(plate / f"plate.{1001 + i}.exr", linear[i], oiio.HALF)
    read = open_frames(plate)
    assert len(read) == 4
    assert float((read[2] - frames[2]).abs().max()) < 2e-3  # half precision, back through the sRGB curve
    as_is = open_frames(plate, transfer="srgb")
    assert float((as_is[2] - torch.from_numpy(linear[2])).abs().max()) < 2e-3  # --input-transfer srgb: no curve

    roto = tmp_path / "roto"
    roto.mkdir()
    for i in range(4):
        _png8(roto / f"roto.{1001 + i}.png", masks[i].numpy())
    res = run_cli("matte", "--frames", plate, "--masks", roto, "--out", tmp_path / "out", "--format", "exr",
                  "--rgba", "straight")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir()) == [f"plate.{n}.exr" for n in range(1001, 1005)]
    alpha, names, fmt = _read_oiio(tmp_path / "out" / "alpha" / "plate.1002.exr")
    assert names == ("A",) and fmt == "float" and alpha.shape == (40, 56, 1)
    assert len(np.unique(alpha)) > 256 and 0.0 <= alpha.min() and alpha.max() <= 1.0
    rgba, names, _ = _read_oiio(tmp_path / "out" / "rgba" / "plate.1002.exr")
    assert names == ("R", "G", "B", "A")
    np.testing.assert_array_equal(rgba[..., 3], alpha[..., 0])
    solid = rgba[..., 3] > 0.999
    assert solid.sum() > 20
    # Inside the subject the estimated colour is the plate's own, in the plate's (linear) encoding.
    assert np.abs(rgba[..., :3][solid] - linear[1][solid]).max() < 0.02

    # png16 alpha of the same shot equals the EXR alpha to 16-bit precision.
    res = run_cli("matte", "--frames", plate, "--masks", roto, "--out", tmp_path / "png")
    assert res.returncode == 0, res.stderr
    png = np.asarray(Image.open(tmp_path / "png" / "alpha" / "plate.1002.png"), dtype=np.float64) / 65535
    assert np.abs(png - alpha[..., 0]).max() <= 0.5 / 65535 + 1e-7


def test_premultiplied_rgba_png16_and_preview(sequence, tmp_path):
    from videomama.io.frames import open_frames

    root, frames, _ = sequence
    res = run_cli("matte", "--frames", root / "plate", "--masks", root / "roto", "--out", tmp_path,
                  "--rgba", "premultiplied", "--preview", "--end", 1004)
    assert res.returncode == 0, res.stderr
    rgba, names, fmt = _read_oiio(tmp_path / "rgba" / "shot_v01.1003.png")
    assert names == ("R", "G", "B", "A") and fmt == "uint16"
    assert (rgba[..., :3] <= rgba[..., 3:] + 1e-4).all()  # premultiplied: colour never above alpha
    assert (rgba[..., :3][rgba[..., 3] == 0] == 0).all()
    solid = rgba[..., 3] > 0.999
    plate = np.rint(frames[2].numpy() * 255) / 255
    assert solid.sum() > 20 and np.abs(rgba[..., :3][solid] - plate[solid]).max() < 0.02  # the subject's colour
    preview = open_frames(tmp_path / "preview.mp4")
    assert len(preview) == 4 and tuple(preview[0].shape) == (40, 56, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha", "preview.mp4", "rgba"]  # nothing staged left


def test_16_bit_rgb_png_and_tiff_read_at_full_depth(tmp_path):
    from videomama.io.frames import open_frames

    rng = np.random.default_rng(3)
    deep = rng.integers(0, 65536, (3, 12, 16, 3), dtype=np.uint16)
    for ext in ("png", "tif"):
        folder = tmp_path / ext
        folder.mkdir()
        for i in range(3):
            _write_oiio(folder / f"f.{i:04d}.{ext}", deep[i], oiio.UINT16)
        clip = open_frames(folder)
        got = clip[1].numpy()
        np.testing.assert_allclose(got, deep[1] / 65535.0, atol=1e-6)  # not 8-bit steps (error up to 1/510)


def test_10_bit_video_decodes_at_full_depth(tmp_path):
    import av

    from videomama.io.frames import open_frames

    ramp = np.linspace(0, 1, 64 * 48 * 3).reshape(48, 64, 3)
    arr = np.rint(ramp * 65535).astype(np.uint16)
    path = tmp_path / "ten_bit.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gbrp10le"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb48le")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    clip = open_frames(path)
    frame = clip[1].numpy()
    assert len(clip) == 3
    assert len(np.unique(frame)) > 600  # 10-bit levels survive (8 bits would leave at most 256)
    assert np.abs(frame - ramp).max() < 1.5 / 1023


def _write_video(path: Path, frames: int, movflags: str | None = None) -> None:
    import av

    rng = np.random.default_rng(0)
    options = {"movflags": movflags} if movflags else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(frames):
            img = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_videos_are_refused_with_both_counts(tmp_path):
    mp4, mkv = tmp_path / "cut.mp4", tmp_path / "cut.mkv"
    _write_video(mp4, 30, "+faststart")  # header first: it still declares 30 frames
    _truncate(mp4, 0.1)
    _write_video(mkv, 30)
    _truncate(mkv, 1 / 12)
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(30):
        _png8(masks / f"{i:05d}.png", np.ones((48, 64)))
    cases = [(mp4, masks, "--frames video"), (mp4, masks / "00000.png", "--frames video"),
             (mkv, masks, "--frames video"), (masks, mp4, "--masks video")]
    for frames, mask, who in cases:
        res = run_cli("matte", "--frames", frames, "--masks", mask, "--out", tmp_path / "out")
        line = _one_error_line(res, who)
        assert "but its container declares 30" in line and "truncated" in line, line
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_rgba_masks_with_the_matte_in_alpha_and_empty_masks(sequence, tmp_path):
    from videomama.io.frames import open_frames

    _, _, masks = sequence
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    for i in range(3):
        arr = np.zeros((40, 56, 4), np.uint8)
        arr[..., 3] = np.rint(masks[i].numpy() * 255)
        Image.fromarray(arr, mode="RGBA").save(rgba / f"m{i}.png")
    clip = open_frames(rgba, "--masks", kind="masks")
    assert torch.equal(clip[1], masks[1])  # the matte comes from alpha, not the black RGB

    # White RGB with the matte in alpha, too; RGB content with opaque alpha stays RGB.
    white = np.full((40, 56, 4), 255, np.uint8)
    white[..., 3] = np.rint(masks[0].numpy() * 255)
    Image.fromarray(white, mode="RGBA").save(tmp_path / "white.png")
    assert torch.equal(open_frames(tmp_path / "white.png", kind="masks")[0], masks[0])
    grey = np.full((40, 56, 4), 255, np.uint8)
    grey[..., :3] = np.rint(masks[0].numpy() * 255)[..., None]
    Image.fromarray(grey, mode="RGBA").save(tmp_path / "grey.png")
    assert torch.equal(open_frames(tmp_path / "grey.png", kind="masks")[0], masks[0])


def test_all_black_mask_and_unused_options_warn(sequence, tmp_path):
    root, _, _ = sequence
    black = tmp_path / "black.png"
    _png8(black, np.zeros((40, 56)))
    res = run_cli("matte", "--frames", root / "plate", "--masks", black, "--out", tmp_path / "out",
                  "--device", "cuda", "--precision", "fp16", "--memory", "low_vram", "--detail", "--end", 1002)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("WARNING")]
    assert any("is all black" in w and "black.png" in w for w in warnings), res.stderr
    for flag in ("--device cuda", "--precision fp16", "--memory low_vram", "--detail"):
        assert any(f"{flag} does nothing without --unet and --vae" in w for w in warnings), (flag, res.stderr)
    assert len(warnings) == 5


def test_frames_of_two_sizes_are_one_line(tmp_path):
    frames, masks = tmp_path / "f", tmp_path / "m"
    frames.mkdir()
    masks.mkdir()
    for i in range(4):
        size = (64, 80) if i != 2 else (72, 80)
        _png8(frames / f"f{i}.png", np.full((*size, 3), 0.5))
        _png8(masks / f"f{i}.png", np.ones((64, 80)))
    res = run_cli("matte", "--frames", frames, "--masks", masks, "--out", tmp_path / "out")
    _one_error_line(res, "--frames: 'f2.png' is 80x72 but 'f0.png' is 80x64")


def test_bad_out_is_refused_before_any_work(sequence, tmp_path):
    root, _, _ = sequence
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    # Weights that do not exist: the --out check must come first, before they would load.
    weights = ["--unet", tmp_path / "no_unet.safetensors", "--vae", tmp_path / "no_vae.safetensors"]
    for out, needle in ((a_file, "is an existing file"), (a_file / "sub", "which is a file")):
        res = run_cli("matte", "--frames", root / "plate", "--masks", root / "roto", "--out", out, *weights)
        _one_error_line(res, needle)
    if os.geteuid() != 0:  # root writes everywhere: no unwritable folder to test with
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        res = run_cli("matte", "--frames", root / "plate", "--masks", root / "roto", "--out", locked / "o", *weights)
        _one_error_line(res, "no write permission")
    from videomama.errors import InputError
    from videomama.io.writers import check_output_dir

    with pytest.raises(InputError, match="is an existing file"):
        check_output_dir(a_file)


def test_mask_count_messages():
    from videomama.errors import InputError
    from videomama.pipeline.masks import MaskSequence

    with pytest.raises(InputError, match=r"has 3 masks for 1 frame;"):
        MaskSequence(torch.zeros(3, 8, 8), 1, 0.5, "--masks")
    with pytest.raises(InputError, match=r"has 2 masks for 5 frames;"):
        MaskSequence(torch.zeros(2, 8, 8), 5, 0.5, "--masks")


def test_batch_key_changes_with_output_settings(tmp_path):
    from videomama.distributed.markers import result_key
    from videomama.options import MatteOptions
    from videomama.shots import ShotFiles, ShotSettings

    keys = {result_key(tmp_path, tmp_path, 8, MatteOptions(), ShotSettings(), files)
            for files in (ShotFiles(), ShotFiles(format="exr"), ShotFiles(rgba="straight"), ShotFiles(start=3))}
    assert len(keys) == 4


def _window_disagreement_clip(overlap: int) -> torch.Tensor:
    """A clip matted by a stand-in whose windows disagree by a window-wide term (a seam to find)."""
    from standins import PerFrameModel

    from videomama.options import MatteOptions
    from videomama.pipeline.matte import matte_clip

    frames, masks = smooth_clip(60)
    model = PerFrameModel(noise_gain=0.0, window_gain=0.2)
    opts = MatteOptions(resolution=96, window=16, overlap=overlap, posterior="mean")
    return matte_clip(model, frames, torch.zeros_like(masks), opts)


def test_seam_report_finds_window_boundaries():
    from videomama.eval.seams import frame_steps, seams_of_steps

    cut = seams_of_steps(frame_steps(list(_window_disagreement_clip(0).numpy())), 16, 0)
    faded = seams_of_steps(frame_steps(list(_window_disagreement_clip(4).numpy())), 16, 4)
    # Windows 0-15, 16-31, 32-47, 44-59: the steps across each boundary (from the frame before the
    # shared ones to the frame after them).
    assert [(s.first, s.last) for s in cut.seams] == [(15, 16), (31, 32), (43, 48)]
    # Windows 0-15, 12-27, 24-39, 36-51, 44-59.
    assert [(s.first, s.last) for s in faded.seams] == [(11, 16), (23, 28), (35, 40), (43, 52)]
    print(f"seam ratio worst/mean: overlap 0 {cut.worst:.2f}/{cut.mean:.2f}, overlap 4 {faded.worst:.2f}/{faded.mean:.2f}")
    assert cut.worst > 3.0  # a hard cut stands out (measured 4.20)
    assert faded.worst < 2.0 and faded.mean < 0.5 * cut.mean  # the cross-fade spreads it (measured 1.74, 1.53 vs 3.31)


def test_evaluate_prints_the_seam_report_without_ground_truth(tmp_path):
    from videomama.io.writers import write_alpha_sequence

    alpha = _window_disagreement_clip(0)
    folder = write_alpha_sequence(enumerate(alpha), tmp_path)
    res = run_cli("evaluate", "--pred", folder, "--window", 16, "--overlap", 0)
    assert res.returncode == 0, res.stderr
    assert "3 boundaries" in res.stdout and "00015-00016" in res.stdout, res.stdout
    worst = float(res.stdout.split("seam ratio: worst ")[1].split(",")[0])
    assert worst > 3.0
    res = run_cli("evaluate", "--pred", folder, "--gt", folder)  # with ground truth: metrics, then seams
    assert res.returncode == 0 and "MAD" in res.stdout and "seam ratio" in res.stdout, res.stderr


def test_batch_split_shot_keeps_frame_numbers_and_format(sequence, tmp_path):
    """A numbered shot split across segments (batch) is named and encoded as matte_shot's."""
    from videomama.distributed.batch import run_batch
    from videomama.distributed.engines import LocalEngine
    from videomama.distributed.manifest import ShotEntry
    from videomama.options import MatteOptions
    from videomama.shots import ShotFiles, ShotSettings, load_engine, matte_shot

    root, _, _ = sequence
    files = ShotFiles(format="exr")
    settings = ShotSettings()
    entry = ShotEntry("s", root / "plate", root / "roto")
    reports = run_batch([entry], tmp_path / "batch", settings, MatteOptions(), LocalEngine(settings),
                        split_frames=3, files=files)
    assert reports[0].status == "done" and reports[0].segments > 1, reports[0]
    whole = matte_shot(root / "plate", root / "roto", tmp_path / "whole", MatteOptions(), load_engine(settings),
                       files=files)
    names = sorted(p.name for p in whole.iterdir())
    assert names == [f"shot_v01.{n}.exr" for n in range(1001, 1009)]
    assert sorted(p.name for p in (tmp_path / "batch" / "s" / "alpha").iterdir()) == names
    for name in names:
        np.testing.assert_array_equal(_read_oiio(whole / name)[0], _read_oiio(tmp_path / "batch" / "s" / "alpha" / name)[0])


def test_10_bit_dpx_read_at_full_depth(tmp_path):
    from videomama.io.frames import open_frames

    ramp = np.linspace(0, 1, 32 * 24 * 3).reshape(24, 32, 3)
    spec = oiio.ImageSpec(32, 24, 3, oiio.UINT16)
    spec.attribute("oiio:BitsPerSample", 10)
    out = oiio.ImageOutput.create(str(tmp_path / "p.1001.dpx"))
    assert out.open(str(tmp_path / "p.1001.dpx"), spec)
    out.write_image(np.rint(ramp * 65535).astype(np.uint16))
    out.close()
    frame = open_frames(tmp_path)[0].numpy()
    assert len(np.unique(frame)) > 600 and np.abs(frame - ramp).max() < 1 / 1023


def test_without_openimageio_exr_is_one_line(sequence, tmp_path):
    """Where OpenImageIO is missing, EXR in or out is one line saying what to install."""
    root, _, _ = sequence
    blocker = tmp_path / "no_oiio"
    blocker.mkdir()
    (blocker / "OpenImageIO.py").write_text("raise ImportError('OpenImageIO is not installed here')\n")
    env_path = f"{blocker}{os.pathsep}{Path(__file__).resolve().parents[1]}"
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "videomama", *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": env_path}, timeout=300)

    res = run("matte", "--frames", root / "plate", "--masks", root / "roto", "--out", tmp_path / "o", "--format", "exr")
    _one_error_line(res, "--format exr needs OpenImageIO, which is not installed; run `pip install OpenImageIO`")
    exr = tmp_path / "exr"
    exr.mkdir()
    _write_oiio(exr / "p.1001.exr", np.zeros((40, 56, 3)), oiio.HALF)
    res = run("matte", "--frames", exr, "--masks", root / "roto" / "roto.1001.png", "--out", tmp_path / "o")
    _one_error_line(res, "reading .exr files ('p.1001.exr') needs OpenImageIO")
    assert not any((tmp_path / "o").iterdir())  # nothing staged stays behind
