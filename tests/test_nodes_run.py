"""MaskToMatte, AlphaComposite, LoadSAM2 and SAM2MatteTrack run as ComfyUI runs them (stand-in host).

Each node's result is compared with what the library computes on its own, and the host
interactions are checked: one model load per run, progress through ComfyUI's hook, the cancel
button, errors with their message.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from node_harness import clip, composite, load, run, run_matte

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


def lib(pack, name: str):
    """A library module of the pack under test (imported as the pack imports it)."""
    return importlib.import_module(f"{pack.__name__}.videomama.{name}")


# ------------------------------------------------------------------------------------------ MaskToMatte
def test_mask_to_matte_with_model(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=6)
    alpha, rgba, preview = run_matte(pack, frames, masks, hosted)
    assert alpha.shape == (6, 40, 56) and alpha.dtype == torch.float32
    assert rgba.shape == (6, 40, 56, 4) and preview.shape == (6, 40, 56, 3)
    assert 0.0 <= float(alpha.min()) and float(alpha.max()) <= 1.0
    assert float(alpha.std()) > 0.0  # a real decoded matte, not a constant
    assert torch.equal(rgba[..., 3], alpha) and torch.equal(rgba[..., :3], frames)  # straight alpha
    # placed through ComfyUI's model management, once per run, with an activation estimate
    assert len(host.mm.LOAD_CALLS) == 1 and host.mm.LOAD_CALLS[0]["memory_required"] > 0
    # progress: one update per window, ending at total
    windows = lib(pack, "pipeline.schedule").split_windows(6, 4, 1)
    assert host.updates == [(k + 1, len(windows)) for k in range(len(windows))]
    # the node computes exactly what the library computes (under the library's default memory plan)
    opts = lib(pack, "options").MatteOptions(resolution=64, window=4, overlap=1, posterior="mean")
    planned = lib(pack, "memory.execution").PlannedModel(hosted.model, lib(pack, "memory.plans").DEFAULT)
    ref = lib(pack, "pipeline.matte").matte_clip(planned, frames, masks, opts)
    assert torch.equal(alpha, ref)


def test_one_mask_for_all_frames_and_mask_shapes(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=3)
    one = masks[1:2]
    a1 = run_matte(pack, frames, one, hosted, window=3)[0]
    a2 = run_matte(pack, frames, one.expand(3, -1, -1).clone(), hosted, window=3)[0]
    assert torch.equal(a1, a2)
    with pytest.raises(pack.videomama.errors.InputError, match="2 masks for 3 frames"):
        run_matte(pack, frames, masks[:2], hosted)
    # MASK layouts other nodes emit: (H, W), (B, 1, H, W), (B, H, W, 1)
    mb = pack.nodes.convert.mask_batch
    assert mb(one[0]).shape == (1, 40, 56) and mb(masks[:, None]).shape == (3, 40, 56)
    assert mb(masks[..., None]).shape == (3, 40, 56)
    with pytest.raises(pack.videomama.errors.InputError, match="expected a MASK batch"):
        mb(torch.zeros(2, 2, 3, 4, 5))


def test_seed_and_posterior(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=4)
    s1 = run_matte(pack, frames, masks, hosted, posterior="sample", seed=1)[0]
    s1b = run_matte(pack, frames, masks, hosted, posterior="sample", seed=1)[0]
    s2 = run_matte(pack, frames, masks, hosted, posterior="sample", seed=2)[0]
    assert torch.equal(s1, s1b) and not torch.equal(s1, s2)
    huge = run_matte(pack, frames, masks, hosted, posterior="sample", seed=2**63 + 1)[0]  # UI max is 2**64-1
    assert torch.equal(huge, s1)


def test_rgba_image_input_and_soft_masks(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=3)
    rgba_in = torch.cat([frames, torch.ones_like(frames[..., :1])], dim=-1)
    soft = masks * 0.8 + 0.1  # a soft mask: binarised at 0.5 -> same as the hard one
    a_ref = run_matte(pack, frames, masks, hosted, window=3)[0]
    a = run_matte(pack, rgba_in, soft, hosted, window=3)[0]
    assert torch.equal(a, a_ref)


def test_library_errors_surface_with_their_message(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=4)
    with pytest.raises(pack.videomama.errors.InputError, match="overlap=4 must be >= 0 and smaller than window=4"):
        run_matte(pack, frames, masks, hosted, window=4, overlap=4)
    with pytest.raises(pack.videomama.errors.InputError, match="NaN"):
        bad = frames.clone()
        bad[1, 3, 3, 0] = float("nan")
        run_matte(pack, bad, masks, hosted)
    with pytest.raises(TypeError, match="connect the output of LoadVideoMaMa"):
        run_matte(pack, frames, masks, torch.nn.Linear(1, 1))


def test_without_model_uses_weight_free_refiner(pack, host):
    frames, masks = clip(t=5)
    alpha = run_matte(pack, frames, masks, None)[0]
    assert alpha.shape == (5, 40, 56)
    ref = lib(pack, "imaging.refine").refine_clip(frames, masks, threshold=0.5, work_size=64, device="cpu")
    assert torch.allclose(alpha, ref)
    # the matte follows the mask: inside ~1, outside ~0
    assert float(alpha[masks > 0.5].mean()) > 0.9 and float(alpha[masks < 0.5].mean()) < 0.1
    assert host.updates[-1] == (5, 5) and host.mm.LOAD_CALLS == []


def test_detail_pass_changes_only_the_soft_edge(pack, host, models):
    """The optional full-resolution pass (source larger than 'resolution') adds detail to the
    soft part of the matte and leaves fully opaque or transparent regions alone."""
    hosted = load(pack)
    frames, masks = clip(t=4, h=96, w=160)  # larger than resolution=64
    plain = run_matte(pack, frames, masks, hosted, resolution=64)[0]
    detailed = run_matte(pack, frames, masks, hosted, resolution=64, detail_pass=True)[0]
    assert detailed.shape == plain.shape and 0 <= float(detailed.min()) and float(detailed.max()) <= 1
    ref = lib(pack, "imaging.refine").detail_refine(frames, plain, resolution=64)
    assert torch.allclose(detailed, ref, atol=1e-6)
    assert float((detailed - plain).abs().max()) > 1e-3  # the pass did something
    hard = (plain < 0.005) | (plain > 0.995)
    if hard.any():
        assert float((detailed - plain)[hard].abs().max()) < 1e-2


def test_cancel_stops_between_windows_and_next_run_works(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=10)
    seen = []

    def press_cancel_after_first_window(value, total, preview, node_id=None):
        seen.append(value)
        if value == 1:
            host.mm.interrupt_current_processing(True)

    host.utils.set_progress_bar_global_hook(press_cancel_after_first_window)
    with pytest.raises(host.mm.InterruptProcessingException):
        run_matte(pack, frames, masks, hosted, window=2, overlap=0)
    assert seen == [1]  # stopped before the second window
    assert host.mm.processing_interrupted() is False  # flag consumed: the next prompt can run
    host.utils.set_progress_bar_global_hook(None)
    alpha = run_matte(pack, frames, masks, hosted, window=2, overlap=0)[0]
    assert alpha.shape == (10, 40, 56)


def test_cancel_in_refiner(pack, host):
    frames, masks = clip(t=4)
    host.mm.interrupt_current_processing(True)
    with pytest.raises(host.mm.InterruptProcessingException):
        run_matte(pack, frames, masks, None)
    assert host.mm.processing_interrupted() is False


# ------------------------------------------------------------------------------------------ AlphaComposite
def test_alpha_composite_maths_and_conventions(pack, host):
    frames, masks = clip(t=3)
    alpha = masks * 0.75
    comp, rgba = composite(pack, foreground=frames, alpha=alpha)
    green = torch.tensor([0.0, 1.0, 0.0])
    expected = frames * alpha[..., None] + green * (1 - alpha[..., None])
    assert torch.allclose(comp, expected, atol=1e-6)
    assert rgba.shape == (3, 40, 56, 4) and torch.equal(rgba[..., 3], alpha)
    # ComfyUI's inverted convention gives the same result with invert_alpha
    comp2, _ = composite(pack, foreground=frames, alpha=1 - alpha, invert_alpha=True)
    assert torch.allclose(comp, comp2, atol=1e-6)
    _, pre = composite(pack, foreground=frames, alpha=alpha, rgba_mode="premultiplied")
    assert torch.allclose(pre[..., :3], frames * alpha[..., None], atol=1e-6)


def test_alpha_composite_backgrounds(pack, host):
    frames, masks = clip(t=3)
    bg_single = torch.rand(1, 20, 28, 3)
    comp, _ = composite(pack, foreground=frames, alpha=masks, background="image", background_image=bg_single,
                        fit="stretch")
    assert comp.shape == (3, 40, 56, 3)
    fitted = lib(pack, "imaging.composite").fit_image(bg_single, 40, 56, "stretch")[0]
    for i in range(3):
        outside = masks[i] < 0.5
        assert torch.allclose(comp[i][outside], fitted[outside], atol=1e-6)  # one image for every frame
    cb, _ = composite(pack, foreground=frames, alpha=torch.zeros(1, 40, 56), background="checkerboard")
    assert len(torch.unique(cb[0, ..., 0])) == 2  # the grey checkerboard's two tones
    errors = pack.videomama.errors
    with pytest.raises(errors.InputError, match="background_image is not connected"):
        composite(pack, foreground=frames, alpha=masks, background="image")
    with pytest.raises(errors.InputError, match="#RRGGBB"):
        composite(pack, foreground=frames, alpha=masks, color="green-ish")
    with pytest.raises(errors.InputError, match="2 frames but the clip has 3"):
        composite(pack, foreground=frames, alpha=masks, background="image", background_image=torch.rand(2, 8, 8, 3))


def test_alpha_composite_foreground_estimation_reduces_fringe(pack, host):
    """A blue subject with a soft edge shot on red, re-composited on green: estimation removes the red fringe."""
    h, w = 32, 64
    x = torch.arange(w, dtype=torch.float32)
    alpha = ((30 - x) / 6).clamp(0, 1).expand(h, w)[None].clone()  # solid up to x=24, a 6 px soft edge
    fg_true = torch.tensor([0.1, 0.2, 0.9]).expand(1, h, w, 3)
    old_bg = torch.tensor([1.0, 0.0, 0.0]).expand(1, h, w, 3)
    frame = fg_true * alpha[..., None] + old_bg * (1 - alpha[..., None])
    truth = fg_true * alpha[..., None] + torch.tensor([0.0, 1.0, 0.0]) * (1 - alpha[..., None])
    naive, _ = composite(pack, foreground=frame, alpha=alpha, estimate_foreground=False)
    est, rgba = composite(pack, foreground=frame, alpha=alpha, estimate_foreground=True)
    soft = (alpha > 0.05) & (alpha < 0.95)
    err_naive = float((naive - truth).abs()[soft].mean())
    err_est = float((est - truth).abs()[soft].mean())
    assert err_est < 0.5 * err_naive, (err_est, err_naive)
    assert float(rgba[..., 0][soft].mean()) < 0.3  # the straight colour in the band is no longer reddish
    assert host.updates  # progress reported


# ------------------------------------------------------------------------------------------ SAM2
@pytest.fixture()
def sam2_file(host):
    pytest.importorskip("sam2")  # an optional dependency of the pack (the test environment installs it)
    from tiny_sam2 import write_tiny_sam2

    path = Path(host.fp.models_dir) / "sam2" / "tiny_sam2.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiny_sam2(path)


def test_sam2_track_then_matte(pack, host, sam2_file):
    assert pack.nodes.host.sam2_choices() == ["sam2/tiny_sam2.safetensors"]
    frames, masks = clip(t=5, h=48, w=64)
    sam2 = run(pack, "LoadSAM2", checkpoint="sam2/tiny_sam2.safetensors", precision="auto")[0]
    assert host.mm.LOAD_CALLS == [] and {p.device.type for p in sam2.model.parameters()} == {"cpu"}
    prompts = '[{"frame": 2, "object": 1, "box": [8, 8, 40, 40]}]'
    track = dict(images=frames, sam2_model=sam2, prompts=prompts, objects="union", offload_to_cpu=False)
    (tracked,) = run(pack, "SAM2MatteTrack", output="binary", **track)
    assert tracked.shape == (5, 48, 64) and set(torch.unique(tracked).tolist()) <= {0.0, 1.0}
    assert len(host.mm.LOAD_CALLS) == 1 and host.updates[-1] == (5, 5)
    (soft,) = run(pack, "SAM2MatteTrack", output="soft", **track)
    assert torch.equal((soft > 0.5).float(), tracked)
    alpha = run_matte(pack, frames, tracked, None)[0]  # chained into the refiner
    assert alpha.shape == (5, 48, 64)
    with pytest.raises(pack.videomama.errors.InputError, match="frame"):
        run(pack, "SAM2MatteTrack", images=frames, sam2_model=sam2, prompts='[{"frame": 9, "points": [[5, 5]]}]')
    with pytest.raises(pack.videomama.errors.InputError, match="mask_frame=7 is outside it"):
        run(pack, "SAM2MatteTrack", images=frames, sam2_model=sam2, prompts="", mask=masks[:3], mask_frame=7)


def test_sam2_keyframe_mask_prompts_its_frame(pack, host, sam2_file):
    """SAM2 returns a mask prompt as the mask of its frame: the right mask of a batch, resized to the frames."""
    frames, masks = clip(t=4, h=48, w=64)
    sam2 = run(pack, "LoadSAM2", checkpoint="sam2/tiny_sam2.safetensors")[0]
    batch = torch.zeros_like(masks)
    batch[2] = masks[2]  # a batch of keyframe masks: the one at mask_frame is the prompt
    (out,) = run(pack, "SAM2MatteTrack", images=frames, sam2_model=sam2, prompts="", mask=batch, mask_frame=2)
    assert float((out[2] != masks[2]).float().mean()) < 0.03  # up to SAM2's internal resampling
    small = torch.nn.functional.interpolate(masks[1][None, None], size=(24, 32))[0]  # one mask, half size
    (out,) = run(pack, "SAM2MatteTrack", images=frames, sam2_model=sam2, prompts="", mask=small, mask_frame=1)
    assert out.shape == (4, 48, 64) and float((out[1] != masks[1]).float().mean()) < 0.03


def test_sam2_placed_whole_on_a_simulated_gpu_in_novram(pack, host, sam2_file):
    host.mm.DEVICE = torch.device("meta")
    host.mm.vram_state = host.mm.VRAMState.NO_VRAM
    sam2 = run(pack, "LoadSAM2", checkpoint="sam2/tiny_sam2.safetensors", precision="auto")[0]
    with torch.inference_mode():
        holder = pack.nodes.host.load_for_inference(sam2)
    assert {t.device.type for t in list(holder.parameters()) + list(holder.buffers())} == {"meta"}
    assert holder.predictor.device == torch.device("meta")
