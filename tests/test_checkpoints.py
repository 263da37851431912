"""Every weight layout goes through the real loaders; wrong files are refused by name."""

from __future__ import annotations

import pytest
import torch

from videomama.errors import CheckpointError
from videomama.weights.checkpoints import identify, load_model, load_unet, load_vae


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


@pytest.mark.parametrize("layout", ["unet_release_root", "unet_folder", "unet_file", "unet_pickle"])
def test_unet_layouts_load_bit_exact(layouts, tiny_unet, layout):
    unet = load_unet(layouts[layout], torch.float32)
    assert _same_weights(unet, tiny_unet) == 0.0
    assert unet.conv_in.weight.dtype == torch.float32
    assert not any(p.requires_grad for p in unet.parameters())


@pytest.mark.parametrize("layout,stored", [("unet_folder_fp16", torch.float16), ("unet_file_bf16", torch.bfloat16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_unet_half_storage_loads_in_requested_dtype(layouts, tiny_unet, layout, stored, dtype):
    unet = load_unet(layouts[layout], dtype)
    assert {p.dtype for p in unet.parameters()} == {dtype}
    # The only error is the storage rounding (and the requested dtype's, if coarser).
    err = _same_weights(unet, tiny_unet)
    bound = 2 ** -7 if torch.bfloat16 in (stored, dtype) else 2 ** -10
    assert 0 < err <= bound * float(max(p.abs().max() for p in tiny_unet.parameters()))


def test_unet_config_inferred_from_shapes_matches_saved_config(layouts, tiny_unet):
    unet = load_unet(layouts["unet_file"])
    for key in ("in_channels", "block_out_channels", "layers_per_block", "cross_attention_dim",
                "addition_time_embed_dim", "num_attention_heads", "down_block_types", "up_block_types"):
        assert list(unet.config[key]) == list(tiny_unet.config[key]) if isinstance(unet.config[key], (list, tuple)) \
            else unet.config[key] == tiny_unet.config[key], key


@pytest.mark.parametrize("layout", ["vae_root", "vae_folder", "vae_file_diffusers", "vae_file_sgm", "svd_xt_single_file"])
def test_vae_layouts_load_bit_exact(layouts, tiny_vae, layout):
    vae = load_vae(layouts[layout], torch.float32)
    assert _same_weights(vae, tiny_vae) == 0.0
    assert vae.config.scaling_factor == pytest.approx(0.18215)


def test_svd_single_file_reads_only_the_vae_tensors(layouts, monkeypatch):
    """From svd_xt.safetensors only first_stage_model.* is read, never the UNet/CLIP tensors."""
    import videomama.weights.files as wio

    read: list[str] = []
    real_open = wio._open_safetensors

    def spying_open(path):
        index = real_open(path)
        inner = index.read
        index.read = lambda name: (read.append(name), inner(name))[1]
        return index

    monkeypatch.setattr(wio, "_open_safetensors", spying_open)
    load_vae(layouts["svd_xt_single_file"])
    assert read and all(name.startswith("first_stage_model.") for name in read)


@pytest.mark.parametrize(
    "layout,kind",
    [
        ("unet_release_root", "videomama_unet"),
        ("unet_file", "videomama_unet"),
        ("svd_base_unet_folder", "svd_unet"),
        ("svd_base_unet_file", "svd_unet"),
        ("vae_root", "temporal_vae"),
        ("vae_file_sgm", "temporal_vae"),
        ("svd_xt_single_file", "svd_checkpoint"),
        ("image_vae_file", "image_vae"),
        ("image_vae_folder", "image_vae"),
    ],
)
def test_identify(layouts, layout, kind):
    assert identify(layouts[layout]).kind == kind


@pytest.mark.parametrize(
    "loader,layout,words",
    [
        (load_unet, "svd_base_unet_folder", ["8 input channels", "VideoMaMa"]),
        (load_unet, "svd_base_unet_file", ["8 input channels"]),
        (load_unet, "vae_file_sgm", ["VAE was given as the UNet"]),
        (load_unet, "svd_xt_single_file", ["VAE was given as the UNet"]),
        (load_vae, "unet_file", ["UNet was given as the VAE"]),
        (load_vae, "unet_release_root", ["UNet was given as the VAE"]),
        (load_vae, "image_vae_file", ["image VAE", "temporal decoder"]),
        (load_vae, "image_vae_folder", ["image VAE"]),
        (load_unet, "truncated", ["truncated or corrupt", "download it again"]),
        (load_vae, "garbage", ["truncated or corrupt"]),
        (load_unet, "pickle_with_code", ["pickled code is never run", ".safetensors"]),
    ],
)
def test_wrong_files_are_refused_with_the_file_and_the_fix(layouts, loader, layout, words):
    with pytest.raises(CheckpointError) as err:
        loader(layouts[layout])
    message = str(err.value)
    assert str(layouts[layout]) in message or layouts[layout].name in message
    for word in words:
        assert word in message


def test_pickled_code_is_never_executed(layouts, capsys):
    with pytest.raises(CheckpointError):
        load_unet(layouts["pickle_with_code"])
    assert "pickled code ran" not in capsys.readouterr().out


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_unet(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_vae(tmp_path / "nope")


def test_load_model_never_builds_clip(layouts):
    model = load_model(layouts["unet_release_root"], layouts["svd_xt_single_file"])
    names = {type(m).__name__ for m in model.modules()}
    assert not any("CLIP" in n for n in names)
    assert {"UNetSpatioTemporalConditionModel", "AutoencoderKLTemporalDecoder"} <= names
