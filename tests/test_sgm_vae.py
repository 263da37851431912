"""The SGM <-> diffusers key mapping of SVD's temporal VAE (videomama.weights.sgm_vae).

``tests/data/svd_vae_sgm_keys.json`` lists the names and shapes of SVD's VAE in SGM layout
(made by instantiating ComfyUI's SGM implementation with the SVD config; 372 tensors,
97,742,775 parameters). These tests prove, without any weights file, that the mapping is a
bijection onto diffusers' real-size ``AutoencoderKLTemporalDecoder`` (plus the identity
``quant_conv`` SGM lacks) and that conversions are lossless. The numerical cross-check against
ComfyUI's implementation is in ``test_sgm_vae_comfyui.py``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from videomama.errors import CheckpointError
from videomama.weights import sgm_vae
from videomama.weights.checkpoints import SVD_VAE_CONFIG

DATA = Path(__file__).parent / "data" / "svd_vae_sgm_keys.json"
ATTN_WEIGHT = re.compile(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$")
TINY_2_LEVELS = {**SVD_VAE_CONFIG, "down_block_types": ["DownEncoderBlock2D"] * 2,
                 "block_out_channels": [32, 64], "layers_per_block": 1}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Distinct random values everywhere, so a swap of two same-shaped tensors cannot go unseen.

    Weights are already random (PyTorch's default init); norms, biases and blend factors start
    constant, so those (small, 1-D) are redrawn."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim <= 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.fixture(scope="module")
def sgm_shapes() -> dict[str, tuple[int, ...]]:
    data = json.loads(DATA.read_text())
    return {k: tuple(v) for k, v in data["tensors"].items()}


@pytest.fixture(scope="module")
def real_vae():
    """diffusers' VAE at SVD's real size with random weights (built once: ~1 s)."""
    from diffusers import AutoencoderKLTemporalDecoder

    vae = AutoencoderKLTemporalDecoder(**SVD_VAE_CONFIG)
    _randomise(vae, 0)
    return vae.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def diffusers_shapes(real_vae) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in real_vae.state_dict().items()}


def _meta(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _with_identity_quant_conv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**state, **sgm_vae.identity_quant_conv(4, state["quant_conv.weight"].dtype)}


# ----------------------------------------------------------------------------- (a) the key facts


def test_json_describes_svds_vae(sgm_shapes) -> None:
    data = json.loads(DATA.read_text())
    assert len(sgm_shapes) == data["num_tensors"] == 372
    assert sum(math.prod(s) for s in sgm_shapes.values()) == data["num_parameters"] == 97_742_775
    assert not any("quant_conv" in k for k in sgm_shapes)  # SVD's AutoencodingEngine has neither
    assert sgm_vae.classify_vae_keys(sgm_shapes) == "sgm_temporal"


def test_every_sgm_key_maps_once_onto_the_real_diffusers_vae(sgm_shapes, diffusers_shapes) -> None:
    mapped = {k: sgm_vae.sgm_vae_key_to_diffusers(k) for k in sgm_shapes}
    assert len(set(mapped.values())) == len(mapped) == 372  # injective
    # Nothing left over on either side, except diffusers' quant_conv (added as identity).
    assert set(diffusers_shapes) - set(mapped.values()) == {"quant_conv.weight", "quant_conv.bias"}
    assert set(mapped.values()) <= set(diffusers_shapes)
    reshaped = 0
    for key, new in mapped.items():
        src, dst = sgm_shapes[key], diffusers_shapes[new]
        if ATTN_WEIGHT.search(key):  # the only reshape: 1x1 conv (C, C, 1, 1) -> linear (C, C)
            assert src == (*dst, 1, 1), key
            reshaped += 1
        else:
            assert src == dst, (key, new)
    assert reshaped == 8  # q, k, v, proj_out in the encoder's and the decoder's middle attention


@pytest.mark.parametrize(
    ("sgm", "diffusers"),
    [
        ("encoder.down.1.block.0.nin_shortcut.weight", "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"),
        ("encoder.mid.block_2.norm1.bias", "encoder.mid_block.resnets.1.norm1.bias"),
        ("encoder.mid.attn_1.q.weight", "encoder.mid_block.attentions.0.to_q.weight"),
        ("encoder.mid.attn_1.k.bias", "encoder.mid_block.attentions.0.to_k.bias"),
        ("decoder.mid.attn_1.v.weight", "decoder.mid_block.attentions.0.to_v.weight"),
        ("encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight"),
        ("encoder.norm_out.weight", "encoder.conv_norm_out.weight"),
        ("decoder.mid.attn_1.norm.bias", "decoder.mid_block.attentions.0.group_norm.bias"),
        ("decoder.mid.block_1.mix_factor", "decoder.mid_block.resnets.0.time_mixer.mix_factor"),
        ("decoder.mid.block_2.time_stack.in_layers.0.weight",
         "decoder.mid_block.resnets.1.temporal_res_block.norm1.weight"),
        ("decoder.up.2.block.1.time_stack.in_layers.2.bias",
         "decoder.up_blocks.1.resnets.1.temporal_res_block.conv1.bias"),
        ("decoder.up.1.block.0.time_stack.out_layers.0.bias",
         "decoder.up_blocks.2.resnets.0.temporal_res_block.norm2.bias"),
        ("decoder.up.3.block.2.time_stack.out_layers.3.weight",
         "decoder.up_blocks.0.resnets.2.temporal_res_block.conv2.weight"),
        ("decoder.up.0.block.0.nin_shortcut.bias",
         "decoder.up_blocks.3.resnets.0.spatial_res_block.conv_shortcut.bias"),
        ("decoder.up.1.upsample.conv.weight", "decoder.up_blocks.2.upsamplers.0.conv.weight"),
        ("decoder.conv_out.time_mix_conv.weight", "decoder.time_conv_out.weight"),
    ],
)
def test_known_pairs(sgm: str, diffusers: str) -> None:
    assert sgm_vae.sgm_vae_key_to_diffusers(sgm) == diffusers
    assert sgm_vae.diffusers_vae_key_to_sgm(diffusers) == sgm


def test_key_functions_are_inverse(sgm_shapes, diffusers_shapes) -> None:
    for key in sgm_shapes:
        assert sgm_vae.diffusers_vae_key_to_sgm(sgm_vae.sgm_vae_key_to_diffusers(key)) == key
    for key in diffusers_shapes:
        assert sgm_vae.sgm_vae_key_to_diffusers(sgm_vae.diffusers_vae_key_to_sgm(key)) == key


def test_converting_the_real_layout_gives_exactly_the_diffusers_state_dict(sgm_shapes, diffusers_shapes) -> None:
    out = sgm_vae.convert_sgm_vae_state_dict(_meta(sgm_shapes))  # meta tensors: shapes only, no memory
    assert {k: tuple(v.shape) for k, v in out.items()} == diffusers_shapes


# ----------------------------------------------------------------------------- (b) lossless round trips


def test_real_size_round_trip_is_bit_identical(real_vae, sgm_shapes) -> None:
    state = _with_identity_quant_conv(real_vae.state_dict())
    sgm = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(state)
    assert {k: tuple(v.shape) for k, v in sgm.items()} == sgm_shapes  # exactly SVD's SGM layout
    back = sgm_vae.convert_sgm_vae_state_dict(sgm)
    assert set(back) == set(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_keep_policy_round_trips_a_non_identity_quant_conv(real_vae) -> None:
    state = real_vae.state_dict()
    with pytest.raises(CheckpointError, match="quant_conv is not the identity"):
        sgm_vae.convert_diffusers_vae_state_dict_to_sgm(state)
    sgm = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(state, quant_conv="keep")
    assert "quant_conv.weight" in sgm and len(sgm) == 374
    back = sgm_vae.convert_sgm_vae_state_dict(sgm)
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_fold_policy_and_other_sizes_compute_the_same_function() -> None:
    """A 2-level VAE with a random quant_conv: folded into encoder.conv_out, converted to SGM and
    back, it encodes to the same posterior and decodes bit-identically (32x32, 2 frames)."""
    from diffusers import AutoencoderKLTemporalDecoder

    vae = AutoencoderKLTemporalDecoder(**TINY_2_LEVELS)
    _randomise(vae, 1)
    vae.eval()
    sgm = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(vae.state_dict(), quant_conv="fold")
    assert "quant_conv.weight" not in sgm
    assert "decoder.up.1.upsample.conv.weight" in sgm and not any(k.startswith("decoder.up.0.upsample") for k in sgm)
    assert sgm["decoder.up.1.block.0.time_stack.in_layers.2.weight"].shape == (64, 64, 3, 1, 1)
    assert sgm["decoder.up.0.block.0.nin_shortcut.weight"].shape == (32, 64, 1, 1)
    again = AutoencoderKLTemporalDecoder(**TINY_2_LEVELS)
    again.load_state_dict(sgm_vae.convert_sgm_vae_state_dict(sgm), strict=True)
    again.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = vae.encode(x).latent_dist, again.encode(x).latent_dist
        assert (a.mean - b.mean).abs().max() < 1e-5 and (a.logvar - b.logvar).abs().max() < 1e-5
        assert torch.equal(vae.decode(z, num_frames=2).sample, again.decode(z, num_frames=2).sample)


def test_dtype_is_kept_and_quant_conv_follows_it() -> None:
    from diffusers import AutoencoderKLTemporalDecoder

    vae = AutoencoderKLTemporalDecoder(**TINY_2_LEVELS).half()
    sgm = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(_with_identity_quant_conv(vae.state_dict()))
    out = sgm_vae.convert_sgm_vae_state_dict(sgm)
    assert {v.dtype for v in out.values()} == {torch.float16}
    assert torch.equal(out["quant_conv.weight"].reshape(8, 8).float(), torch.eye(8))


# ----------------------------------------------------------------------------- (c) classify / refuse


def _sgm_image_keys(sgm_shapes) -> dict[str, tuple[int, ...]]:
    """SD-style image VAE in SGM layout: same encoder, plain decoder, quant and post-quant convs."""
    keys = {k: s for k, s in sgm_shapes.items() if ".time_stack." not in k and not k.endswith("mix_factor")
            and ".time_mix_conv." not in k}
    keys.update({"quant_conv.weight": (8, 8, 1, 1), "quant_conv.bias": (8,),
                 "post_quant_conv.weight": (4, 4, 1, 1), "post_quant_conv.bias": (4,)})
    return keys


def test_classify(sgm_shapes, diffusers_shapes) -> None:
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        image = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                              block_out_channels=[128, 256, 512, 512], layers_per_block=2)
    assert sgm_vae.classify_vae_keys(sgm_shapes) == "sgm_temporal"
    assert sgm_vae.classify_vae_keys(diffusers_shapes) == "diffusers_temporal"
    assert sgm_vae.classify_vae_keys(image.state_dict().keys()) == "diffusers_image"
    assert sgm_vae.classify_vae_keys(_sgm_image_keys(sgm_shapes)) == "sgm_image"
    assert sgm_vae.classify_vae_keys(sgm_vae.SGM_VAE_PREFIX + k for k in sgm_shapes) is None  # prefix not stripped
    assert sgm_vae.classify_vae_keys(["conv_in.weight", "time_embedding.linear_1.weight"]) is None
    assert sgm_vae.classify_vae_keys([]) is None
    enc_only = [k for k in sgm_shapes if k.startswith("encoder.")]
    assert sgm_vae.classify_vae_keys(enc_only) is None


def test_strip_prefix(sgm_shapes) -> None:
    prefixed = {sgm_vae.SGM_VAE_PREFIX + k: v for k, v in _meta(sgm_shapes).items()}
    full = {"model.diffusion_model.x": torch.zeros(1), **prefixed}
    assert set(sgm_vae.strip_sgm_prefix(full)) == set(sgm_shapes)


def test_refuses_image_vae_and_prefixed_names(sgm_shapes) -> None:
    with pytest.raises(CheckpointError, match="image-only VAE"):
        sgm_vae.convert_sgm_vae_state_dict(_meta(_sgm_image_keys(sgm_shapes)))
    prefixed = {sgm_vae.SGM_VAE_PREFIX + k: v for k, v in _meta(sgm_shapes).items()}
    with pytest.raises(CheckpointError, match="strip that prefix"):
        sgm_vae.convert_sgm_vae_state_dict(prefixed)
    with pytest.raises(CheckpointError, match="AutoencoderKLTemporalDecoder"):
        sgm_vae.convert_diffusers_vae_state_dict_to_sgm(_meta(sgm_shapes))


def test_unknown_key_functions_raise_naming_the_key() -> None:
    for bad in ("decoder.up.0.block.0.conv_shortcut.weight", "loss.logvar", "first_stage_model.encoder.conv_in.weight",
                "decoder.mid.block_3.norm1.weight"):
        with pytest.raises(KeyError, match=re.escape(bad)):
            sgm_vae.sgm_vae_key_to_diffusers(bad)
    with pytest.raises(KeyError, match="decoder level 4"):
        sgm_vae.sgm_vae_key_to_diffusers("decoder.up.4.block.0.norm1.weight")
    with pytest.raises(KeyError, match="post_quant_conv"):
        sgm_vae.diffusers_vae_key_to_sgm("post_quant_conv.weight")


def test_refuses_leftover_missing_and_misshapen_tensors(sgm_shapes) -> None:
    extra = {**_meta(sgm_shapes), "decoder.up.0.attn.0.q.weight": torch.empty(128, 128, 1, 1, device="meta")}
    with pytest.raises(CheckpointError, match=r"1 tensor\(s\) are not part .*decoder\.up\.0\.attn\.0\.q\.weight"):
        sgm_vae.convert_sgm_vae_state_dict(extra)
    missing = _meta(sgm_shapes)
    del missing["decoder.up.2.block.1.time_stack.in_layers.2.bias"]
    with pytest.raises(CheckpointError, match=r"1 missing \(e\.g\. decoder\.up_blocks\.1\.resnets\.1\.temporal"):
        sgm_vae.convert_sgm_vae_state_dict(missing)
    no_encoder = {k: v for k, v in _meta(sgm_shapes).items() if not k.startswith("encoder.")}
    with pytest.raises(CheckpointError, match="not a complete temporal VAE"):
        sgm_vae.convert_sgm_vae_state_dict(no_encoder)
    misshapen = {**_meta(sgm_shapes), "decoder.mid.block_1.mix_factor": torch.empty(2, device="meta")}
    with pytest.raises(CheckpointError, match="wrong shape"):
        sgm_vae.convert_sgm_vae_state_dict(misshapen)
    bad_attn = {**_meta(sgm_shapes), "encoder.mid.attn_1.q.weight": torch.empty(512, 512, 3, 3, device="meta")}
    with pytest.raises(CheckpointError, match="attention projection"):
        sgm_vae.convert_sgm_vae_state_dict(bad_attn)


def test_post_quant_conv_only_when_identity(sgm_shapes) -> None:
    base = _meta(sgm_shapes)
    identity = {"post_quant_conv.weight": torch.eye(4).reshape(4, 4, 1, 1), "post_quant_conv.bias": torch.zeros(4)}
    assert len(sgm_vae.convert_sgm_vae_state_dict({**base, **identity})) == 374
    other = {**identity, "post_quant_conv.bias": torch.full((4,), 0.5)}
    with pytest.raises(CheckpointError, match="non-identity 'post_quant_conv'"):
        sgm_vae.convert_sgm_vae_state_dict({**base, **other})


def test_bad_quant_conv_policy(real_vae) -> None:
    with pytest.raises(ValueError, match="quant_conv must be"):
        sgm_vae.convert_diffusers_vae_state_dict_to_sgm(_with_identity_quant_conv(real_vae.state_dict()), "drop")
