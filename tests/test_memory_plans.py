"""Memory plans on the real (tiny) model: block streaming, encoder batching, decoder tiling, estimates."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from run_helpers import disc_clip
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from videomama.errors import InputError
from videomama.memory import plans as lv_plans
from videomama.memory.estimate import VIDEOMAMA_WEIGHTS, WeightSizes, choose_memory_plan, estimate_memory
from videomama.memory.execution import PlannedModel, decode_alpha_tiled
from videomama.memory.streaming import (
    BlockStreamer,
    block_streaming,
    disable_block_streaming,
    enable_block_streaming,
    streamer_of,
)
from videomama.options import MatteOptions
from videomama.pipeline.matte import collect_frames, matte_clip
from videomama.pipeline.model import VideoMaMaModel
from videomama.pipeline.run import LocalHost, run_matte
from videomama.weights.configs import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    VIDEOMAMA_UNET_CONFIG,
    build_random_unet,
    build_random_vae,
)

OPTIONS = MatteOptions(resolution=64, window=4, overlap=1, decode_chunk=4)  # 5 frames -> 2 windows


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


@pytest.fixture(scope="module")
def parts():
    return build_random_unet(TINY_UNET_CONFIG, seed=0), build_random_vae(TINY_VAE_CONFIG, seed=0)


@pytest.fixture()
def model(parts):
    return VideoMaMaModel(*parts)


@pytest.fixture(scope="module")
def reference(parts):
    frames, masks = disc_clip()
    return matte_clip(VideoMaMaModel(*parts), frames, masks, OPTIONS)


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in module.modules())


_COPIES = (torch.ops.aten.clone.default, torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)


class _UsesStorage(TorchDispatchMode):
    """Records every storage an op reads, to prove no op touches an offloaded weight."""

    def __init__(self, watched: set[int]):
        super().__init__()
        self.watched, self.hits = watched, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _COPIES:  # the streamer's own loads read the offload copies, by design
            return func(*args, **(kwargs or {}))
        for t in tree_leaves((args, kwargs or {})):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() in self.watched:
                self.hits += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("granularity", ["block", "layer"])
def test_block_streaming_is_bit_identical_and_cleans_up(model, reference, granularity):
    frames, masks = disc_clip()
    hooks_before = _hook_count(model)
    # _force_copy: every load makes a fresh copy even from cpu to cpu, as a real transfer would,
    # so a block whose hook did not run would compute on its offload copy and be caught below.
    streamer = BlockStreamer(model, "cpu", "cpu", granularity=granularity, _force_copy=True)
    n_units = len(streamer.units)
    names = [name for name, _ in streamer.units]
    if granularity == "block":  # embeddings, 4 down blocks, mid, 4 up blocks, out norm + conv (conv_in resident)
        assert names[:3] == ["time_embedding", "add_embedding", "down_blocks.0"] and len(names) == 13
        assert names.index("mid_block") < names.index("up_blocks.0")  # execution order, for prefetching
    else:  # the children of each block: resnets, attentions, samplers
        assert len(names) > 13 and "up_blocks.1.attentions.0" in names and "mid_block" not in names
    offload_ptrs = {off.untyped_storage().data_ptr() for e in streamer._entries for _, off in e}
    with _UsesStorage(offload_ptrs) as watch:
        out = matte_clip(model, frames, masks, OPTIONS)
    assert watch.hits == 0, "an op read a streamed weight while it was offloaded (a hook did not run)"
    assert torch.equal(out, reference)
    assert streamer.loads == 2 * n_units  # two windows, every unit loaded once per UNet call
    # Between forwards every streamed tensor is its offload copy again, on the offload device.
    assert streamer.offloaded()
    for entries in streamer._entries:
        for t, off in entries:
            assert t.device == torch.device("cpu") and t.data_ptr() == off.data_ptr()
    streamer.remove()
    assert _hook_count(model) == hooks_before
    assert torch.equal(matte_clip(model, frames, masks, OPTIONS), reference)


def test_enable_disable_streaming_api(model, reference):
    frames, masks = disc_clip()
    hooks_before = _hook_count(model)
    s1 = enable_block_streaming(model, "cpu")
    assert streamer_of(model) is s1 and _hook_count(model) > hooks_before
    s2 = enable_block_streaming(model, "cpu")  # re-enabling replaces, never stacks hooks
    assert streamer_of(model) is s2 and not s1.active
    assert _hook_count(model) == hooks_before + 2 * len(s2.units) + 2
    assert torch.equal(matte_clip(model, frames, masks, OPTIONS), reference)
    assert disable_block_streaming(model) is True
    assert disable_block_streaming(model) is False
    assert streamer_of(model) is None and _hook_count(model) == hooks_before
    with block_streaming(model, "cpu") as s3:
        assert s3.active
    assert not s3.active and _hook_count(model) == hooks_before


def test_low_vram_plan_matches_default_within_rounding(model, reference):
    frames, masks = disc_clip()
    out = collect_frames(run_matte(model, frames, masks, OPTIONS, memory=lv_plans.LOW_VRAM, host=LocalHost("cpu")), 5)
    # Streaming is bit-identical (above); the encoder one image per call instead of batched is the
    # same maths with other kernel blocking: rounding-level changes, which the random-weight
    # model amplifies to ~1e-4 (bf16 instead of fp32 changes this model's alpha by ~1e-2).
    assert float((out - reference).abs().max()) < 1e-3
    assert streamer_of(model) is None


def test_encode_batching_splits_calls(model):
    calls = []
    inner = model.encode

    class Spy:
        latent_channels = model.latent_channels
        compute_device = model.compute_device

        def encode(self, pixels, eps):
            calls.append(pixels.shape[0])
            return inner(pixels, eps)

    planned = PlannedModel(Spy(), dataclasses.replace(lv_plans.DEFAULT, encode_batch=3))
    pixels = torch.rand(7, 3, 64, 64) * 2 - 1
    eps = torch.randn(7, 4, 8, 8)
    out = planned.encode(pixels, eps)
    assert calls == [3, 3, 1]
    assert float((out - inner(pixels, eps)).abs().max()) < 1e-5


class _PointwiseDecoder:
    """A decoder without spatial context (alpha = sigmoid of channel 0, 8x nearest upsampling):
    tiling must then be exact, which checks the tile placement and cross-fade weights."""

    def decode_alpha(self, latents, chunk):
        return torch.sigmoid(latents[:, 0]).repeat_interleave(8, 1).repeat_interleave(8, 2)


def test_tiled_decode_blends_exactly_for_a_context_free_decoder():
    latents = torch.randn(3, 4, 21, 34)
    whole = _PointwiseDecoder().decode_alpha(latents, 8)
    tiled = decode_alpha_tiled(_PointwiseDecoder(), latents, 8, tile=8, overlap=3)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-6


def test_tiled_decode_on_the_real_decoder(model):
    latents = torch.randn(2, 4, 8, 12)
    whole = model.decode_alpha(latents, 2)
    assert torch.equal(decode_alpha_tiled(model, latents, 2, tile=12), whole)  # one tile: untouched
    tiled = decode_alpha_tiled(model, latents, 2, tile=8, overlap=2)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    assert 0.0 <= float(tiled.min()) and float(tiled.max()) <= 1.0
    assert float((tiled - whole).abs().max()) > 0  # tiling changes the result (why it is logged)


def test_plan_descriptions_say_what_changes_results():
    assert not lv_plans.DEFAULT.changes_results and not lv_plans.LOW_VRAM.changes_results
    assert lv_plans.LOW_VRAM_DECODE4.changes_results and lv_plans.LOW_VRAM_TILED.changes_results
    assert [lv_plans.DEFAULT.lower(), lv_plans.LOW_VRAM.lower(), lv_plans.LOW_VRAM_DECODE4.lower(), lv_plans.LOW_VRAM_TILED.lower()] == [
        lv_plans.LOW_VRAM, lv_plans.LOW_VRAM_DECODE4, lv_plans.LOW_VRAM_TILED, None]
    text = lv_plans.LOW_VRAM.changes_from(lv_plans.DEFAULT)
    assert "streamed" in text and "same result" in text and "CHANGES" not in text
    text = lv_plans.LOW_VRAM_DECODE4.changes_from(lv_plans.LOW_VRAM)
    assert "8 -> 4" in text and "CHANGES" in text
    assert dataclasses.replace(lv_plans.DEFAULT, name="mine", encode_batch=2).lower() == lv_plans.LOW_VRAM


def test_weight_sizes_match_the_real_config():
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from videomama.weights.checkpoints import SVD_VAE_CONFIG

    with torch.device("meta"):
        real = VideoMaMaModel(UNetSpatioTemporalConditionModel(**VIDEOMAMA_UNET_CONFIG),
                              AutoencoderKLTemporalDecoder(**SVD_VAE_CONFIG))
    assert WeightSizes.of(real) == VIDEOMAMA_WEIGHTS
    assert VIDEOMAMA_WEIGHTS.unet == 1_524_634_602  # the spec's count


GiB = 2**30


def test_memory_model_at_1024x576():
    """The estimates behind the plans (factors measured on the real-size model; see memory.estimate)."""
    est = {p.name: estimate_memory(p, (576, 1024), 16) for p in lv_plans.PLAN_LADDER}
    # The bars: default <= 12 GB, low_vram <= 8 GB (target 6), with no result change.
    assert est["default"].peak <= 12e9 and est["low_vram"].peak <= 6e9
    assert not lv_plans.DEFAULT.changes_results and not lv_plans.LOW_VRAM.changes_results
    # With the frame-wise temporal decoder its 8-frame chunk (1.75 maps per frame) no longer
    # sets the peak: the default's 8-image encoder batch does, and under low_vram the UNet.
    assert est["default"].encoder > max(est["default"].decoder, est["default"].unet)
    assert est["low_vram"].unet > max(est["low_vram"].decoder, est["low_vram"].encoder)
    assert 2.0e9 < est["default"].decoder < 2.3e9  # 8 x 1024 x 576 x 128 x 2 bytes x 1.75
    # Streaming saves the UNet weights except the two largest consecutive blocks (~1.7 GB in fp16).
    assert est["default"].weights - est["low_vram"].weights == (VIDEOMAMA_WEIGHTS.unet
                                                                  - VIDEOMAMA_WEIGHTS.largest_stream_pair) * 2
    assert est["low_vram"].encoder * 8 == est["default"].encoder  # 8 images per call -> 1
    # Smaller decoder chunks and tiles (result changes) shrink the decoder, but at 16-frame
    # windows the UNet holds the peak, so they buy nothing; with 8-frame windows they do.
    assert est["low_vram_tiled"].decoder < est["low_vram_decode4"].decoder < est["low_vram"].decoder
    assert est["low_vram_decode4"].peak == est["low_vram"].peak
    short = {p.name: estimate_memory(p, (576, 1024), 8) for p in lv_plans.PLAN_LADDER}
    assert short["low_vram_decode4"].peak < short["low_vram"].peak
    # Grows with the window and the size; bf16 costs what fp16 does; no weights when the host places them.
    assert estimate_memory(lv_plans.DEFAULT, (576, 1024), 8).unet < est["default"].unet
    assert estimate_memory(lv_plans.DEFAULT, (1088, 1920), 16).peak > est["default"].peak
    assert estimate_memory(lv_plans.DEFAULT, (576, 1024), 16, dtype=torch.bfloat16) == est["default"]
    hosted = estimate_memory(lv_plans.DEFAULT, (576, 1024), 16, host_streams_weights=True)
    assert hosted.weights == 0 and hosted.peak < est["default"].peak


def test_choose_plan_from_free_memory(caplog):
    hd, window = (1080, 1920), 16
    default_peak = estimate_memory(lv_plans.DEFAULT, (576, 1024), window).peak
    low_peak = estimate_memory(lv_plans.LOW_VRAM, (576, 1024), window).peak
    assert choose_memory_plan(80 * GiB, hd, window, resolution=1024) == lv_plans.DEFAULT
    assert choose_memory_plan(int(default_peak / 0.9) + 1, hd, window, resolution=1024) == lv_plans.DEFAULT
    assert choose_memory_plan(int(default_peak / 0.9) - 1, hd, window, resolution=1024) == lv_plans.LOW_VRAM
    assert choose_memory_plan(int(low_peak / 0.9) + 1, hd, window, resolution=1024) == lv_plans.LOW_VRAM
    # A smaller processing size fits an 8 GB card in the default plan.
    assert choose_memory_plan(8 * GiB, hd, window, resolution=512) == lv_plans.DEFAULT
    # Never a result-changing plan unless allowed: too little memory still gives low_vram, with a warning.
    with caplog.at_level(logging.WARNING, logger="videomama.memory.plans"):
        assert choose_memory_plan(4 * GiB, hd, window, resolution=1024) == lv_plans.LOW_VRAM
    assert any("'low_vram'" in r.getMessage() and "4.3 GB is free" in r.getMessage() for r in caplog.records)
    assert choose_memory_plan(8 * GiB, hd, window, resolution=1024) == lv_plans.LOW_VRAM  # an 8 GB card
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="videomama.memory.plans"):
        # 8-frame windows: 4-frame decoder chunks fit 3.5 GiB (a logged result change) ...
        assert choose_memory_plan(int(3.5 * GiB), hd, 8, resolution=1024,
                                  allow_result_changes=True) == lv_plans.LOW_VRAM_DECODE4
        # ... and when nothing fits, the plan with the lowest estimate, not simply the last one:
        # tiles save decoder memory where the UNet holds the peak, so they are not chosen.
        assert choose_memory_plan(1 * GiB, hd, 8, resolution=1024, allow_result_changes=True) == lv_plans.LOW_VRAM_DECODE4
        assert choose_memory_plan(1 * GiB, (2160, 3840), 4, resolution=2048,
                                  allow_result_changes=True) == lv_plans.LOW_VRAM_TILED
    messages = [r.getMessage() for r in caplog.records]
    assert any("low_vram_decode4" in m and "CHANGES" in m for m in messages)
    # By hand.
    assert choose_memory_plan(80 * GiB, hd, window, resolution=1024, force="low_vram") == lv_plans.LOW_VRAM
    assert choose_memory_plan(80 * GiB, hd, window, resolution=1024, force="auto") == lv_plans.DEFAULT
    with pytest.raises(InputError, match="memory plan 'fast'"):
        choose_memory_plan(GiB, hd, window, force="fast")
    # The host placing the weights (ComfyUI) leaves more room for activations.
    assert choose_memory_plan(int(default_peak / 0.9) - 1, hd, window, resolution=1024,
                          host_streams_weights=True) == lv_plans.DEFAULT
