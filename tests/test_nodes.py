"""The ComfyUI nodes against a small stand-in of the host APIs (tests/fake_comfy), no ComfyUI needed.

The pack is imported the way ComfyUI imports it: its root __init__.py as a package by path,
so every import inside it is relative. Weights are tiny random models saved in the real
on-disk layouts (conftest.py ``layouts``) and placed in a temporary ComfyUI models folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).resolve().parent / "fake_comfy"
PACK_NAME = "comfyui_videomama_under_test"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run ~20x faster on one thread when the CI box is shared (no spin-waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _host_module(name: str) -> bool:
    return name in ("folder_paths", "comfy") or name.startswith("comfy.")


@pytest.fixture(scope="module")
def pack():
    """The pack imported as ComfyUI does, with the stand-in host on sys.path.

    A real ComfyUI imported earlier in this process is set aside and put back afterwards.
    """
    stashed = {name: sys.modules.pop(name) for name in list(sys.modules) if _host_module(name)}
    sys.path.insert(0, str(FAKE))
    try:
        spec = importlib.util.spec_from_file_location(
            PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
        import comfy.model_management

        assert Path(comfy.model_management.__file__).is_relative_to(FAKE)
        yield module
    finally:
        sys.path.remove(str(FAKE))
        for name in list(sys.modules):
            if _host_module(name) or name.startswith(PACK_NAME):
                del sys.modules[name]
        sys.modules.update(stashed)


@pytest.fixture()
def host(pack, tmp_path):
    """Fresh stand-in state and an empty ComfyUI base folder; yields the fake modules."""
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    folder_paths.reset(str(tmp_path))
    mm.reset()
    comfy.utils.UPDATES.clear()
    comfy.utils.HOOK = None
    pack.nodes.host.register_model_folders()
    yield type("Host", (), {"mm": mm, "fp": folder_paths, "utils": comfy.utils, "base": tmp_path})
    mm.reset()
    comfy.utils.HOOK = None


@pytest.fixture()
def models(host, layouts):
    """The tiny UNet as a diffusers folder in models/videomama and an svd_xt-style file in models/checkpoints."""
    md = Path(host.fp.models_dir)
    shutil.copytree(layouts["unet_folder"], md / "videomama" / "VideoMaMa" / "unet")
    (md / "checkpoints").mkdir(parents=True)
    shutil.copy(layouts["svd_xt_single_file"], md / "checkpoints" / "svd_xt.safetensors")
    return md


def nodes(pack):
    return pack.NODE_CLASS_MAPPINGS


def clip(t=6, h=40, w=56, seed=0):
    """Frames with a bright disc on a textured background and the disc's mask."""
    gen = torch.Generator().manual_seed(seed)
    frames = torch.rand(t, h, w, 3, generator=gen) * 0.3
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks = torch.zeros(t, h, w)
    for i in range(t):
        disc = ((yy - h / 2) ** 2 + (xx - w / 3 - i) ** 2) < (h / 4) ** 2
        frames[i][disc] = torch.tensor([0.9, 0.8, 0.7])
        masks[i] = disc.float()
    return frames, masks


def load(pack, unet="videomama/VideoMaMa/unet", vae="checkpoints/svd_xt.safetensors", precision="fp32"):
    with torch.inference_mode():
        return nodes(pack)["LoadVideoMaMa"]().load(unet, vae, precision)[0]


def run_matte(pack, frames, masks, model=None, **kw):
    args = dict(resolution=64, window=4, overlap=1, seed=42, mask_threshold=0.5, posterior="mean")
    args.update(kw)
    with torch.inference_mode():
        return nodes(pack)["MaskToMatte"]().matte(frames, masks, model=model, **args)


