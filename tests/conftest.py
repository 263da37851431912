"""Shared fixtures: tiny random-weight models saved in every on-disk layout users have, and the
pack inside the stand-in ComfyUI host (``pack``, ``host``, ``models``; helpers in node_harness.py).

Tests then go through the real loaders (``videomama.weights.checkpoints``), never through mocks.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from videomama.weights.configs import (
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    build_random_unet,
    build_random_vae,
)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run much faster on one thread when the CI box is shared (no spin-waiting).
    Use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_unet():
    return build_random_unet(TINY_UNET_CONFIG, seed=0)


@pytest.fixture(scope="session")
def tiny_vae():
    return build_random_vae(TINY_VAE_CONFIG, seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_unet, tiny_vae):
    from videomama.pipeline.model import VideoMaMaModel

    return VideoMaMaModel(tiny_unet, tiny_vae)


def save_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="session")
def layouts(tmp_path_factory, tiny_unet, tiny_vae):
    """Paths of the tiny models in each supported (and some refused) layout."""
    from videomama.weights import sgm_vae as sgm_vae

    root = tmp_path_factory.mktemp("weights")
    paths: dict[str, Path] = {}

    # The released VideoMaMa UNet: <repo>/unet/{config.json, diffusion_pytorch_model.safetensors}
    release = root / "VideoMaMa"
    tiny_unet.save_pretrained(release / "unet")
    paths["unet_release_root"] = release
    paths["unet_folder"] = release / "unet"
    fp16 = root / "VideoMaMa-fp16"
    copy.deepcopy(tiny_unet).to(torch.float16).save_pretrained(fp16 / "unet", variant="fp16")
    paths["unet_folder_fp16"] = fp16 / "unet"
    # A single file with diffusers keys and no config: the config is inferred from shapes.
    paths["unet_file"] = save_safetensors(root / "videomama_unet.safetensors", tiny_unet.state_dict())
    paths["unet_file_bf16"] = save_safetensors(
        root / "videomama_unet_bf16.safetensors", {k: v.to(torch.bfloat16) for k, v in tiny_unet.state_dict().items()}
    )

    # SVD-XT diffusers folder: <svd>/vae/{config.json, diffusion_pytorch_model.safetensors}
    svd = root / "stable-video-diffusion-img2vid-xt"
    tiny_vae.save_pretrained(svd / "vae")
    paths["vae_root"] = svd
    paths["vae_folder"] = svd / "vae"
    paths["vae_file_diffusers"] = save_safetensors(root / "svd_vae_diffusers.safetensors", tiny_vae.state_dict())
    sgm_state = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(tiny_vae.state_dict())
    paths["vae_file_sgm"] = save_safetensors(root / "svd_vae_sgm.safetensors", sgm_state)
    # A single-file SVD checkpoint: SGM names, VAE under first_stage_model., plus a (base, 8-channel) UNet.
    svd_single = {f"{sgm_vae.SGM_VAE_PREFIX}{k}": v for k, v in sgm_state.items()}
    svd_single["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 8, 3, 3)
    svd_single["conditioner.embedders.0.open_clip.model.visual.proj"] = torch.randn(4, 4)
    paths["svd_xt_single_file"] = save_safetensors(root / "svd_xt.safetensors", svd_single)

    # Wrong files users hand over.
    base_cfg = {**dict(tiny_unet.config), "in_channels": 8}
    base_cfg = {k: v for k, v in base_cfg.items() if not k.startswith("_")}
    base = build_random_unet(base_cfg, seed=3)
    base.save_pretrained(root / "svd-base" / "unet")
    paths["svd_base_unet_folder"] = root / "svd-base"
    paths["svd_base_unet_file"] = save_safetensors(root / "svd_base_unet.safetensors", base.state_dict())

    from diffusers import AutoencoderKL

    torch.manual_seed(5)
    image_vae = AutoencoderKL(
        block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4,
    )
    paths["image_vae_file"] = save_safetensors(root / "sd_vae.safetensors", image_vae.state_dict())
    image_vae.save_pretrained(root / "sd-vae")
    paths["image_vae_folder"] = root / "sd-vae"

    good = paths["unet_file"].read_bytes()
    truncated = root / "truncated.safetensors"
    truncated.write_bytes(good[: len(good) // 2])
    paths["truncated"] = truncated
    garbage = root / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a safetensors file at all" * 4)
    paths["garbage"] = garbage

    # A pickle that would run code when unpickled: weights_only loading must refuse it.
    paths["pickle_with_code"] = root / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _Exploit()}, paths["pickle_with_code"])
    # A plain weights-only pickle of the UNet is accepted.
    paths["unet_pickle"] = root / "unet_plain.pt"
    torch.save(tiny_unet.state_dict(), paths["unet_pickle"])

    (root / "manifest.json").write_text(json.dumps({k: str(v) for k, v in paths.items()}, indent=1))
    return paths


class _Exploit:
    """Stands for arbitrary code in a pickle; unpickling it with weights_only=False would call print."""

    def __reduce__(self):
        return (print, ("pickled code ran",))


# ------------------------------------------------------------------------------------------ the pack in the stand-in host
@pytest.fixture(scope="module")
def pack():
    """The pack module, with ``.registered`` (node id -> class) as ComfyUI registers them."""
    import comfy_standin

    name = "comfyui_videomama_under_test"
    with comfy_standin.standin_host():
        module = comfy_standin.import_pack(name)
        import comfy.model_management

        assert Path(comfy.model_management.__file__).is_relative_to(comfy_standin.FAKE)
        module.registered = comfy_standin.load_nodes(module)
        try:
            yield module
        finally:
            comfy_standin.forget_pack(name)


@pytest.fixture()
def host(pack, tmp_path):
    """Fresh stand-in state, an empty ComfyUI base folder and a progress hook that records calls."""
    import comfy.model_management as mm
    import comfy.utils
    import folder_paths

    folder_paths.reset(str(tmp_path))
    mm.reset()
    updates: list[tuple[int, int]] = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    pack.nodes.host.register_model_folders()
    yield SimpleNamespace(mm=mm, fp=folder_paths, utils=comfy.utils, base=tmp_path, updates=updates)
    mm.reset()
    comfy.utils.set_progress_bar_global_hook(None)


@pytest.fixture()
def models(host, layouts):
    """The tiny UNet as a diffusers folder in models/videomama and an svd_xt-style file in models/checkpoints."""
    md = Path(host.fp.models_dir)
    shutil.copytree(layouts["unet_folder"], md / "videomama" / "VideoMaMa" / "unet")
    (md / "checkpoints").mkdir(parents=True)
    shutil.copy(layouts["svd_xt_single_file"], md / "checkpoints" / "svd_xt.safetensors")
    return md


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests need a real GPU: skipped with one clear reason without it."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (run benchmarks/gpu_check.sh on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords and item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
