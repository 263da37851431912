"""Low-VRAM execution on the real (tiny) model: block streaming, batching, tiling, plans, OOM retry."""

from __future__ import annotations

import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from videomama import lowvram as lv
from videomama.configs import TINY_UNET_CONFIG, TINY_VAE_CONFIG, VIDEOMAMA_UNET_CONFIG, build_random_unet, build_random_vae
from videomama.errors import InputError
from videomama.model import VideoMaMaModel
from videomama.options import MatteOptions
from videomama.video import matte_clip

OPTIONS = MatteOptions(resolution=64, window=4, overlap=1, decode_chunk=4)  # 5 frames -> 2 windows


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine OpenMP's spinning threads slow these
    small models down by 5-50x when other processes compete for the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _clip(n: int = 5, h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(n, h, w, 3, generator=g)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.stack([((xx - 20 - 2 * t) ** 2 + (yy - 24) ** 2 < 200).float() for t in range(n)])
    return frames, masks


class FlakyModel(VideoMaMaModel):
    """The real model, whose decoder raises a real out-of-memory error on its first ``failures`` calls."""

    def __init__(self, unet, vae, failures: int = 1, error: type[Exception] = torch.cuda.OutOfMemoryError,
                 message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"):
        super().__init__(unet, vae)
        self.failures, self.error, self.message, self.decode_calls = failures, error, message, 0

    def decode_alpha(self, latents, chunk):
        self.decode_calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error(self.message)
        return super().decode_alpha(latents, chunk)


@pytest.fixture(scope="module")
def parts():
    return build_random_unet(TINY_UNET_CONFIG, seed=0), build_random_vae(TINY_VAE_CONFIG, seed=0)


@pytest.fixture()
def model(parts):
    return VideoMaMaModel(*parts)


@pytest.fixture(scope="module")
def reference(parts):
    frames, masks = _clip()
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
    frames, masks = _clip()
    hooks_before = _hook_count(model)
    # _force_copy: every load makes a fresh copy even from cpu to cpu, as a real transfer would,
    # so a block whose hook did not run would compute on its offload copy and be caught below.
    streamer = lv.BlockStreamer(model, "cpu", "cpu", granularity=granularity, _force_copy=True)
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
    frames, masks = _clip()
    hooks_before = _hook_count(model)
    s1 = lv.enable_block_streaming(model, "cpu")
    assert lv.streamer_of(model) is s1 and _hook_count(model) > hooks_before
    s2 = lv.enable_block_streaming(model, "cpu")  # re-enabling replaces, never stacks hooks
    assert lv.streamer_of(model) is s2 and not s1.active
    assert _hook_count(model) == hooks_before + 2 * len(s2.units) + 2
    assert torch.equal(matte_clip(model, frames, masks, OPTIONS), reference)
    assert lv.disable_block_streaming(model) is True
    assert lv.disable_block_streaming(model) is False
    assert lv.streamer_of(model) is None and _hook_count(model) == hooks_before
    with lv.block_streaming(model, "cpu") as s3:
        assert s3.active
    assert not s3.active and _hook_count(model) == hooks_before


def test_low_vram_plan_matches_default_within_rounding(model, reference):
    frames, masks = _clip()
    out = lv.matte_clip_planned(model, frames, masks, OPTIONS, lv.LOW_VRAM, compute_device="cpu")
    # Streaming is bit-identical (above); the encoder one image per call instead of batched is the
    # same maths with other kernel blocking: rounding-level changes, which the random-weight
    # model amplifies to ~1e-4 (bf16 instead of fp32 changes this model's alpha by ~1e-2).
    assert float((out - reference).abs().max()) < 1e-3
    assert lv.streamer_of(model) is None


def test_encode_batching_splits_calls(model):
    calls = []
    inner = model.encode

    class Spy:
        latent_channels = model.latent_channels
        compute_device = model.compute_device

        def encode(self, pixels, eps):
            calls.append(pixels.shape[0])
            return inner(pixels, eps)

    planned = lv.PlannedModel(Spy(), lv.replace(lv.DEFAULT, encode_batch=3))
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
    tiled = lv.decode_alpha_tiled(_PointwiseDecoder(), latents, 8, tile=8, overlap=3)
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-6


def test_tiled_decode_on_the_real_decoder(model):
    latents = torch.randn(2, 4, 8, 12)
    whole = model.decode_alpha(latents, 2)
    assert torch.equal(lv.decode_alpha_tiled(model, latents, 2, tile=12), whole)  # one tile: untouched
    tiled = lv.decode_alpha_tiled(model, latents, 2, tile=8, overlap=2)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    assert 0.0 <= float(tiled.min()) and float(tiled.max()) <= 1.0
    assert float((tiled - whole).abs().max()) > 0  # tiling changes the result (why it is logged)


def test_plan_descriptions_say_what_changes_results():
    assert not lv.DEFAULT.changes_results and not lv.LOW_VRAM.changes_results
    assert lv.LOW_VRAM_DECODE4.changes_results and lv.LOW_VRAM_TILED.changes_results
    assert [lv.DEFAULT.lower(), lv.LOW_VRAM.lower(), lv.LOW_VRAM_DECODE4.lower(), lv.LOW_VRAM_TILED.lower()] == [
        lv.LOW_VRAM, lv.LOW_VRAM_DECODE4, lv.LOW_VRAM_TILED, None]
    text = lv.LOW_VRAM.changes_from(lv.DEFAULT)
    assert "streamed" in text and "same result" in text and "CHANGES" not in text
    text = lv.LOW_VRAM_DECODE4.changes_from(lv.LOW_VRAM)
    assert "8 -> 4" in text and "CHANGES" in text
    assert lv.replace(lv.DEFAULT, name="mine", encode_batch=2).lower() == lv.LOW_VRAM


def test_weight_sizes_match_the_real_config():
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from videomama.checkpoints import SVD_VAE_CONFIG

    with torch.device("meta"):
        real = VideoMaMaModel(UNetSpatioTemporalConditionModel(**VIDEOMAMA_UNET_CONFIG),
                              AutoencoderKLTemporalDecoder(**SVD_VAE_CONFIG))
    assert lv.WeightSizes.of(real) == lv.VIDEOMAMA_WEIGHTS
    assert lv.VIDEOMAMA_WEIGHTS.unet == 1_524_634_602  # the spec's count


GiB = 2**30


def test_memory_model_at_1024x576():
    """The estimates behind the plans (factors measured on the real-size model; see lowvram)."""
    est = {p.name: lv.estimate_memory(p, (576, 1024), 16) for p in lv.PLAN_LADDER}
    # default: weights + the 8-frame decoder chunk, under the 16 GB target.
    assert est["default"].peak < 16e9 and est["default"].decoder > max(est["default"].encoder, est["default"].unet)
    # Streaming saves the UNet weights except the two largest consecutive blocks (~1.7 GB in fp16).
    assert est["default"].weights - est["low_vram"].weights == (lv.VIDEOMAMA_WEIGHTS.unet
                                                                  - lv.VIDEOMAMA_WEIGHTS.largest_stream_pair) * 2
    assert est["low_vram"].encoder * 8 == est["default"].encoder  # 8 images per call -> 1
    # The decoder's 8-frame chunk keeps every result-preserving plan above 8 GiB at this size;
    # 4-frame chunks (a logged result change) fit, tiles go lower still.
    assert est["low_vram"].peak < est["default"].peak and est["low_vram"].peak > 8 * GiB
    assert est["low_vram_decode4"].peak < 8 * GiB
    assert est["low_vram_tiled"].decoder < est["low_vram_decode4"].decoder < est["low_vram"].decoder
    # Grows with the window and the size; bf16 costs what fp16 does; no weights when the host places them.
    assert lv.estimate_memory(lv.DEFAULT, (576, 1024), 8).unet < est["default"].unet
    assert lv.estimate_memory(lv.DEFAULT, (1088, 1920), 16).peak > est["default"].peak
    assert lv.estimate_memory(lv.DEFAULT, (576, 1024), 16, dtype=torch.bfloat16) == est["default"]
    hosted = lv.estimate_memory(lv.DEFAULT, (576, 1024), 16, host_streams_weights=True)
    assert hosted.weights == 0 and hosted.peak < est["default"].peak


def test_choose_plan_from_free_memory(caplog):
    hd, window = (1080, 1920), 16
    default_peak = lv.estimate_memory(lv.DEFAULT, (576, 1024), window).peak
    low_peak = lv.estimate_memory(lv.LOW_VRAM, (576, 1024), window).peak
    assert lv.choose_plan(80 * GiB, hd, window, resolution=1024) == lv.DEFAULT
    assert lv.choose_plan(int(default_peak / 0.9) + 1, hd, window, resolution=1024) == lv.DEFAULT
    assert lv.choose_plan(int(default_peak / 0.9) - 1, hd, window, resolution=1024) == lv.LOW_VRAM
    assert lv.choose_plan(int(low_peak / 0.9) + 1, hd, window, resolution=1024) == lv.LOW_VRAM
    # A smaller processing size fits an 8 GB card in the default plan.
    assert lv.choose_plan(8 * GiB, hd, window, resolution=512) == lv.DEFAULT
    # Never a result-changing plan unless allowed: too little memory still gives low_vram, with a warning.
    with caplog.at_level(logging.WARNING, logger="videomama.lowvram"):
        assert lv.choose_plan(8 * GiB, hd, window, resolution=1024) == lv.LOW_VRAM
    assert any("'low_vram'" in r.getMessage() and "8.6 GB is free" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="videomama.lowvram"):
        assert lv.choose_plan(8 * GiB, hd, window, resolution=1024, allow_result_changes=True) == lv.LOW_VRAM_DECODE4
        assert lv.choose_plan(1 * GiB, hd, window, resolution=1024, allow_result_changes=True) == lv.LOW_VRAM_TILED
    messages = [r.getMessage() for r in caplog.records]
    assert any("low_vram_decode4" in m and "CHANGES" in m for m in messages)
    # By hand.
    assert lv.choose_plan(80 * GiB, hd, window, resolution=1024, force="low_vram") == lv.LOW_VRAM
    assert lv.choose_plan(80 * GiB, hd, window, resolution=1024, force="auto") == lv.DEFAULT
    with pytest.raises(InputError, match="memory plan 'fast'"):
        lv.choose_plan(GiB, hd, window, force="fast")
    # The host placing the weights (ComfyUI) leaves more room for activations.
    assert lv.choose_plan(int(default_peak / 0.9) - 1, hd, window, resolution=1024,
                          host_streams_weights=True) == lv.DEFAULT


def test_oom_retry_steps_down_once_and_says_so(parts, reference, caplog):
    frames, masks = _clip()
    flaky = FlakyModel(*parts, failures=1)
    with caplog.at_level(logging.WARNING, logger="videomama.lowvram"):
        out = lv.matte_clip_planned(flaky, frames, masks, OPTIONS, lv.DEFAULT, compute_device="cpu")
    assert float((out - reference).abs().max()) < 1e-3  # low_vram: same result up to rounding
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0]
    assert "'default'" in msg and "'low_vram'" in msg and "Tried to allocate 2.00 GiB" in msg
    assert "streamed" in msg and "the result is unchanged" in msg
    assert lv.streamer_of(flaky) is None  # the failed and the retried attempt both cleaned up


def test_cpu_oom_retry_to_a_result_changing_plan_is_logged(parts, caplog):
    frames, masks = _clip()
    flaky = FlakyModel(*parts, failures=1, error=RuntimeError,
                       message="[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: "
                               "you tried to allocate 1 bytes. Buy new RAM! out of memory")
    with caplog.at_level(logging.WARNING, logger="videomama.lowvram"):
        out = lv.matte_clip_planned(flaky, frames, masks, OPTIONS, lv.LOW_VRAM)
    assert out.shape == (5, 48, 64)
    msg = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][0]
    assert "'low_vram_decode4'" in msg and "CHANGES" in msg and "4 -> 4" not in msg