# ------------------------------------------------------------------------------------------ import
def test_pack_imports_without_comfyui_and_does_nothing_heavy():
    """Importing the pack in a bare interpreter: mappings present, no comfy, no diffusers, no CUDA."""
    import subprocess

    code = (
        "import importlib.util, sys, json\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "import torch\n"
        "print(json.dumps({'nodes': sorted(m.NODE_CLASS_MAPPINGS), 'comfy': 'comfy' in sys.modules,\n"
        "  'folder_paths': 'folder_paths' in sys.modules, 'diffusers': 'diffusers' in sys.modules,\n"
        "  'cuda': torch.cuda.is_initialized(), 'unet': m.NODE_CLASS_MAPPINGS['LoadVideoMaMa'].INPUT_TYPES()"
        "['required']['unet'][0]}))\n"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"LoadVideoMaMa", "MaskToMatte", "AlphaComposite"} <= set(info["nodes"])
    assert not info["comfy"] and not info["folder_paths"] and not info["diffusers"] and not info["cuda"]
    assert len(info["unet"]) == 1 and info["unet"][0].startswith("(no VideoMaMa UNet found")


def test_every_input_and_output_has_a_tooltip(pack):
    for name, cls in nodes(pack).items():
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for inp, (_type, opts) in spec.get(section, {}).items():
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES), name
        assert cls.CATEGORY == "VideoMaMa" and len(cls.DESCRIPTION) > 40
        for _type, opts in spec["required"].values():
            if _type in ("INT", "FLOAT"):
                assert {"min", "max", "step", "default"} <= set(opts), (name, opts)
    alpha_tip = nodes(pack)["MaskToMatte"].OUTPUT_TOOLTIPS[0]
    assert "1 = subject" in alpha_tip and "InvertMask" in alpha_tip


# ------------------------------------------------------------------------------------------ folders
def test_model_folders_are_added_not_replaced(pack, host):
    fp = host.fp
    fp.folder_names_and_paths["videomama"] = (["/yaml/videomama"], set())  # as extra_model_paths.yaml does
    pack.nodes.host.register_model_folders()
    pack.nodes.host.register_model_folders()  # twice: no duplicates
    assert fp.get_folder_paths("videomama") == ["/yaml/videomama", str(Path(fp.models_dir) / "videomama")]
    assert fp.get_folder_paths("sam2") == [str(Path(fp.models_dir) / "sam2")]


def test_listing_without_weights_gives_explained_placeholder(pack, host):
    h = pack.nodes.host
    assert h.unet_choices() == [h.UNET_PLACEHOLDER]
    assert h.vae_choices() == [h.VAE_PLACEHOLDER]
    spec = nodes(pack)["LoadVideoMaMa"].INPUT_TYPES()["required"]
    assert "models/videomama" in spec["unet"][0][0] and "models/checkpoints" in spec["vae"][0][0]
    with pytest.raises(pack.videomama.errors.CheckpointError, match="no weights were found.*models/videomama"):
        load(pack, h.UNET_PLACEHOLDER, h.VAE_PLACEHOLDER)


def test_listing_finds_every_layout_in_the_right_list(pack, host, layouts):
    md = Path(host.fp.models_dir)
    shutil.copytree(layouts["unet_release_root"], md / "videomama" / "VideoMaMa")  # repo root with unet/
    (md / "diffusion_models").mkdir(parents=True)
    shutil.copy(layouts["unet_file"], md / "diffusion_models" / "vmm.safetensors")
    shutil.copy(layouts["svd_base_unet_file"], md / "diffusion_models" / "svd_base_unet.safetensors")  # 8 ch: not ours
    (md / "checkpoints").mkdir()
    shutil.copy(layouts["svd_xt_single_file"], md / "checkpoints" / "svd_xt_1_1.safetensors")
    shutil.copy(layouts["image_vae_file"], md / "checkpoints" / "sd15_svd_lookalike.safetensors")  # name matches, not a VAE of SVD
    (md / "vae").mkdir()
    shutil.copy(layouts["vae_file_sgm"], md / "vae" / "svd_vae.safetensors")
    shutil.copy(layouts["image_vae_file"], md / "vae" / "sdxl_vae.safetensors")  # image VAE: not listed
    shutil.copytree(layouts["vae_folder"], md / "diffusers" / "svd-xt" / "vae")
    (md / "videomama" / "notes.txt").write_text("not weights")

    h = pack.nodes.host
    unets, vaes = h.unet_choices(), h.vae_choices()
    assert unets == ["diffusion_models/vmm.safetensors", "videomama/VideoMaMa/unet"]
    assert vaes == ["checkpoints/svd_xt_1_1.safetensors", "diffusers/svd-xt/vae", "vae/svd_vae.safetensors"]
    for label in unets:
        assert h.resolve_choice(label, "unet").exists()
    with pytest.raises(pack.videomama.errors.CheckpointError, match="not found.*refresh"):
        h.resolve_choice("videomama/gone.safetensors", "unet")


