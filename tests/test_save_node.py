"""SaveMatteSequence on the stand-in host: numbered 16-bit PNG / float EXR sequences in the output
folder, read back exactly, a new run number per run, nothing half-written."""

from __future__ import annotations

import importlib

import comfy_standin
import numpy as np
import pytest
import torch
from PIL import Image

from videomama.io.images import read_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _save(pack, alpha, **kw):
    args = dict(filename_prefix="videomama/shot010", format="png16", first_frame=1001)
    args.update(kw)
    return comfy_standin.run_node_output(pack.registered["SaveMatteSequence"], alpha=alpha, **args)


def _ramp(t: int = 3, h: int = 12, w: int = 20) -> torch.Tensor:
    return torch.linspace(0, 1, t * h * w).reshape(t, h, w)


def test_png16_sequence_with_frame_numbers_read_back_exactly(pack, host):
    alpha = _ramp()
    out = _save(pack, alpha)
    folder = host.base / "output" / "videomama"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["shot010_00001_.1001.png", "shot010_00001_.1002.png", "shot010_00001_.1003.png"]
    assert out.ui["images"][0] == {"filename": "shot010_00001_.1001.png", "subfolder": "videomama", "type": "output"}
    for i, name in enumerate(names):
        im = Image.open(folder / name)
        assert im.mode in ("I;16", "I") and im.size == (20, 12)
        stored = np.asarray(im, dtype=np.float64) / 65535.0
        assert np.abs(stored - alpha[i].numpy()).max() <= 0.5 / 65535 + 1e-9  # 16-bit steps, rounded
    # A second run gets the next run number and leaves the first untouched.
    _save(pack, alpha[:1], first_frame=0)
    assert sorted(p.name for p in folder.iterdir()) == names + ["shot010_00002_.0000.png"]


def test_exr_alpha_and_rgba_sequences(pack, host):
    pytest.importorskip("OpenImageIO")
    alpha = _ramp(2)
    rgba = torch.cat([torch.rand(2, 12, 20, 3), alpha[..., None]], dim=-1)
    out = _save(pack, alpha, format="exr", rgba=rgba, filename_prefix="plates/sh020")
    folder = host.base / "output" / "plates"
    assert sorted(p.name for p in folder.iterdir()) == [
        "sh020_00001_.1001.exr", "sh020_00001_.1002.exr", "sh020_00001_rgba.1001.exr", "sh020_00001_rgba.1002.exr"]
    assert out.ui["images"] == []  # browsers cannot show EXR
    pixels, is_float = read_image(folder / "sh020_00001_.1002.exr")
    assert is_float and pixels.shape[:2] == (12, 20)
    assert np.abs(pixels[..., 0] - alpha[1].numpy()).max() < 1e-7  # float: exact
    colour, _ = read_image(folder / "sh020_00001_rgba.1001.exr")
    assert colour.shape == (12, 20, 4) and np.abs(colour - rgba[0].numpy()).max() < 1e-7


def test_bad_inputs_are_one_line_and_write_nothing(pack, host):
    alpha = _ramp(2)
    with pytest.raises(pack.videomama.errors.InputError, match="outside ComfyUI's output folder"):
        _save(pack, alpha, filename_prefix="../../elsewhere/matte")
    with pytest.raises(pack.videomama.errors.InputError, match="rgba has shape .* 4 channels and 2 frames"):
        _save(pack, alpha, rgba=torch.rand(2, 12, 20, 3))
    with pytest.raises(pack.videomama.errors.InputError, match="4 channels and 2 frames of 20x12 like the matte"):
        _save(pack, alpha, rgba=torch.rand(2, 24, 40, 4))  # another size than the matte
    output = host.base / "output"
    assert not output.exists() or not [p for p in output.rglob("*") if p.is_file()]


def test_a_failing_frame_leaves_no_file(pack, host, monkeypatch):
    from videomama.io import writers

    calls = []

    def flaky(path, alpha):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        writers.write_alpha_png16(path, alpha)

    monkeypatch.setattr(pack.videomama.io.writers, "write_alpha_png16", flaky)
    with pytest.raises(OSError):
        _save(pack, _ramp(3))
    folder = host.base / "output" / "videomama"
    assert len(calls) == 2 and list(folder.iterdir()) == []  # the first frame was staged, then removed


def test_rgba_png16_without_openimageio_reads_back_exactly(pack, host, monkeypatch):
    """ComfyUI users rarely have OpenImageIO: RGBA 16-bit PNGs are then written by our own PNG
    encoder; OpenImageIO (here, for checking) reads them back to the 16-bit step."""
    oiio = pytest.importorskip("OpenImageIO")
    images = importlib.import_module(f"{pack.__name__}.videomama.io.images")  # the pack's own copy
    monkeypatch.setattr(images, "_oiio_or_none", lambda: None)
    alpha = _ramp(2)
    rgba = torch.cat([torch.rand(2, 12, 20, 3, generator=torch.Generator().manual_seed(0)), alpha[..., None]], dim=-1)
    _save(pack, alpha, rgba=rgba)
    path = host.base / "output" / "videomama" / "shot010_00001_rgba.1002.png"
    raw = oiio.ImageSpec()
    raw.attribute("oiio:UnassociatedAlpha", 1)  # the stored (straight) values, not multiplied by alpha
    inp = oiio.ImageInput.open(str(path), raw)
    spec = inp.spec()
    stored = inp.read_image(oiio.UINT16)
    inp.close()
    assert (spec.nchannels, spec.format.basetype, spec.width, spec.height) == (4, oiio.UINT16, 20, 12)
    expected = np.clip(np.rint(rgba[1].double().numpy() * 65535), 0, 65535)
    assert np.array_equal(stored.astype(np.float64), expected)
