"""SVD's VAE follows its config's force_upcast; a non-finite alpha is one clear error, not zeros."""

from __future__ import annotations

import pytest
import torch
from run_helpers import disc_clip

from videomama.errors import VideoMaMaError
from videomama.options import MatteOptions
from videomama.pipeline.matte import matte_clip
from videomama.pipeline.model import VideoMaMaModel
from videomama.weights import precision
from videomama.weights.checkpoints import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


def test_fp16_asked_runs_the_unet_in_fp16_and_the_vae_as_its_config_asks(layouts):
    model = load_model(layouts["unet_file"], layouts["svd_xt_single_file"], dtype=torch.float16)
    assert model.vae.config.force_upcast
    assert model.unet.conv_in.weight.dtype == torch.float16
    assert {p.dtype for p in model.vae.parameters()} == {torch.float32}  # the CPU has no native bf16
    same = load_model(layouts["unet_file"], layouts["svd_xt_single_file"], dtype=torch.bfloat16)
    assert same.vae.decoder.conv_in.weight.dtype == torch.bfloat16  # only fp16 is upcast


def test_the_vae_dtype_per_gpu(monkeypatch):
    capability = {"value": (8, 0)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability["value"])
    assert precision.vae_dtype_for(torch.float16, "cuda") == torch.bfloat16  # A100/H100/RTX 30xx and later
    capability["value"] = (7, 5)  # T4 / RTX 20xx: bf16 only emulated
    assert precision.vae_dtype_for(torch.float16, "cuda") == torch.float32
    assert precision.vae_dtype_for(torch.float16, "cuda", force_upcast=False) == torch.float16
    assert precision.vae_dtype_for(torch.float32, "cuda") == torch.float32
    assert precision.vae_dtype_for(torch.float16, "cpu") == torch.float32


class OverflowingModel(VideoMaMaModel):
    """The real model whose decoder overflows (NaN) on frame 6 of the clip, as fp16 can."""

    def decode_alpha(self, latents, chunk):
        alpha = super().decode_alpha(latents, chunk)
        self.windows = getattr(self, "windows", 0) + 1
        if self.windows == 2:
            alpha[1, 3, 3] = float("nan")  # second window (frames 4-7): its frame 5
        return alpha


def test_a_nan_alpha_is_one_line_naming_the_frame(tiny_unet, tiny_vae):
    frames, masks = disc_clip(9)
    model = OverflowingModel(tiny_unet, tiny_vae)
    with pytest.raises(VideoMaMaError, match=r"^the model's alpha of frame 5 is NaN or infinite in float32: "
                                              r".*--precision fp32 or bf16") as err:
        matte_clip(model, frames, masks, MatteOptions(resolution=64, window=4, overlap=0))
    assert "\n" not in str(err.value)