# ------------------------------------------------------------------------------------------ loading
def test_loader_reads_to_cpu_and_never_touches_the_gpu(pack, host, models):
    host.mm.DEVICE = torch.device("meta")  # a simulated GPU: anything put there would show
    host.mm.vram_state = host.mm.VRAMState.NORMAL_VRAM
    hosted = load(pack, precision="auto")
    assert host.mm.LOAD_CALLS == []
    devices = {p.device.type for p in hosted.model.parameters()}
    assert devices == {"cpu"}
    assert hosted.patcher.load_device == torch.device("meta")
    # auto on a fast GPU: ComfyUI's unet_dtype/vae_dtype choice (stand-in: first half dtype offered)
    assert hosted.info["unet_dtype"] == torch.float16 and hosted.info["vae_dtype"] == torch.bfloat16
    assert {p.dtype for p in hosted.model.unet.parameters()} == {torch.float16}
    # the big layers are now comfy.ops classes, so low-VRAM loads can stream them
    import comfy.ops

    assert isinstance(hosted.model.unet.conv_in, comfy.ops.disable_weight_init.Conv2d)
    assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d) for m in hosted.model.modules())


@pytest.mark.parametrize("precision,unet_dtype,vae_dtype", [
    ("auto", torch.float32, torch.float32),  # auto on the CPU is fp32 (ComfyUI's choice)
    ("bf16", torch.bfloat16, torch.bfloat16),
])
def test_precision_sets_weight_dtypes(pack, host, models, precision, unet_dtype, vae_dtype):
    hosted = load(pack, precision=precision)
    assert hosted.model.unet.conv_in.weight.dtype == unet_dtype
    assert hosted.model.vae.decoder.conv_in.weight.dtype == vae_dtype


def test_loader_errors_name_the_file(pack, host, models, layouts):
    shutil.copy(layouts["image_vae_file"], Path(host.fp.models_dir) / "videomama" / "sd_vae.safetensors")
    with pytest.raises(pack.videomama.errors.CheckpointError, match="image VAE"):
        load(pack, vae="videomama/sd_vae.safetensors")


# ------------------------------------------------------------------------------------------ matting
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
    windows = pack.videomama.pipeline.schedule.split_windows(6, 4, 1)
    assert host.utils.UPDATES == [(k + 1, len(windows)) for k in range(len(windows))]
    # the node computes exactly what the library computes (under the library's default memory plan)
    lib = pack.videomama
    opts = lib.options.MatteOptions(resolution=64, window=4, overlap=1, posterior="mean")
    planned = lib.memory.execution.PlannedModel(hosted.model, lib.memory.plans.DEFAULT)
    ref = lib.pipeline.matte.matte_clip(planned, frames, masks, opts)
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


def test_without_model_uses_weight_free_refiner(pack, host):
    frames, masks = clip(t=5)
    alpha, rgba, preview = run_matte(pack, frames, masks, None)
    assert alpha.shape == (5, 40, 56)
    lib = pack.videomama
    ref = lib.imaging.refine.refine_clip(frames, masks, threshold=0.5, work_size=64, device="cpu")
    assert torch.allclose(alpha, ref)
    # the matte follows the mask: inside ~1, outside ~0
    assert float(alpha[masks > 0.5].mean()) > 0.9 and float(alpha[masks < 0.5].mean()) < 0.1
    assert host.utils.UPDATES[-1] == (5, 5) and host.mm.LOAD_CALLS == []


