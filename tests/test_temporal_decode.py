"""videomama.pipeline.temporal_decode: diffusers' temporal decode, computed exactly, in a fraction of its memory.

Memory is measured device-independently as the peak bytes of live tensors created during a
decode (the TorchDispatchMode counter of ``benchmarks/bench_matte.py``). The RSS side and the
real-size figures at larger sizes are in ``benchmarks/bench_decode.py``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks.bench_matte import LiveTensorBytes
from videomama.pipeline.model import VideoMaMaModel
from videomama.pipeline.temporal_decode import decode_chunk, layer_params
from videomama.weights.checkpoints import SVD_VAE_CONFIG, load_vae
from videomama.weights.configs import build_random_vae

TESTS = Path(__file__).resolve().parent
SCALE = 0.18215
EXACT = 1e-5  # max |alpha difference| in fp32 (the bar)
PEAK_RATIO = 0.35  # activation peak of ours / diffusers' on the same chunk (the issue's bar)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _latents(frames: int, h: int, w: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(frames, 4, h, w, generator=gen) / SCALE).to(dtype)


def _alpha(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb.float() / 2.0 + 0.5).clamp(0.0, 1.0).mean(dim=1)


@torch.no_grad()
def _both(vae: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(diffusers' RGB, ours, diffusers' live peak bytes, ours)."""
    theirs_peak, ours_peak = LiveTensorBytes(), LiveTensorBytes()
    with theirs_peak:
        theirs = vae.decode(z, num_frames=z.shape[0]).sample
    with ours_peak:
        ours = decode_chunk(vae.decoder, z)
    return theirs, ours, theirs_peak.peak, ours_peak.peak


def test_real_svd_vae_exact_at_a_fraction_of_the_memory():
    """SVD-XT's real VAE config (random weights), one 8-frame chunk at 32x32."""
    vae = build_random_vae(SVD_VAE_CONFIG, seed=0)
    theirs, ours, theirs_peak, ours_peak = _both(vae, _latents(8, 4, 4))
    assert ours.shape == theirs.shape == (8, 3, 32, 32) and ours.dtype == theirs.dtype
    diff = float((_alpha(ours) - _alpha(theirs)).abs().max())
    assert diff <= EXACT, diff
    assert ours_peak <= PEAK_RATIO * theirs_peak, (ours_peak, theirs_peak)


@pytest.mark.parametrize(("frames", "h", "w"), [(3, 5, 7), (1, 6, 4), (5, 9, 3)])
def test_tiny_vae_exact_for_any_chunk(tiny_vae, frames: int, h: int, w: int):
    """Chunks shorter than 8 (1 included) and odd latent sizes (bands that do not divide the rows)."""
    theirs, ours, _, _ = _both(tiny_vae, _latents(frames, h, w, seed=frames))
    assert float((_alpha(ours) - _alpha(theirs)).abs().max()) <= EXACT
    assert float((ours - theirs).abs().max()) <= 2 * EXACT


def test_tiny_vae_peak_scales_with_pixels(tiny_vae):
    """8 frames at 64x64 and at 128x128: exact, at most 0.35x diffusers' peak at both, and
    4x the pixels give 4x our peak (within 10 %): the saving holds at any size."""
    peaks = []
    for side in (8, 16):
        theirs, ours, theirs_peak, ours_peak = _both(tiny_vae, _latents(8, side, side))
        assert float((_alpha(ours) - _alpha(theirs)).abs().max()) <= EXACT
        assert ours_peak <= PEAK_RATIO * theirs_peak, (side, ours_peak, theirs_peak)
        peaks.append(ours_peak)
    assert 3.6 <= peaks[1] / peaks[0] <= 4.4, peaks


def test_temporal_layers_really_mix_the_chunk(tiny_vae):
    """Guards the tests above: decoding frames alone differs, so a decoder that lost the
    chunk-wide statistics or the frame mixing could not pass them."""
    z = _latents(8, 8, 8)
    whole = decode_chunk(tiny_vae.decoder, z)
    alone = torch.cat([decode_chunk(tiny_vae.decoder, z[t : t + 1]) for t in range(8)])
    assert float((_alpha(whole) - _alpha(alone)).abs().max()) > 100 * EXACT


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_as_accurate_as_diffusers(tiny_vae, dtype: torch.dtype):
    """fp16/bf16: finite, and as close to the fp32 decode as diffusers' decode in that dtype."""
    z = _latents(8, 4, 4)  # small: fp16 convolutions are slow on the CPU
    with torch.no_grad():
        reference = _alpha(tiny_vae.decode(z, num_frames=8).sample)
    vae = copy.deepcopy(tiny_vae).to(dtype)
    theirs, ours, _, _ = _both(vae, z.to(dtype))
    assert ours.dtype == dtype and bool(torch.isfinite(ours).all())
    err_ours = (_alpha(ours) - reference).abs()
    err_theirs = (_alpha(theirs) - reference).abs()
    assert float(err_ours.max()) <= 1.5 * float(err_theirs.max())
    assert float(err_ours.mean()) <= 1.2 * float(err_theirs.mean())
    assert float((_alpha(ours) - _alpha(theirs)).abs().max()) <= 2 * float(err_theirs.max())


