"""The real CLI in a subprocess: `python -m videomama matte` and `convert`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from standins import smooth_clip

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "videomama", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _write_pngs(folder: Path, images: torch.Tensor, mode: str, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        arr = (img.numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).convert(mode).save(folder / (names[i] if names else f"frame_{i}.png"))
    return folder


@pytest.fixture(scope="module")
def clip_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    frames, masks = smooth_clip(11, 50, 90)
    # Natural sort: frame_2 must come before frame_10.
    _write_pngs(root / "frames", frames, "RGB")
    _write_pngs(root / "masks", masks, "L")
    return root, frames, masks


def _read_alpha_dir(folder: Path) -> list[np.ndarray]:
    from videomama.io.frames import natural_key

    files = sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
    out = []
    for f in files:
        with Image.open(f) as im:
            assert im.mode.startswith("I;16") or im.mode == "I", im.mode
            out.append(np.asarray(im))
    return out


def test_matte_writes_16bit_pngs_at_source_size(clip_dirs, layouts, tmp_path):
    root, frames, _ = clip_dirs
    res = run_cli("matte", "--frames", root / "frames", "--masks", root / "masks", "--out", tmp_path,
                  "--unet", layouts["unet_file"], "--vae", layouts["svd_xt_single_file"],
                  "--resolution", 128, "--window", 8, "--overlap", 2, "--posterior", "mean", "--progress")
    assert res.returncode == 0, res.stderr
    files = sorted(p.name for p in (tmp_path / "alpha").iterdir())
    # One per frame, nothing else; frame_0.png ... frame_10.png is a numbered sequence: its names are kept.
    assert files == sorted(f"frame_{i}.png" for i in range(11))
    assert [p.name for p in tmp_path.iterdir()] == ["alpha"]  # no staging leftovers
    alphas = _read_alpha_dir(tmp_path / "alpha")
    assert all(a.shape == (50, 90) and a.dtype == np.uint16 for a in alphas)
    assert len(np.unique(np.stack(alphas))) > 256  # real 16-bit precision, not 8-bit steps
    assert "11/11" in res.stderr or "windows" in res.stderr  # progress bar on stderr

    # Same result as the library called directly (same weights, options, seed).
    from videomama.io.frames import open_frames
    from videomama.io.writers import alpha_to_uint16
    from videomama.options import MatteOptions
    from videomama.pipeline.matte import matte_clip
    from videomama.weights.checkpoints import load_model

    model = load_model(layouts["unet_file"], layouts["svd_xt_single_file"])
    lib = matte_clip(model, open_frames(root / "frames"), open_frames(root / "masks"),
                     MatteOptions(resolution=128, window=8, overlap=2, posterior="mean"))
    diff = np.abs(np.stack(alphas).astype(np.int64) - alpha_to_uint16(lib).astype(np.int64)).max()
    assert diff <= 1


def test_matte_reads_video_files(clip_dirs, layouts, tmp_path):
    import av

    root, frames, masks = clip_dirs
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 48, "yuv444p"
        stream.options = {"crf": "0"}
        for img in frames:
            arr = (torch.nn.functional.interpolate(img.permute(2, 0, 1)[None], size=(48, 96))[0]
                   .permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    one_mask = tmp_path / "mask.png"
    Image.fromarray((masks[0].numpy() * 255).astype(np.uint8)).save(one_mask)
    res = run_cli("matte", "--frames", video, "--masks", one_mask, "--out", tmp_path / "out",
                  "--unet", layouts["unet_folder"], "--vae", layouts["vae_folder"], "--resolution", 64, "--detail")
    assert res.returncode == 0, res.stderr
    alphas = _read_alpha_dir(tmp_path / "out" / "alpha")
    assert len(alphas) == 11 and alphas[0].shape == (48, 96)
    assert "different aspect" in res.stderr  # the 90x50 mask on a 96x48 video is resized, with a warning


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda a, r, L: a.__setitem__(a.index("--masks") + 1, str(r / "few_masks")), "masks"),
        (lambda a, r, L: a.__setitem__(a.index("--unet") + 1, str(L["svd_base_unet_file"])), "8 input channels"),
        (lambda a, r, L: a.__setitem__(a.index("--vae") + 1, str(L["image_vae_file"])), "image VAE"),
        (lambda a, r, L: a.__setitem__(a.index("--unet") + 1, str(L["truncated"])), "truncated or corrupt"),
        (lambda a, r, L: a.__setitem__(a.index("--frames") + 1, str(r / "nope")), "not found"),
        (lambda a, r, L: a.extend(["--overlap", "16"]), "overlap=16"),
        (lambda a, r, L: a.__setitem__(a.index("--frames") + 1, str(r / "nan_frames")), "cannot read image"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_and_no_partial_output(clip_dirs, layouts, tmp_path, change, needle):
    root, frames, masks = clip_dirs
    if not (root / "few_masks").exists():
        _write_pngs(root / "few_masks", masks[:4], "L")
        bad = _write_pngs(root / "nan_frames", frames, "RGB")
        (bad / "frame_5.png").write_bytes(b"not a png")  # a corrupt frame half-way through the clip
    args = ["matte", "--frames", str(root / "frames"), "--masks", str(root / "masks"), "--out", str(tmp_path),
            "--unet", str(layouts["unet_file"]), "--vae", str(layouts["vae_file_sgm"]), "--resolution", "64"]
    change(args, root, layouts)
    res = run_cli(*args)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert not (tmp_path / "alpha").exists()
    assert not any(p.name.startswith(".alpha") for p in tmp_path.iterdir())


def test_convert_writes_a_single_file_that_loads_back(layouts, tiny_unet, tmp_path):
    out = tmp_path / "videomama_unet_fp16.safetensors"
    res = run_cli("convert", "--unet", layouts["unet_release_root"], "--out", out, "--dtype", "fp16")
    assert res.returncode == 0, res.stderr
    from videomama.weights.checkpoints import identify, load_unet
    from videomama.weights.files import open_tensor_file

    index = open_tensor_file(out)
    assert set(index.dtypes.values()) == {torch.float16}
    assert "config" in index.metadata
    assert identify(out).kind == "videomama_unet"
    unet = load_unet(out, torch.float32)
    ref = tiny_unet.state_dict()
    err = max(float((unet.state_dict()[k] - ref[k]).abs().max()) for k in ref)
    assert 0 < err < 1e-2
    assert not list(tmp_path.glob("*.partial"))

    bad = run_cli("convert", "--unet", layouts["vae_file_sgm"], "--out", tmp_path / "x.safetensors")
    assert bad.returncode == 2 and "VAE was given as the UNet" in bad.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_low_vram_plan_gives_the_same_matte(clip_dirs, layouts, tmp_path):
    """--memory low_vram streams UNet blocks from host memory; the PNGs must not change."""
    root, _, _ = clip_dirs
    outs = {}
    for plan in ("default", "low_vram"):
        res = run_cli("-v", "matte", "--frames", root / "frames", "--masks", root / "masks", "--out", tmp_path / plan,
                      "--unet", layouts["unet_file"], "--vae", layouts["vae_file_sgm"], "--resolution", 64,
                      "--window", 6, "--overlap", 2, "--memory", plan)
        assert res.returncode == 0, res.stderr
        assert f"memory plan '{plan}'" in res.stderr
        outs[plan] = np.stack(_read_alpha_dir(tmp_path / plan / "alpha")).astype(np.int64)
    # low_vram also encodes one image per VAE call instead of 8: float rounding only, which
    # random tiny weights amplify to ~1e-3 (streaming itself is bit-identical: test_memory_plans.py).
    diff = np.abs(outs["default"] - outs["low_vram"]) / 65535
    assert diff.max() < 2e-3 and diff.mean() < 1e-4