def test_oom_retry_gives_up_after_one_retry_and_ignores_other_errors(parts):
    frames, masks = _clip()
    flaky = FlakyModel(*parts, failures=2)
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        lv.matte_clip_planned(flaky, frames, masks, OPTIONS, lv.DEFAULT)
    assert flaky.decode_calls == 2
    assert any("again" in note and "low_vram" in note for note in getattr(info.value, "__notes__", []))

    broken = FlakyModel(*parts, failures=1, error=ValueError, message="not a memory problem")
    with pytest.raises(ValueError, match="not a memory problem"):
        lv.matte_clip_planned(broken, frames, masks, OPTIONS, lv.DEFAULT)
    assert broken.decode_calls == 1

    calls = []

    def always_oom(plan):
        calls.append(plan.name)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        lv.run_with_oom_retry(always_oom, lv.LOW_VRAM_TILED)  # bottom of the ladder: no retry
    assert calls == ["low_vram_tiled"]
    assert lv.is_oom_error(RuntimeError("CUDA error: out of memory")) and not lv.is_oom_error(RuntimeError("shape"))


def test_oom_retry_under_a_host_that_places_weights_never_streams(parts, caplog):
    frames, masks = _clip()
    flaky = FlakyModel(*parts, failures=1)
    seen = []
    original = lv.BlockStreamer.__init__

    def spy(self, *args, **kwargs):
        seen.append(True)
        original(self, *args, **kwargs)

    lv.BlockStreamer.__init__ = spy
    try:
        with caplog.at_level(logging.WARNING, logger="videomama.lowvram"):
            lv.matte_clip_planned(flaky, frames, masks, OPTIONS, lv.LOW_VRAM, host_places_weights=True)
    finally:
        lv.BlockStreamer.__init__ = original
    assert seen == []  # neither the first attempt nor the retry streamed
    msg = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][0]
    assert "'low_vram_decode4'" in msg and "streamed" not in msg and "CHANGES" in msg
    assert lv.LOW_VRAM.without_streaming().stream_unet is False
    assert lv.DEFAULT.lower(streaming=False) == lv.replace(lv.LOW_VRAM, stream_unet=False)


