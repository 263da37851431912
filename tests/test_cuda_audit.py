"""CUDA readiness without a GPU: the real pipeline on fake CUDA tensors (tests/fake_cuda.py).

Fails on device mixing (FakeTensorMode raises), on blocking host->device copies, on more host
syncs per window than ``SYNCS_PER_WINDOW``, on reads of an unfinished non-blocking copy, and
on attention calls over ``MAX_ATTENTION_BATCH``. Real kernels and streams are the GPU script's
(benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from fake_cuda import fake_cuda

from videomama.errors import InputError
from videomama.options import MatteOptions
from videomama.pipeline.attention import MAX_ATTENTION_BATCH, ChunkedAttnProcessor, use_chunked_attention
from videomama.pipeline.matte import iter_matte
from videomama.pipeline.transfer import to_device

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SYNCS_PER_WINDOW = 1  # the window's one device -> host copy (alphas + input checks)
OPTIONS = MatteOptions(resolution=64, window=4, overlap=1)  # 10 frames -> 3 windows


def _clip(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 64, 96, 3, generator=g), (torch.rand(n, 64, 96, generator=g) > 0.5).float()


def _run_fake(tiny_model, frames_on_gpu: bool = False):
    frames, masks = _clip()
    model = copy.deepcopy(tiny_model)
    with fake_cuda() as rec:
        model = rec.fake(model, "cuda")
        if frames_on_gpu:  # ComfyUI --gpu-only: frames and masks already live on the GPU
            frames, masks = rec.fake(frames, "cuda"), rec.fake(masks, "cuda")
        rec.reset()
        results = list(iter_matte(model, frames, masks, OPTIONS))
    return rec, results


@pytest.mark.parametrize("frames_on_gpu", [False, True], ids=["cpu-frames", "gpu-frames"])
def test_pipeline_on_fake_cuda(tiny_model, frames_on_gpu):
    rec, results = _run_fake(tiny_model, frames_on_gpu)
    windows = 3
    assert [i for i, _ in results] == list(range(10))
    assert all(a.device.type == "cpu" and tuple(a.shape) == (64, 96) for _, a in results)
    assert rec.syncs <= SYNCS_PER_WINDOW * windows, rec.sync_sites
    assert rec.h2d_blocking == 0
    assert rec.unfinished_reads == 0
    assert rec.attention_batches and max(rec.attention_batches) <= MAX_ATTENTION_BATCH


def test_harness_catches_what_it_guards():
    """The recorders see a blocking copy, a sync, an unfinished non-blocking read, and mixing."""
    with fake_cuda() as rec:
        x = rec.fake(torch.ones(4))
        y = x.to("cuda")  # pageable: blocking
        assert rec.h2d_blocking == 1
        assert bool((y > 0).all())
        assert rec.syncs == 1
        z = y.to("cpu", non_blocking=True)
        _ = z + 1  # read before any sync
        assert rec.unfinished_reads == 1
        with pytest.raises(Exception, match="device"):
            _ = y + rec.fake(torch.ones(4))


def test_to_device_pins_only_cpu_tensors():
    with fake_cuda() as rec:
        on_gpu = rec.fake(torch.ones(3), "cuda")
        assert to_device(on_gpu, torch.device("cuda", 0)) is on_gpu  # no pin, no copy
        moved = to_device(rec.fake(torch.ones(3)), torch.device("cuda", 0), torch.float16)
        assert moved.device.type == "cuda" and moved.dtype == torch.float16
        assert rec.h2d_blocking == 0 and rec.h2d_nonblocking == 1


def test_nan_frames_still_one_clear_line_on_cuda(tiny_model):
    """Deferred value checks still name the bad frame (the fake reads NaN flags as 0 here)."""
    frames, masks = _clip(4)
    frames[2, 0, 0, 0] = float("nan")
    # The fake has no values, so check the deferred path on the CPU by hand.
    from videomama.pipeline import matte

    inputs = matte._prepare(frames, masks, OPTIONS)
    finite = torch.isfinite(frames).flatten(1).all(dim=1)
    inputs.deferred.append((finite, [0, 1, 2, 3], "frames"))
    with pytest.raises(InputError, match=r"frames\[2\] contains NaN"):
        matte._to_host(inputs, [])


def test_chunked_attention_exact():
    torch.manual_seed(0)
    attn = Attention(query_dim=64, heads=4, dim_head=16).eval()
    x = torch.randn(300, 5, 64)
    context = torch.randn(300, 1, 64)
    cross = Attention(query_dim=64, cross_attention_dim=64, heads=4, dim_head=16).eval()
    with torch.no_grad():
        for module, ctx in ((attn, None), (cross, context)):
            module.set_processor(AttnProcessor2_0())
            want = module(x, encoder_hidden_states=ctx)
            module.set_processor(ChunkedAttnProcessor(max_batch=64))  # 16 sequences x 4 heads per call
            got = module(x, encoder_hidden_states=ctx)
            assert (got - want).abs().max().item() <= 1e-6


def test_chunked_attention_installed_on_temporal_blocks(tiny_model):
    procs = tiny_model.unet.attn_processors
    temporal = [k for k in procs if "temporal_transformer_blocks" in k]
    assert temporal and all(isinstance(procs[k], ChunkedAttnProcessor) for k in temporal)
    assert not any(isinstance(v, ChunkedAttnProcessor) for k, v in procs.items() if k not in temporal)
    assert use_chunked_attention(copy.deepcopy(tiny_model.unet)) == len(temporal)


def test_chunked_attention_bounds_sdpa_batch():
    """Under the fake, a batch of 70,000 sequences reaches SDPA only in slices under the limit."""
    attn = Attention(query_dim=64, heads=4, dim_head=16).eval()
    attn.set_processor(ChunkedAttnProcessor())
    with fake_cuda() as rec, torch.no_grad():
        rec.fake(attn, "cuda")
        attn(rec.fake(torch.randn(70_000, 2, 64), "cuda"))
    assert max(rec.attention_batches) <= MAX_ATTENTION_BATCH
    assert sum(rec.attention_batches) == 70_000 * 4


def test_block_streamer_pins_one_buffer_per_block(tiny_model, monkeypatch):
    """Pinned offload copies are views of one page-locked buffer per block, values kept."""
    from videomama.memory.streaming import BlockStreamer

    unet = copy.deepcopy(tiny_model.unet)
    want = {k: v.clone() for k, v in unet.state_dict().items()}
    pins = []

    def counting_pin(self, *a, **k):
        pins.append(self.numel())
        return self.clone()  # CPU-only torch cannot pin; the count is what is checked

    monkeypatch.setattr(torch.Tensor, "pin_memory", counting_pin)
    streamer = BlockStreamer(unet, torch.device("cpu"), torch.device("cpu"), prefetch=False, pin_memory=True)
    monkeypatch.undo()
    assert 0 < len(pins) == len(streamer.units)
    got = unet.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items())


REFINER_SYNCS_PER_FRAME = 2  # the output copy, and the band's data-dependent nonzero


@pytest.mark.parametrize("frames_on_gpu", [False, True], ids=["cpu-frames", "gpu-frames"])
def test_refiner_on_fake_cuda(frames_on_gpu):
    from videomama.imaging.refine import iter_refine

    frames, masks = _clip(4)
    with fake_cuda() as rec:
        if frames_on_gpu:
            frames, masks = rec.fake(frames, "cuda"), rec.fake(masks, "cuda")
        rec.reset()
        out = list(iter_refine(frames, masks, device="cuda", work_size=96))
    assert [i for i, _ in out] == [0, 1, 2, 3]
    assert all(a.device.type == "cpu" and tuple(a.shape) == (64, 96) for _, a in out)
    assert rec.syncs <= REFINER_SYNCS_PER_FRAME * len(out), rec.sync_sites
    assert rec.h2d_blocking == 0
    assert rec.unfinished_reads == 0


def test_compositing_on_fake_cuda():
    """AlphaComposite's library path on GPU-resident inputs (ComfyUI --gpu-only): the CPU-made
    background moves without a blocking copy (once, not once per frame), the colour estimate
    (CPU by contract) meets a GPU matte without device mixing, and the only host syncs are the
    two hand-overs to the CPU."""
    from videomama.imaging.composite import composite, estimate_foreground, prepare_background, to_rgba

    frames, masks = _clip(3)
    with fake_cuda() as rec:
        fg, alpha = rec.fake(frames, "cuda"), rec.fake(masks, "cuda")
        rec.reset()
        bg = prepare_background("checkerboard", 3, 64, 96)  # made on the CPU, as the node does
        out = composite(fg, alpha, bg)
        assert rec.syncs == 0 and rec.h2d_blocking == 0 and rec.h2d_nonblocking == 1, rec.sync_sites
        colour = estimate_foreground(fg, alpha)
        rgba = to_rgba(colour, alpha)
    assert out.device.type == "cuda" and tuple(out.shape) == (3, 64, 96, 3)
    assert colour.device.type == "cpu" and tuple(rgba.shape) == (3, 64, 96, 4)
    assert rec.syncs <= 2, rec.sync_sites
    assert rec.h2d_blocking == 0


@pytest.mark.slow
def test_real_size_model_on_fake_cuda_at_2048():
    """The real VideoMaMa UNet and SVD VAE (configs of the release, weights made inside the fake
    mode: no memory, no compute) in fp16 at 2048x1152, the size where plain temporal attention
    would pass CUDA's 65,535 grid limit: one sync per window, no blocking copy, every attention
    call under the limit, with the UNet in fp16 and the VAE in bf16 (as force_upcast gives on sm80+)."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from videomama.pipeline.model import VideoMaMaModel
    from videomama.weights.checkpoints import SVD_VAE_CONFIG
    from videomama.weights.configs import VIDEOMAMA_UNET_CONFIG

    frames, masks = torch.rand(6, 1152, 2048, 3), torch.zeros(6, 1152, 2048)
    masks[:, 300:900, 600:1400] = 1.0
    vae_dtype = torch.bfloat16  # what vae_dtype_for(fp16) gives on sm80+ GPUs (tests/test_precision.py)
    with fake_cuda() as rec:
        before = torch.get_default_dtype()
        try:  # made in place on the fake GPU: converting fake parameters with .to() is not supported
            with torch.device("cuda"):
                torch.set_default_dtype(torch.float16)
                unet = UNetSpatioTemporalConditionModel(**VIDEOMAMA_UNET_CONFIG)
                torch.set_default_dtype(vae_dtype)
                vae = AutoencoderKLTemporalDecoder(**SVD_VAE_CONFIG)
        finally:
            torch.set_default_dtype(before)
        for module in (*unet.modules(), *vae.modules()):  # AlphaBlender's torch.Tensor([x]) ignores the device
            for name, p in module._parameters.items():
                if p is not None and p.device.type == "cpu":
                    module._parameters[name] = torch.nn.Parameter(p.to("cuda"), requires_grad=False)
        model = VideoMaMaModel(unet, vae)
        rec.reset()
        results = list(iter_matte(model, frames, masks, MatteOptions(resolution=2048, window=4, overlap=2)))
    assert vae.decoder.conv_in.weight.dtype == torch.bfloat16 and unet.conv_in.weight.dtype == torch.float16
    assert [i for i, _ in results] == list(range(6)) and tuple(results[0][1].shape) == (1152, 2048)
    windows = 2
    assert rec.syncs <= SYNCS_PER_WINDOW * windows, rec.sync_sites
    assert rec.h2d_blocking == 0 and rec.unfinished_reads == 0
    assert max(rec.attention_batches) <= MAX_ATTENTION_BATCH