def test_cancel_stops_between_windows_and_next_run_works(pack, host, models):
    hosted = load(pack)
    frames, masks = clip(t=10)
    seen = []

    def press_cancel_after_first_window(value, total):
        seen.append(value)
        if value == 1:
            host.mm.interrupt_current_processing(True)

    host.utils.HOOK = press_cancel_after_first_window
    with pytest.raises(host.mm.InterruptProcessingException):
        run_matte(pack, frames, masks, hosted, window=2, overlap=0)
    assert seen == [1]  # stopped before the second window
    assert host.mm.processing_interrupted() is False  # flag consumed: the next prompt can run
    host.utils.HOOK = None
    alpha = run_matte(pack, frames, masks, hosted, window=2, overlap=0)[0]
    assert alpha.shape == (10, 40, 56)


def test_cancel_in_refiner(pack, host):
    frames, masks = clip(t=4)
    host.mm.interrupt_current_processing(True)
    with pytest.raises(host.mm.InterruptProcessingException):
        run_matte(pack, frames, masks, None)
    assert host.mm.processing_interrupted() is False


# ------------------------------------------------------------------------------------------ VRAM modes
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


@pytest.mark.parametrize("state,free", [
    ("NORMAL_VRAM", 8 * 2**30), ("NORMAL_VRAM", 0), ("LOW_VRAM", 0), ("NO_VRAM", 0), ("HIGH_VRAM", 0),
])
def test_placement_on_a_simulated_gpu(pack, host, models, state, free):
    """Load device = meta (a stand-in GPU): after ComfyUI's load every tensor is on it or cast per call."""
    host.mm.DEVICE = torch.device("meta")
    host.mm.vram_state = getattr(host.mm.VRAMState, state)
    host.mm.FREE_MEMORY = free
    host.mm.MIN_BUDGET = 2**20 if free == 0 else host.mm.MIN_BUDGET  # tiny model: force a partial budget
    hosted = load(pack, precision="fp32")
    h = pack.nodes.host
    with torch.inference_mode():
        model = h.load_for_inference(hosted, memory_required=0)
    casting = sum(1 for m in model.modules() if getattr(m, "comfy_cast_weights", False))
    assert _misplaced(model, "meta") == []
    assert model.compute_device == torch.device("meta")  # computation goes to the GPU even for streamed layers
    if state == "NO_VRAM" or (free == 0 and state != "HIGH_VRAM"):
        assert casting > 10  # streamed layers
    else:
        assert casting == 0


def test_plain_patcher_would_leave_tensors_behind(pack, host, models):
    """Why place_unmanaged exists: without it a partial load leaves e.g. AlphaBlender mix factors on the CPU."""
    import comfy.model_patcher

    host.mm.DEVICE = torch.device("meta")
    hosted = load(pack, precision="fp32")
    model = hosted.model
    plain = comfy.model_patcher.ModelPatcher(model, torch.device("meta"), torch.device("cpu"))
    budget = sum(p.nelement() * 4 for p in model.parameters()) // 4
    plain.load(torch.device("meta"), lowvram_model_memory=budget)
    left = _misplaced(model, "meta")
    assert left  # the stand-in reproduces ComfyUI's behaviour for non-ops modules
    moved = pack.nodes.host.place_unmanaged(model, torch.device("meta"))
    assert moved > 0 and _misplaced(model, "meta") == []


@pytest.mark.parametrize("state", ["NO_VRAM", "LOW_VRAM"])
def test_streamed_forward_is_bit_identical(pack, host, models, state):
    """Low-VRAM modes on a real compute device (the CPU standing in for the GPU): same numbers."""
    frames, masks = clip(t=3)
    ref_model = load(pack)
    ref = run_matte(pack, frames, masks, ref_model, window=3)[0]
    host.mm.vram_state = getattr(host.mm.VRAMState, state)
    host.mm.FREE_MEMORY = 0
    host.mm.MIN_BUDGET = 2**20
    streamed = load(pack)
    out = run_matte(pack, frames, masks, streamed, window=3)[0]
    casting = sum(1 for m in streamed.model.modules() if getattr(m, "comfy_cast_weights", False))
    assert casting > 10
    assert torch.equal(out, ref)