def test_decode_alpha_takes_the_low_memory_path(tiny_unet, tiny_vae):
    """VideoMaMaModel.decode_alpha (16 frames, chunks of 8) = diffusers per chunk, in a fraction of the memory."""
    model = VideoMaMaModel(tiny_unet, tiny_vae)
    latents = _latents(16, 8, 8) * SCALE
    counter = LiveTensorBytes()
    with counter, torch.no_grad():
        alpha = model.decode_alpha(latents, 8)
        base = counter.peak
    with torch.no_grad():
        reference = torch.cat([_alpha(tiny_vae.decode(latents[s : s + 8] / SCALE, num_frames=8).sample)
                               for s in (0, 8)])
        theirs = LiveTensorBytes()
        with theirs:
            tiny_vae.decode(latents[:8] / SCALE, num_frames=8)
    assert alpha.shape == (16, 64, 64) and alpha.dtype == torch.float32
    assert float((alpha - reference).abs().max()) <= EXACT
    assert base <= PEAK_RATIO * theirs.peak


# ---------------------------------------------------------------------------------------------- hosts
def _fake_ops():
    spec = importlib.util.spec_from_file_location("fake_comfy_ops", TESTS / "fake_comfy" / "comfy" / "ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.disable_weight_init


def _switch_to(ops, module: nn.Module) -> list[nn.Module]:
    """What nodes.host.make_streamable does: exact torch layers -> their comfy.ops twins."""
    switched = []
    for m in module.modules():
        twin = getattr(ops, type(m).__name__, None)
        if type(m) in (nn.Linear, nn.Conv2d, nn.Conv3d, nn.GroupNorm) and twin is not None:
            m.__class__ = twin
            switched.append(m)
    return switched


def test_comfy_ops_layers_cast_and_patched_per_call(tiny_vae):
    """With ComfyUI's layer twins casting per call and a host patch on every weight and bias
    (as a LoRA-style patch would), our decoder uses the weights exactly as the layers do."""
    vae = copy.deepcopy(tiny_vae)
    layers = _switch_to(_fake_ops(), vae.decoder)
    z = _latents(8, 8, 8)
    with torch.no_grad():
        plain = vae.decode(z, num_frames=8).sample
    for m in layers:
        m.comfy_cast_weights = True
        m.weight_function = [lambda w: w * 1.25]
        m.bias_function = [lambda b: b + 0.05]
    theirs, ours, _, _ = _both(vae, z)
    assert float((theirs - plain).abs().max()) > 1e-2  # the patches matter
    assert float((_alpha(ours) - _alpha(theirs)).abs().max()) <= EXACT


def test_layer_params_plain_and_cast():
    norm = nn.GroupNorm(2, 4)
    like = torch.zeros(1, dtype=torch.bfloat16)
    assert layer_params(norm, like) == (norm.weight, norm.bias)
    norm.comfy_cast_weights = True
    norm.weight_function = [lambda w: w + 1]
    weight, bias = layer_params(norm, like)
    assert weight.dtype == bias.dtype == torch.bfloat16
    assert torch.equal(weight, torch.full((4,), 2.0, dtype=torch.bfloat16)) and not torch.equal(norm.weight, weight)


def test_sgm_loaded_vae(layouts, tiny_vae):
    """The VAE from an SGM-named single file (as ComfyUI users keep it) is diffusers' module
    after key conversion; the low-memory decode gives its decode."""
    from diffusers import AutoencoderKLTemporalDecoder

    vae = load_vae(layouts["vae_file_sgm"])
    assert type(vae) is AutoencoderKLTemporalDecoder
    theirs, ours, _, _ = _both(vae, _latents(8, 8, 8))
    assert float((_alpha(ours) - _alpha(theirs)).abs().max()) <= EXACT


@pytest.mark.skipif(not os.environ.get("COMFYUI_DIR"), reason="set COMFYUI_DIR (and COMFYUI_PYTHON) to run "
                    "the decoder on a VAE made of real comfy.ops layers")
def test_real_comfy_ops_layers():
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    run = subprocess.run([python, str(TESTS / "comfyui_ops_decode_probe.py"), os.environ["COMFYUI_DIR"]],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(result)
    assert result["layer_module"] == "comfy.ops" and result["cast_layers"] > 50
    assert result["patched_vs_plain"] > 1e-2
    assert result["max_abs_alpha_diff"] <= EXACT
