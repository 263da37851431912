"""VideoMaMa's weights under ComfyUI's model management in every VRAM state (stand-in host).

The stand-in applies ComfyUI's own budget, eviction and per-layer placement rules (checked
against the recorded real host by tests/test_comfy_standin.py). A tiny model always fits the
128 MiB minimum weight budget, so layers are streamed here by --novram (0.1 byte budget) or by
another model evicting ours partly; the real-host probe repeats this with a bigger model.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from node_harness import clip, load, run_matte

GiB = 2**30


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


def _misplaced(model, device):
    """Tensors that are neither on ``device`` nor owned by a layer that casts its weights per call."""
    bad = []
    for name, m in model.named_modules():
        if getattr(m, "comfy_cast_weights", False):
            continue
        for pname, t in list(m._parameters.items()) + list(m._buffers.items()):
            if t is not None and t.device != torch.device(device):
                bad.append(f"{name}.{pname}")
    return bad


def _streamed(model) -> int:
    return sum(1 for m in model.modules() if getattr(m, "comfy_cast_weights", False))


def _other_model(host, gib: float, device: str = "meta"):
    """Another model's weights (as a generative video model next to ours) of ``gib`` GiB; on the meta
    device any size costs nothing."""
    import comfy.model_patcher
    import comfy.ops

    n = int((gib * GiB / 8 / 4) ** 0.5)
    layers = torch.nn.Sequential(*[comfy.ops.disable_weight_init.Linear(n, n, bias=False, device=device)
                                   for _ in range(8)])
    return comfy.model_patcher.ModelPatcher(layers, load_device=torch.device(device), offload_device=torch.device(device))


@pytest.mark.parametrize("state,streams", [("NORMAL_VRAM", False), ("LOW_VRAM", False), ("HIGH_VRAM", False),
                                           ("NO_VRAM", True)])
def test_placement_on_a_simulated_gpu(pack, host, models, state, streams):
    """Load device = meta (a stand-in GPU): after ComfyUI's load every tensor is on it or cast per call."""
    host.mm.DEVICE = torch.device("meta")
    host.mm.vram_state = getattr(host.mm.VRAMState, state)
    hosted = load(pack, precision="fp32")
    with torch.inference_mode():
        model = pack.nodes.host.load_for_inference(hosted, memory_required=0)
    assert _misplaced(model, "meta") == []
    assert model.compute_device == torch.device("meta")  # computation goes to the GPU even for streamed layers
    assert (_streamed(model) > 10) == streams


