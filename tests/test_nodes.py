"""The pack as ComfyUI sees it: import, registration, node schemas, model folders, loaders.

Runs against the stand-in host (tests/fake_comfy, checked against a recorded real ComfyUI by
tests/test_comfy_standin.py). Matting, compositing and tracking: test_nodes_run.py; model
placement in every VRAM state: test_nodes_vram.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import comfy_standin
import pytest
import torch
from node_harness import load, run

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# What saved workflows refer to: node ids, input names (widget values are stored in this
# order) and output types. Changing any of these breaks users' files: keep them.
SAVED_WORKFLOW_INTERFACE = {
    "LoadVideoMaMa": (["unet", "vae", "precision"], [], ["VIDEOMAMA_MODEL"]),
    "MaskToMatte": (["images", "masks", "resolution", "window", "overlap", "seed", "mask_threshold", "posterior"],
                    ["model", "detail_pass", "crop"], ["MASK", "IMAGE", "IMAGE"]),
    "LoadSAM2": (["checkpoint", "precision"], [], ["SAM2_MODEL"]),
    "SAM2MatteTrack": (["images", "sam2_model", "prompts", "output", "objects", "offload_to_cpu"],
                       ["positive", "negative", "mask", "points_frame", "mask_frame"], ["MASK"]),
    "AlphaComposite": (["foreground", "alpha", "invert_alpha", "background", "color", "fit", "estimate_foreground",
                        "rgba_mode"], ["background_image"], ["IMAGE", "IMAGE"]),
    "SaveMatteSequence": (["alpha", "filename_prefix", "format", "first_frame"], ["rgba"], []),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one torch thread


def _python(code: str, *paths: Path) -> dict:
    """Run ``code`` in a fresh interpreter (only ``paths`` added to sys.path); its last stdout line is JSON."""
    prelude = f"import sys; sys.path[:0] = {[str(p) for p in paths]!r}\n"
    out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPORT_PACK = (
    "import importlib.util, json, os, torch\n"
    "spec = importlib.util.spec_from_file_location('p', {init!r}, submodule_search_locations=[{root!r}])\n"
    "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
    "seen = lambda *names: [n for n in names if n in sys.modules]\n"
)


# ------------------------------------------------------------------------------------------ import and registration
def test_importing_the_pack_is_cheap_and_needs_no_comfyui():
    """ComfyUI imports the pack at startup; so may any tool. Nothing heavy, no host needed."""
    code = IMPORT_PACK.format(init=str(ROOT / "__init__.py"), root=str(ROOT)) + (
        "print(json.dumps({'loaded': seen('comfy', 'comfy_api', 'folder_paths', 'diffusers', 'sam2'),\n"
        "  'cuda': torch.cuda.is_initialized(), 'v1': hasattr(m, 'NODE_CLASS_MAPPINGS'),\n"
        "  'entry': callable(m.comfy_entrypoint), 'web': m.WEB_DIRECTORY}))\n")
    info = _python(code)
    assert info == {"loaded": [], "cuda": False, "v1": False, "entry": True, "web": "./nodes/web"}
    assert (ROOT / info["web"]).is_dir()


def test_registration_is_cheap_and_lists_every_node():
    """comfy_entrypoint -> get_node_list -> schemas (what ComfyUI does at startup): still no model
    code, no CUDA, no sam2."""
    code = IMPORT_PACK.format(init=str(ROOT / "__init__.py"), root=str(ROOT)) + (
        "import comfy_standin, folder_paths\n"
        "ids = sorted(comfy_standin.load_nodes(m))\n"
        "folders = [os.path.relpath(p, folder_paths.models_dir) for n in ('videomama', 'sam2')\n"
        "           for p in folder_paths.get_folder_paths(n)]\n"
        "print(json.dumps({'ids': ids, 'loaded': seen('diffusers', 'sam2'), 'cuda': torch.cuda.is_initialized(),\n"
        "                  'folders': folders}))\n")
    info = _python(code, comfy_standin.FAKE, TESTS)
    assert info == {"ids": sorted(SAVED_WORKFLOW_INTERFACE), "loaded": [], "cuda": False,
                    "folders": ["videomama", "sam2"]}


def test_saved_workflows_keep_loading(pack):
    info = comfy_standin.object_info(pack.registered)
    for node_id, (required, optional, outputs) in SAVED_WORKFLOW_INTERFACE.items():
        assert info[node_id]["input_order"].get("required", []) == required, node_id
        assert info[node_id]["input_order"].get("optional", []) == optional, node_id
        assert info[node_id]["output"] == outputs, node_id


def test_without_sam2_every_node_is_listed_and_loading_sam2_says_how_to_install(tmp_path):
    code = "sys.modules['sam2'] = None  # as if the package were not installed\n" + IMPORT_PACK.format(
        init=str(ROOT / "__init__.py"), root=str(ROOT)) + (
        "import comfy_standin, folder_paths\n"
        f"folder_paths.reset({str(tmp_path)!r})\n"
        "nodes = comfy_standin.load_nodes(m)\n"
        f"import os; os.makedirs({str(tmp_path / 'models' / 'sam2')!r})\n"
        f"open({str(tmp_path / 'models' / 'sam2' / 'sam2.1_hiera_tiny.pt')!r}, 'wb').write(b'PK')\n"
        "try:\n"
        "    comfy_standin.run_node(nodes['LoadSAM2'], checkpoint='sam2/sam2.1_hiera_tiny.pt', precision='auto')\n"
        "    err = None\n"
        "except Exception as exc:\n"
        "    err = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps({'ids': sorted(nodes), 'error': err}))\n")
    info = _python(code, comfy_standin.FAKE, TESTS)
    assert info["ids"] == sorted(SAVED_WORKFLOW_INTERFACE)
    assert info["error"].startswith("MissingDependencyError") and "pip install" in info["error"]


def test_a_broken_node_module_fails_the_pack_visibly(tmp_path):
    """An import regression must reach ComfyUI (IMPORT FAILED), not silently drop nodes."""
    copy = tmp_path / "pack"
    copy.mkdir()
    shutil.copy(ROOT / "__init__.py", copy / "__init__.py")
    for sub in ("nodes", "videomama"):
        shutil.copytree(ROOT / sub, copy / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "nodes" / "composite_nodes.py").write_text("raise ImportError('simulated regression')\n")
    code = IMPORT_PACK.format(init=str(copy / "__init__.py"), root=str(copy)) + (
        "import comfy_standin\n"
        "try:\n"
        "    comfy_standin.load_nodes(m); err = None\n"
        "except ImportError as exc:\n"
        "    err = str(exc)\n"
        "print(json.dumps({'error': err}))\n")
    assert _python(code, comfy_standin.FAKE, TESTS) == {"error": "simulated regression"}


# ------------------------------------------------------------------------------------------ schemas
def test_every_input_and_output_explains_itself(pack):
    for node_id, info in comfy_standin.object_info(pack.registered).items():
        assert info["category"] == "VideoMaMa" and len(info["description"]) > 40, node_id
        assert "VideoMaMa" in info["display_name"], f"{node_id}: searching 'VideoMaMa' must find it"
        for section in ("required", "optional"):
            for name, (type_, opts) in info["input"].get(section, {}).items():
                assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
                if type_ in ("INT", "FLOAT"):
                    assert {"min", "max", "step", "default"} <= set(opts), (node_id, name)
        assert all(info["output_tooltips"]) and len(info["output_tooltips"]) == len(info["output"]), node_id
        if info["output"]:
            assert info["output_name"] != info["output"], f"{node_id}: outputs need names, not their types"
        else:  # a node without outputs only writes files: ComfyUI must run it as an output node
            assert info["output_node"], node_id
    alpha_tip = comfy_standin.object_info(pack.registered)["MaskToMatte"]["output_tooltips"][0]
    assert "1 = subject" in alpha_tip and "InvertMask" in alpha_tip


def test_seed_control_is_fixed_where_the_schema_can_say_so(pack):
    schema = pack.nodes.schema
    seed = comfy_standin.object_info(pack.registered)["MaskToMatte"]["input"]["required"]["seed"][1]
    # this host (as ComfyUI 0.3.64) only accepts a boolean; its frontend then defaults to
    # "randomize", which the pack's frontend helper turns into "fixed" for new nodes
    assert seed["control_after_generate"] is True and schema.SEED_CONTROL is True
    js = (ROOT / "nodes" / "web" / "videomama.js").read_text()
    assert '"MaskToMatte"' in js and 'widget.value = "fixed"' in js and "nodeCreated" in js

    class ControlAfterGenerate(str):  # what newer comfy_api.latest.io has
        fixed = "fixed"

    newer = type("io", (), {"ControlAfterGenerate": ControlAfterGenerate})
    assert schema.seed_control(newer) == "fixed" and schema.seed_control(pack.nodes.schema.io) is True


def test_search_aliases_reach_hosts_that_know_them(pack, monkeypatch):
    schema = pack.nodes.schema
    built = schema.node_schema("X", "X (VideoMaMa)", "d", [], [], search_aliases=("a", "b"))
    assert not hasattr(built, "search_aliases")  # 0.3.64's Schema has no such field: nothing is passed

    @dataclasses.dataclass
    class NewerSchema(schema.io.Schema):
        search_aliases: list = dataclasses.field(default_factory=list)

    monkeypatch.setattr(schema.io, "Schema", NewerSchema)
    built = schema.node_schema("X", "X (VideoMaMa)", "d", [], [], search_aliases=("a", "b"))
    assert built.search_aliases == ["a", "b"]
    aliases = {cls.define_schema().node_id: cls.define_schema().search_aliases for cls in pack.registered.values()}
    assert all(len(a) >= 2 for a in aliases.values()), aliases


# ------------------------------------------------------------------------------------------ folders and listing
def test_model_folders_are_added_not_replaced(pack, host):
    fp = host.fp
    fp.folder_names_and_paths["videomama"] = (["/yaml/videomama"], set())  # as extra_model_paths.yaml does
    pack.nodes.host.register_model_folders()
    pack.nodes.host.register_model_folders()  # twice: no duplicates
    assert fp.get_folder_paths("videomama") == ["/yaml/videomama", str(Path(fp.models_dir) / "videomama")]
    assert fp.get_folder_paths("sam2") == [str(Path(fp.models_dir) / "sam2")]


def test_empty_lists_show_a_short_placeholder_and_picking_it_says_where_files_go(pack, host):
    h = pack.nodes.host
    info = comfy_standin.object_info(pack.registered)
    lists = {
        "unet": info["LoadVideoMaMa"]["input"]["required"]["unet"][1]["options"],
        "vae": info["LoadVideoMaMa"]["input"]["required"]["vae"][1]["options"],
        "checkpoint": info["LoadSAM2"]["input"]["required"]["checkpoint"][1]["options"],
    }
    assert lists == {"unet": [h.UNET_PLACEHOLDER], "vae": [h.VAE_PLACEHOLDER], "checkpoint": [h.SAM2_PLACEHOLDER]}
    assert all(len(p) <= 16 for p in (h.UNET_PLACEHOLDER, h.VAE_PLACEHOLDER, h.SAM2_PLACEHOLDER))
    errors = pack.videomama.errors
    with pytest.raises(errors.CheckpointError, match="unet: no weights were found. Put .* into ComfyUI/models/videomama"):
        load(pack, h.UNET_PLACEHOLDER, h.VAE_PLACEHOLDER)
    with pytest.raises(errors.CheckpointError, match="checkpoint: no weights were found.*models/sam2"):
        run(pack, "LoadSAM2", checkpoint=h.SAM2_PLACEHOLDER)


def test_listing_finds_every_layout_in_the_right_list(pack, host, layouts):
    md = Path(host.fp.models_dir)
    shutil.copytree(layouts["unet_release_root"], md / "videomama" / "VideoMaMa")  # repo root with unet/
    (md / "diffusion_models").mkdir(parents=True)
    shutil.copy(layouts["unet_file"], md / "diffusion_models" / "vmm.safetensors")
    shutil.copy(layouts["svd_base_unet_file"], md / "diffusion_models" / "svd_base_unet.safetensors")  # 8 ch: not ours
    shutil.copytree(layouts["svd_base_unet_folder"] / "unet", md / "diffusers" / "svd-base" / "unet")  # not ours
    (md / "checkpoints").mkdir()
    shutil.copy(layouts["svd_xt_single_file"], md / "checkpoints" / "svd_xt_1_1.safetensors")
    shutil.copy(layouts["image_vae_file"], md / "checkpoints" / "sd15_svd_lookalike.safetensors")  # name matches, not a VAE of SVD
    (md / "vae").mkdir()
    shutil.copy(layouts["vae_file_sgm"], md / "vae" / "svd_vae.safetensors")
    shutil.copy(layouts["image_vae_file"], md / "vae" / "sdxl_vae.safetensors")  # image VAE: not listed
    shutil.copytree(layouts["vae_folder"], md / "diffusers" / "svd-xt" / "vae")
    shutil.copytree(layouts["image_vae_folder"], md / "diffusers" / "sd-vae")  # image VAE folder: not listed
    (md / "videomama" / "notes.txt").write_text("not weights")

    h = pack.nodes.host
    unets, vaes = h.unet_choices(), h.vae_choices()
    assert unets == ["diffusion_models/vmm.safetensors", "videomama/VideoMaMa/unet"]
    assert vaes == ["checkpoints/svd_xt_1_1.safetensors", "diffusers/svd-xt/vae", "vae/svd_vae.safetensors"]
    for label in unets:
        assert h.resolve_choice(label, "unet").exists()
    with pytest.raises(pack.videomama.errors.CheckpointError, match="not found.*refresh"):
        h.resolve_choice("videomama/gone.safetensors", "unet")


def test_listing_identifies_each_file_once(pack, host, layouts, monkeypatch):
    """Model lists are rebuilt on every /object_info: files are identified once per size/mtime."""
    md = Path(host.fp.models_dir)
    (md / "diffusion_models").mkdir(parents=True)
    shutil.copy(layouts["unet_file"], md / "diffusion_models" / "vmm.safetensors")
    import importlib

    checkpoints = importlib.import_module(f"{pack.__name__}.videomama.weights.checkpoints")
    calls = []
    real = checkpoints.identify
    monkeypatch.setattr(checkpoints, "identify", lambda path: calls.append(path) or real(path))
    pack.nodes.host.files._identified.cache_clear()
    for _ in range(3):
        assert pack.nodes.host.unet_choices() == ["diffusion_models/vmm.safetensors"]
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------ loaders
def test_loader_reads_to_cpu_and_never_touches_the_gpu(pack, host, models):
    host.mm.DEVICE = torch.device("meta")  # a simulated GPU: anything put there would show
    host.mm.vram_state = host.mm.VRAMState.NORMAL_VRAM
    hosted = load(pack, precision="auto")
    assert host.mm.LOAD_CALLS == []
    assert {p.device.type for p in hosted.model.parameters()} == {"cpu"}
    assert hosted.patcher.load_device == torch.device("meta")
    # auto: whatever ComfyUI's unet_dtype / vae_dtype answer for this device
    asked = host.mm.unet_dtype(device=torch.device("meta"), supported_dtypes=[torch.float16, torch.bfloat16, torch.float32])
    assert hosted.info["unet_dtype"] == asked != torch.float32
    assert {p.dtype for p in hosted.model.unet.parameters()} == {asked}
    # the big layers are now comfy.ops classes, so low-VRAM loads can stream them
    import comfy.ops

    assert isinstance(hosted.model.unet.conv_in, comfy.ops.disable_weight_init.Conv2d)
    assert not any(type(m) in (torch.nn.Linear, torch.nn.Conv2d) for m in hosted.model.modules())


@pytest.mark.parametrize("precision,unet_dtype,vae_dtype", [
    ("auto", torch.float32, torch.float32),  # auto on the CPU is fp32 (ComfyUI's choice, see the recording)
    ("bf16", torch.bfloat16, torch.bfloat16),
])
def test_precision_sets_weight_dtypes(pack, host, models, precision, unet_dtype, vae_dtype):
    hosted = load(pack, precision=precision)
    assert hosted.model.unet.conv_in.weight.dtype == unet_dtype
    assert hosted.model.vae.decoder.conv_in.weight.dtype == vae_dtype


def test_auto_precision_never_uses_fp8(pack, host, monkeypatch):
    """--fp8_e4m3fn-unet makes ComfyUI's unet_dtype answer fp8; VideoMaMa's layers cannot compute in it."""
    monkeypatch.setattr(host.mm, "unet_dtype", lambda **kw: torch.float8_e4m3fn)
    h = pack.nodes.host
    assert h.model_dtypes("auto", torch.device("cuda"))[0] == torch.float16
    assert h.model_dtypes("auto", torch.device("cpu"))[0] == torch.float32
    assert h.model_dtypes("bf16", torch.device("cuda")) == (torch.bfloat16, torch.bfloat16)
    with pytest.raises(pack.videomama.errors.InputError, match="precision .int8. is unknown"):
        h.model_dtypes("int8", torch.device("cpu"))
    with pytest.raises(pack.videomama.errors.InputError, match="precision .int8. is unknown"):
        run(pack, "LoadSAM2", checkpoint="sam2/x.pt", precision="int8")


def test_loader_errors_name_the_file(pack, host, models, layouts):
    shutil.copy(layouts["image_vae_file"], Path(host.fp.models_dir) / "videomama" / "sd_vae.safetensors")
    with pytest.raises(pack.videomama.errors.CheckpointError, match="image VAE"):
        load(pack, vae="videomama/sd_vae.safetensors")


def test_nodes_keep_no_state_between_runs(pack, host, models):
    """ComfyUI runs V3 nodes on a locked clone of the class: nothing may be stored on it."""
    before = {node_id: dict(vars(cls)) for node_id, cls in pack.registered.items()}
    load(pack)
    run(pack, "AlphaComposite", foreground=torch.rand(1, 8, 8, 3), alpha=torch.ones(1, 8, 8), invert_alpha=False,
        background="color", color="#000000", fit="cover", estimate_foreground=False, rgba_mode="straight")
    assert {node_id: dict(vars(cls)) for node_id, cls in pack.registered.items()} == before