# ------------------------------------------------------------------------------------------ AlphaComposite
def composite_node(pack, **kw):
    args = dict(invert_alpha=False, background="color", color="#00FF00", fit="cover",
                estimate_foreground=False, rgba_mode="straight")
    args.update(kw)
    with torch.inference_mode():
        return nodes(pack)["AlphaComposite"]().composite(**args)


def test_alpha_composite_maths_and_conventions(pack, host):
    frames, masks = clip(t=3)
    alpha = masks * 0.75
    comp, rgba = composite_node(pack, foreground=frames, alpha=alpha)
    green = torch.tensor([0.0, 1.0, 0.0])
    expected = frames * alpha[..., None] + green * (1 - alpha[..., None])
    assert torch.allclose(comp, expected, atol=1e-6)
    assert rgba.shape == (3, 40, 56, 4) and torch.equal(rgba[..., 3], alpha)
    # ComfyUI's inverted convention gives the same result with invert_alpha
    comp2, _ = composite_node(pack, foreground=frames, alpha=1 - alpha, invert_alpha=True)
    assert torch.allclose(comp, comp2, atol=1e-6)
    _, pre = composite_node(pack, foreground=frames, alpha=alpha, rgba_mode="premultiplied")
    assert torch.allclose(pre[..., :3], frames * alpha[..., None], atol=1e-6)


def test_alpha_composite_backgrounds(pack, host):
    frames, masks = clip(t=3)
    bg_single = torch.rand(1, 20, 28, 3)
    comp, _ = composite_node(pack, foreground=frames, alpha=masks, background="image",
                             background_image=bg_single, fit="stretch")
    assert comp.shape == (3, 40, 56, 3)
    fitted = pack.videomama.imaging.composite.fit_image(bg_single, 40, 56, "stretch")[0]
    for i in range(3):
        outside = masks[i] < 0.5
        assert torch.allclose(comp[i][outside], fitted[outside], atol=1e-6)  # one image for every frame
    cb, _ = composite_node(pack, foreground=frames, alpha=torch.zeros(1, 40, 56), background="checkerboard")
    assert len(torch.unique(cb[0, ..., 0])) == 2  # the grey checkerboard's two tones
    with pytest.raises(pack.videomama.errors.InputError, match="background_image is not connected"):
        composite_node(pack, foreground=frames, alpha=masks, background="image")
    with pytest.raises(pack.videomama.errors.InputError, match="#RRGGBB"):
        composite_node(pack, foreground=frames, alpha=masks, color="green-ish")
    with pytest.raises(pack.videomama.errors.InputError, match="2 frames but the clip has 3"):
        composite_node(pack, foreground=frames, alpha=masks, background="image", background_image=torch.rand(2, 8, 8, 3))


def test_alpha_composite_foreground_estimation_reduces_fringe(pack, host):
    """A blue subject with a soft edge shot on red, re-composited on green: estimation removes the red fringe."""
    h, w = 32, 64
    x = torch.arange(w, dtype=torch.float32)
    alpha = ((30 - x) / 6).clamp(0, 1).expand(h, w)[None].clone()  # solid up to x=24, a 6 px soft edge
    fg_true = torch.tensor([0.1, 0.2, 0.9]).expand(1, h, w, 3)
    old_bg = torch.tensor([1.0, 0.0, 0.0]).expand(1, h, w, 3)
    frame = fg_true * alpha[..., None] + old_bg * (1 - alpha[..., None])
    truth = fg_true * alpha[..., None] + torch.tensor([0.0, 1.0, 0.0]) * (1 - alpha[..., None])
    naive, _ = composite_node(pack, foreground=frame, alpha=alpha, estimate_foreground=False)
    est, rgba = composite_node(pack, foreground=frame, alpha=alpha, estimate_foreground=True)
    soft = (alpha > 0.05) & (alpha < 0.95)
    err_naive = float((naive - truth).abs()[soft].mean())
    err_est = float((est - truth).abs()[soft].mean())
    assert err_est < 0.5 * err_naive, (err_est, err_naive)
    assert float(rgba[..., 0][soft].mean()) < 0.3  # the straight colour in the band is no longer reddish
    assert host.utils.UPDATES  # progress reported