class FailLater(VideoMaMaModel):
    """Raises a real out-of-memory error on the ``at``-th decoder call (1-based)."""

    def __init__(self, unet, vae, at: int):
        super().__init__(unet, vae)
        self.at, self.calls = at, 0

    def decode_alpha(self, latents, chunk):
        self.calls += 1
        if self.calls == self.at:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return super().decode_alpha(latents, chunk)


def test_iter_matte_planned_retries_only_before_the_first_frame(parts, reference, caplog):
    frames, masks = _clip()
    with caplog.at_level(logging.WARNING, logger="videomama.lowvram"):
        got = dict(lv.iter_matte_planned(FlakyModel(*parts, failures=1), frames, masks, OPTIONS, lv.DEFAULT))
    assert sorted(got) == list(range(5))
    assert float((torch.stack([got[i] for i in range(5)]) - reference).abs().max()) < 1e-3
    assert sum("retrying once with 'low_vram'" in r.getMessage() for r in caplog.records) == 1
    # The second window fails after frame 0 was handed out (frames 1..3 wait for the blend with
    # window 2): no silent re-run, a clear error.
    late = FailLater(*parts, at=2)
    handed = []
    with pytest.raises(torch.cuda.OutOfMemoryError) as info:
        for i, _ in lv.iter_matte_planned(late, frames, masks, OPTIONS, lv.DEFAULT):
            handed.append(i)
    assert handed == [0] and late.calls == 2
    assert any("after 1 frame were handed out" in n for n in getattr(info.value, "__notes__", []))
    # Stopping early (a consumer that breaks) removes the streaming hooks too.
    model = VideoMaMaModel(*parts)
    it = lv.iter_matte_planned(model, frames, masks, OPTIONS, lv.LOW_VRAM)
    next(it)
    assert lv.streamer_of(model) is not None
    it.close()
    assert lv.streamer_of(model) is None