def test_partly_evicted_by_another_model_then_the_next_run_is_unchanged(pack, host, models, monkeypatch):
    """Another model loaded between two runs takes GPU memory: ComfyUI unloads ours only as far as
    needed (some layers then cast per call); the next run reloads it and gives the same matte."""
    frames, masks = clip(t=3)
    monkeypatch.setattr(host.mm, "is_device_cpu", lambda device: False)  # the CPU plays the GPU
    host.mm.vram_state = host.mm.VRAMState.NORMAL_VRAM
    hosted = load(pack)
    ref = run_matte(pack, frames, masks, hosted, window=3)[0]
    size = hosted.patcher.model_size()
    assert hosted.patcher.loaded_size() >= size
    other = _other_model(host, 0.002, device="cpu")
    # a GPU on which the other model (and ComfyUI's reserve) fit only if half of ours goes
    host.mm.GPU_MEMORY = int(hosted.patcher.loaded_size() + other.model_size() * 1.1
                             + host.mm.minimum_inference_memory() - size // 2)
    host.mm.load_models_gpu([other])
    assert size // 3 < hosted.patcher.loaded_size() < size and _streamed(hosted.model) > 0
    out = run_matte(pack, frames, masks, hosted, window=3)[0]
    assert hosted.patcher.loaded_size() >= size and _streamed(hosted.model) == 0
    assert torch.equal(out, ref)


def test_plain_patcher_would_leave_tensors_behind(pack, host, models):
    """Why place_unmanaged exists: ComfyUI's patcher leaves e.g. AlphaBlender mix factors (parameters of
    non-leaf modules) on the CPU (see the recording's 'placement' scenario)."""
    import comfy.model_patcher

    hosted = load(pack, precision="fp32")
    model = hosted.model
    plain = comfy.model_patcher.ModelPatcher(model, torch.device("meta"), torch.device("cpu"))
    plain.load(torch.device("meta"), lowvram_model_memory=sum(p.nelement() * 4 for p in model.parameters()) // 4)
    assert _misplaced(model, "meta")
    moved = pack.nodes.host.place_unmanaged(model, torch.device("meta"))
    assert moved > 0 and _misplaced(model, "meta") == []


def test_streamed_forward_is_bit_identical(pack, host, models, monkeypatch):
    """--novram streams every layer; on a real compute device (the CPU playing the GPU, as the
    real-host probe does) the numbers are the same as a full load's."""
    frames, masks = clip(t=3)
    ref = run_matte(pack, frames, masks, load(pack), window=3)[0]
    monkeypatch.setattr(host.mm, "is_device_cpu", lambda device: False)
    host.mm.vram_state = host.mm.VRAMState.NO_VRAM
    streamed = load(pack)
    out = run_matte(pack, frames, masks, streamed, window=3)[0]
    assert _streamed(streamed.model) > 10
    assert torch.equal(out, ref)


# ------------------------------------------------------------------------------------------ memory plans
def test_memory_plan_never_streams_weights_and_fits_the_free_memory(pack, host, models):
    """The plans the runner picks under ComfyUI's host: never streaming, never changing the result."""
    lib = pack.videomama
    run = importlib.import_module(f"{pack.__name__}.videomama.pipeline.run")
    opts = lib.options.MatteOptions(resolution=1024, window=16)
    comfy_host = pack.nodes.host.ComfyHost(load(pack))
    assert comfy_host.places_weights is True

    def plan_for(free, dtype=torch.float16):
        comfy_host.available_bytes = lambda model: free  # what free_memory_for would report
        return run.resolve_plan("auto", comfy_host, None, (576, 1024), opts, dtype)

    roomy, tight, cpu = plan_for(80 * GiB), plan_for(4 * GiB), plan_for(None, torch.float32)
    assert roomy.name == "default" and cpu.name == "default"
    assert tight.name == "low_vram" and tight.encode_batch == 1
    for plan in (roomy, tight, cpu):
        assert plan.stream_unet is False  # ComfyUI places the weights, the library must not
        assert not plan.changes_results


def test_out_of_memory_retries_once_with_smaller_encoder_batches(pack, host, models, monkeypatch, caplog):
    hosted = load(pack)
    frames, masks = clip(t=4)
    ref = run_matte(pack, frames, masks, hosted)[0]
    h = pack.nodes.host.models  # ComfyHost calls its own module's load_for_inference
    real = h.load_for_inference
    calls = []

    def flaky(hosted_model, memory_required=0):
        calls.append(memory_required)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(hosted_model, memory_required)

    monkeypatch.setattr(h, "load_for_inference", flaky)
    with caplog.at_level("INFO"):
        out = run_matte(pack, frames, masks, hosted)[0]
    # encoder batches of 1 instead of 8: the same result up to float rounding
    assert torch.allclose(out, ref, atol=1e-3) and len(calls) == 2 and calls[1] <= calls[0]
    assert "out of memory with memory plan 'default'" in caplog.text
    assert "starting again with 'low_vram'" in caplog.text and "the result is unchanged" in caplog.text

    def always(hosted_model, memory_required=0):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(h, "load_for_inference", always)
    with pytest.raises(torch.OutOfMemoryError):
        run_matte(pack, frames, masks, hosted)


def test_free_memory_counts_evictable_models(pack, host, models):
    """The activations budget counts memory other models hold (ComfyUI unloads them on demand),
    and our own weights as needed whether or not they are loaded yet."""
    host.mm.DEVICE = torch.device("meta")
    host.mm.vram_state = host.mm.VRAMState.NORMAL_VRAM
    host.mm.GPU_MEMORY = 10 * GiB
    hosted = load(pack)
    size = hosted.patcher.model_size()
    h = pack.nodes.host
    assert h.free_memory_for(hosted) == 10 * GiB - size
    with torch.inference_mode():
        h.load_for_inference(hosted)
    other = _other_model(host, 2)
    host.mm.load_models_gpu([other])
    assert host.mm.get_free_memory(torch.device("meta")) < 10 * GiB - size - other.model_size() + 2**20
    assert h.free_memory_for(hosted) == 10 * GiB - size
    host.mm.DEVICE = torch.device("cpu")
    assert h.free_memory_for(load(pack)) is None