# ------------------------------------------------------------------------------------------ SAM2
@pytest.fixture()
def sam2_file(host):
    pytest.importorskip("sam2")
    from tiny_sam2 import write_tiny_sam2

    path = Path(host.fp.models_dir) / "sam2" / "tiny_sam2.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_tiny_sam2(path)


def test_sam2_listing_placeholder(pack, host):
    h = pack.nodes.host
    assert nodes(pack)["LoadSAM2"].INPUT_TYPES()["required"]["checkpoint"][0] == [h.SAM2_PLACEHOLDER]
    with pytest.raises(pack.videomama.errors.CheckpointError, match="models/sam2"):
        with torch.inference_mode():
            nodes(pack)["LoadSAM2"]().load(h.SAM2_PLACEHOLDER)


def test_sam2_track_then_matte(pack, host, sam2_file):
    assert pack.nodes.host.sam2_choices() == ["sam2/tiny_sam2.safetensors"]
    frames, masks = clip(t=5, h=48, w=64)
    with torch.inference_mode():
        sam2 = nodes(pack)["LoadSAM2"]().load("sam2/tiny_sam2.safetensors", "auto")[0]
        assert host.mm.LOAD_CALLS == [] and {p.device.type for p in sam2.model.parameters()} == {"cpu"}
        prompts = '[{"frame": 2, "object": 1, "box": [8, 8, 40, 40]}]'
        (tracked,) = nodes(pack)["SAM2MatteTrack"]().track(frames, sam2, prompts, "binary", "union", False)
    assert tracked.shape == (5, 48, 64) and set(torch.unique(tracked).tolist()) <= {0.0, 1.0}
    assert len(host.mm.LOAD_CALLS) == 1 and host.utils.UPDATES[-1] == (5, 5)
    with torch.inference_mode():
        (soft,) = nodes(pack)["SAM2MatteTrack"]().track(frames, sam2, prompts, "soft", "union", False)
    assert torch.equal((soft > 0.5).float(), tracked)
    alpha = run_matte(pack, frames, tracked, None)[0]  # chained into the refiner
    assert alpha.shape == (5, 48, 64)
    with pytest.raises(pack.videomama.errors.InputError, match="frame"):
        with torch.inference_mode():
            nodes(pack)["SAM2MatteTrack"]().track(frames, sam2, '[{"frame": 9, "points": [[5, 5]]}]')


def test_sam2_placed_whole_on_a_simulated_gpu_in_novram(pack, host, sam2_file):
    host.mm.DEVICE = torch.device("meta")
    host.mm.vram_state = host.mm.VRAMState.NO_VRAM
    with torch.inference_mode():
        sam2 = nodes(pack)["LoadSAM2"]().load("sam2/tiny_sam2.safetensors", "auto")[0]
        holder = pack.nodes.host.load_for_inference(sam2)
    assert {t.device.type for t in list(holder.parameters()) + list(holder.buffers())} == {"meta"}
    assert holder.predictor.device == torch.device("meta")


# ------------------------------------------------------------------------------------------ memory plans
def test_memory_plan_never_streams_weights_and_fits_the_free_memory(pack):
    lib = pack.videomama
    opts = lib.options.MatteOptions(resolution=1024, window=16)

    class Host:  # ComfyHost's planning inputs without a loaded model
        places_weights = True

        def __init__(self, free):
            self.free = free

        def available_bytes(self, model):
            return self.free

    def plan_for(free, dtype=torch.float16):
        return lib.pipeline.run.resolve_plan("auto", Host(free), None, (576, 1024), opts, dtype)

    roomy, tight, cpu = plan_for(80 * 2**30), plan_for(4 * 2**30), plan_for(None, torch.float32)
    assert roomy.name == "default" and cpu.name == "default"
    assert tight.name == "low_vram" and tight.encode_batch == 1
    for plan in (roomy, tight, cpu):
        assert plan.stream_unet is False  # ComfyUI places the weights, the library must not
        assert not plan.changes_results
    assert pack.nodes.host.ComfyHost.places_weights is True  # the node runs with plans like these


