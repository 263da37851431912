"""Cross-check of the SGM -> diffusers VAE mapping against an independent implementation.

ComfyUI runs SVD's VAE with its own SGM-named code. When ``COMFYUI_DIR`` points at a ComfyUI
checkout, a random-weight ComfyUI VAE (SVD config) is built and run in a child process
(``tests/comfyui_svd_vae_reference.py``), its state dict is converted with
:func:`videomama.weights.sgm_vae.convert_sgm_vae_state_dict` into diffusers'
``AutoencoderKLTemporalDecoder``, and both must compute the same encoder moments, posterior
mode and temporal decodes (fp32, max abs diff < 1e-4) on 4 frames of 64x64.

Skipped when ``COMFYUI_DIR`` is not set (ComfyUI is GPL and never vendored here). ComfyUI's
``comfy`` modules need a few packages (e.g. ``psutil``) importable in this interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videomama.weights import sgm_vae
from videomama.weights.checkpoints import SVD_VAE_CONFIG

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(
    not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to cross-check the SVD VAE mapping against it"
)
REFERENCE_SCRIPT = Path(__file__).with_name("comfyui_svd_vae_reference.py")
TOLERANCE = 1e-4
FRAMES = 4
SIZE = 64


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    comfy = Path(COMFYUI_DIR or "")
    if not (comfy / "comfy" / "ldm" / "modules" / "temporal_ae.py").is_file():
        pytest.fail(f"COMFYUI_DIR={comfy} is not a ComfyUI checkout (no comfy/ldm/modules/temporal_ae.py)")
    out = tmp_path_factory.mktemp("comfyui_vae") / "reference.safetensors"
    cmd = [sys.executable, str(REFERENCE_SCRIPT), str(comfy), str(out), "--frames", str(FRAMES), "--size", str(SIZE)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"ComfyUI reference run failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return load_file(str(out))


@pytest.fixture(scope="module")
def converted_vae(reference: dict[str, torch.Tensor]):
    from diffusers import AutoencoderKLTemporalDecoder

    sgm_state = {k[len("sgm.") :]: v for k, v in reference.items() if k.startswith("sgm.")}
    assert sgm_vae.classify_vae_keys(sgm_state) == "sgm_temporal"
    assert len(sgm_state) == 372
    state = sgm_vae.convert_sgm_vae_state_dict(sgm_state)
    vae = AutoencoderKLTemporalDecoder(**SVD_VAE_CONFIG)
    vae.load_state_dict(state, strict=True)
    return vae.eval().requires_grad_(False)


def _max_diff(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, name
    diff = (ours - theirs).abs().max().item()
    scale = theirs.abs().max().item()
    # Printed so that `pytest -s` shows the measured numbers.
    print(f"{name}: max abs diff {diff:.3e} (reference max abs {scale:.3g})")
    return diff


def test_encoder_matches_comfyui(reference, converted_vae) -> None:
    with torch.no_grad():
        posterior = converted_vae.encode(reference["in.frames"]).latent_dist
    mean, logvar = reference["out.moments"].chunk(2, dim=1)
    assert mean.abs().max() > 0.1  # a real signal, not all zeros
    assert _max_diff("posterior mean", posterior.mean, mean) < TOLERANCE
    assert _max_diff("posterior logvar", posterior.logvar, logvar.clamp(-30.0, 20.0)) < TOLERANCE
    assert _max_diff("posterior mode", posterior.mode(), reference["out.mode"]) < TOLERANCE


@pytest.mark.parametrize(("frames_per_clip", "key"), [(FRAMES, "out.decoded_t"), (2, "out.decoded_t2")])
def test_temporal_decoder_matches_comfyui(reference, converted_vae, frames_per_clip: int, key: str) -> None:
    with torch.no_grad():
        ours = converted_vae.decode(reference["in.latents"], num_frames=frames_per_clip).sample
    theirs = reference[key]
    assert theirs.abs().max() > 0.1
    assert _max_diff(f"decode ({frames_per_clip} frames per clip)", ours, theirs) < TOLERANCE


def test_decoder_really_mixes_frames(reference) -> None:
    """Guards the test itself: with these weights the temporal layers change the output, so the
    decode comparison above would catch a wrong temporal mapping or blend direction."""
    diff = (reference["out.decoded_t"] - reference["out.decoded_t2"]).abs().max().item()
    assert diff > 1e-2


@pytest.mark.parametrize(("frames_per_clip", "key"), [(FRAMES, "out.decoded_t"), (2, "out.decoded_t2")])
def test_low_memory_decoder_matches_comfyui(reference, converted_vae, frames_per_clip: int, key: str) -> None:
    """The pack's default decode path (videomama.pipeline.temporal_decode) on the SGM-converted VAE."""
    from videomama.pipeline.temporal_decode import decode_chunk

    latents = reference["in.latents"]
    with torch.no_grad():
        ours = torch.cat([decode_chunk(converted_vae.decoder, latents[s : s + frames_per_clip])
                          for s in range(0, latents.shape[0], frames_per_clip)])
    assert _max_diff(f"low-memory decode ({frames_per_clip} frames per chunk)", ours, reference[key]) < TOLERANCE