def test_out_of_memory_retries_once_with_smaller_encoder_batches(pack, host, models, monkeypatch, caplog):
    hosted = load(pack)
    frames, masks = clip(t=4)
    ref = run_matte(pack, frames, masks, hosted)[0]
    h = pack.nodes.host
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
    host.mm.DEVICE = torch.device("meta")
    host.mm.vram_state = host.mm.VRAMState.NORMAL_VRAM
    host.mm.FREE_MEMORY = 10 * 2**30
    hosted = load(pack)
    size = hosted.patcher.model_size()
    h = pack.nodes.host
    assert h.free_memory_for(hosted) == 10 * 2**30 - size
    with torch.inference_mode():
        h.load_for_inference(hosted)
    assert h.free_memory_for(hosted) == 10 * 2**30  # our resident weights are counted back in
    host.mm.DEVICE = torch.device("cpu")
    assert h.free_memory_for(load(pack)) is None


def test_a_broken_optional_node_module_leaves_the_rest_working(tmp_path):
    """A copy of the pack whose AlphaComposite module fails at import: the other nodes still register."""
    import subprocess

    copy = tmp_path / "pack"
    copy.mkdir()
    shutil.copy(ROOT / "__init__.py", copy / "__init__.py")
    for sub in ("nodes", "videomama"):
        shutil.copytree(ROOT / sub, copy / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "nodes" / "composite_nodes.py").write_text("raise ImportError('simulated missing dependency')\n")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(copy / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(copy)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
        "print(sorted(m.NODE_CLASS_MAPPINGS)); print(m.nodes.IMPORT_ERRORS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "'MaskToMatte'" in out.stdout and "'AlphaComposite'" not in out.stdout
    assert "simulated missing dependency" in out.stdout
    # the core node module is required: its failure must be visible to ComfyUI (IMPORT FAILED)
    (copy / "nodes" / "videomama_nodes.py").write_text("raise ImportError('core broken')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode != 0 and "core broken" in out.stderr


def test_auto_precision_never_uses_fp8(pack, host, monkeypatch):
    """--fp8_e4m3fn-unet makes ComfyUI's unet_dtype answer fp8; VideoMaMa's layers cannot compute in it."""
    monkeypatch.setattr(host.mm, "unet_dtype", lambda **kw: torch.float8_e4m3fn)
    h = pack.nodes.host
    assert h.model_dtypes("auto", torch.device("cuda"))[0] == torch.float16
    assert h.model_dtypes("auto", torch.device("cpu"))[0] == torch.float32
    assert h.model_dtypes("bf16", torch.device("cuda")) == (torch.bfloat16, torch.bfloat16)
    with pytest.raises(pack.videomama.errors.InputError, match="precision .int8. is unknown"):
        h.model_dtypes("int8", torch.device("cpu"))


def test_detail_pass_changes_only_the_soft_edge(pack, host, models):
    """The optional full-resolution pass (source larger than 'resolution') adds detail to the
    soft part of the matte and leaves fully opaque or transparent regions alone."""
    hosted = load(pack)
    frames, masks = clip(t=4, h=96, w=160)  # larger than resolution=64
    plain = run_matte(pack, frames, masks, hosted, resolution=64)[0]
    detailed = run_matte(pack, frames, masks, hosted, resolution=64, detail_pass=True)[0]
    assert detailed.shape == plain.shape and 0 <= float(detailed.min()) and float(detailed.max()) <= 1
    ref = pack.videomama.imaging.refine.detail_refine(frames, plain, resolution=64)
    assert torch.allclose(detailed, ref, atol=1e-6)
    assert float((detailed - plain).abs().max()) > 1e-3  # the pass did something
    hard = (plain < 0.005) | (plain > 0.995)
    if hard.any():
        assert float((detailed - plain)[hard].abs().max()) < 1e-2
