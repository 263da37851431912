"""The pack inside a real ComfyUI, over HTTP (and its model management in-process).

Runs only when ``COMFYUI_DIR`` names a ComfyUI checkout; ``COMFYUI_PYTHON`` names the
interpreter that has ComfyUI's requirements (default: this one). Example:

    COMFYUI_DIR=/work/comfyui COMFYUI_PYTHON=/work/comfyui-venv/bin/python \\
        /work/comfyui-venv/bin/python -m pytest tests/test_comfyui_integration.py -q -s

What it does: a temporary ComfyUI base directory (``--base-directory``) gets this repo
linked into ``custom_nodes/``, tiny random-weight checkpoints in the real layouts
(``models/videomama/VideoMaMa/unet`` diffusers folder, ``models/checkpoints/svd_xt.safetensors``
with SGM ``first_stage_model.*`` keys, ``models/sam2/sam2.1_hiera_tiny.pt``) and small generated
videos in ``input/``. ComfyUI is started headless with ``--cpu`` (the checkout is never
written to: in-memory database), the example workflows are checked against its
``/object_info`` and queued over HTTP, outputs are read back from disk, ``/interrupt`` is
tested on a long run, and the server is killed in all cases.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from comfyui_server import (
    CLIP_FRAMES,
    CLIP_H,
    CLIP_W,
    COMFYUI_DIR,
    COMFYUI_PYTHON,
    TESTS,
    Server,
    build_base,
    read_video,
    skip_reason,
)

_REASON = skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)


# ------------------------------------------------------------------------------------------ helpers
def _sam2_listed(object_info: dict) -> bool:
    """Whether LoadSAM2 lists a checkpoint (not its placeholder): the tiny SAM2 needs the sam2 package."""
    return not object_info["LoadSAM2"]["input"]["required"]["checkpoint"][1]["options"][0].startswith("(")


def _api(name: str) -> dict:
    import workflow_tools as wt

    return json.loads(wt.api_path(name).read_text())


def _set(prompt: dict, class_type: str, **inputs) -> None:
    for entry in prompt.values():
        if entry["class_type"] == class_type:
            entry["inputs"].update(inputs)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A ComfyUI base directory with the pack linked in, tiny weights and input clips."""
    return build_base(tmp_path_factory.mktemp("comfy_base"))


@pytest.fixture(scope="module")
def server(base):
    srv = Server(base, ["--extra-model-paths-config", str(base / "extra_model_paths.yaml")])
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        print(f"\n[comfyui log: {srv.log_path}]")


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info", timeout=120)


# ------------------------------------------------------------------------------------------ tests
def _expected_object_info(base: Path) -> dict:
    """Our nodes' /object_info from their definitions: the pack in the stand-in host, given the same
    model folders as the server (the yaml's folder first, as ComfyUI reads it before loading packs)."""
    import comfy_standin

    name = "comfyui_videomama_expected"
    with comfy_standin.standin_host():
        import folder_paths

        folder_paths.reset(str(base))
        folder_paths.add_model_folder_path("videomama", str(base / "extra_models" / "videomama"))
        try:
            return comfy_standin.object_info(comfy_standin.load_nodes(comfy_standin.import_pack(name)))
        finally:
            comfy_standin.forget_pack(name)


def test_pack_imports_cleanly_and_lists_its_nodes(server, object_info, base):
    from comfy_standin import first_difference

    log = server.log_text()
    assert "IMPORT FAILED" not in "\n".join(l for l in log.splitlines() if "VideoMaMa" in l), server.log_tail()
    assert "Cannot import" not in log or "ComfyUI-VideoMaMa" not in log.split("Cannot import", 1)[1][:300]
    assert "Error while calling comfy_entrypoint" not in log, server.log_tail()
    assert any("ComfyUI-VideoMaMa" in l and "seconds" in l for l in log.splitlines()), "pack not in the load summary"
    expected = _expected_object_info(base)
    assert set(expected) <= set(object_info), sorted(set(expected) - set(object_info))
    for node_id, info in expected.items():
        diff = first_difference(object_info[node_id], info, node_id)
        assert diff is None, f"live /object_info differs from the node definitions: {diff}"
    # the model lists show the files of both folders (models/ and the yaml's), nothing replaced
    unet = object_info["LoadVideoMaMa"]["input"]["required"]["unet"][1]["options"]
    assert {"videomama/VideoMaMa/unet", "videomama/yaml_unet.safetensors"} <= set(unet)
    assert any(path.endswith("/videomama.js") for path in server.get("/extensions")), "frontend helper not served"


def test_workflows_validate_against_live_object_info(object_info):
    import workflow_checks as wc
    import workflow_tools as wt

    for name, ui_path, api_path in wt.workflow_files():
        if "SAM2MatteTrack" in api_path.read_text() and not _sam2_listed(object_info):
            continue  # no sam2 package in this ComfyUI's Python: the checkpoint list is the placeholder
        ui, api = json.loads(ui_path.read_text()), json.loads(api_path.read_text())
        assert wc.check_ui(ui, object_info) == [], name
        assert wc.check_api(api, object_info, file_combos=True) == [], name
        from_ui = wc.api_from_ui(ui, object_info)
        assert {k: (v["class_type"], v["inputs"]) for k, v in from_ui.items()} == \
            {k: (v["class_type"], v["inputs"]) for k, v in api.items()}, name


def test_matte_video_with_mask_video(server, base):
    """Workflow (a) end to end with the tiny VideoMaMa: SaveMatteSequence's 16-bit alpha and RGBA PNG
    sequences (frame numbers from 1001) of the source size, one of each per frame, written in the
    real host without OpenImageIO."""
    import numpy as np
    from PIL import Image

    prompt = _api("matte_video_with_mask_video")
    _set(prompt, "MaskToMatte", resolution=64, window=4, overlap=1)
    started = time.time()
    entry = server.run(prompt)
    print(f"\n(a) matte_video_with_mask_video: {time.time() - started:.1f} s")
    saved = [o for o in entry["outputs"].values() if o.get("images") and o["images"][0]["type"] == "output"]
    assert len(saved) == 1
    images = saved[0]["images"]
    names = sorted(item["filename"] for item in images)
    numbers = [f"{1001 + i:04d}" for i in range(CLIP_FRAMES)]
    assert names == sorted([f"matte_00001_.{n}.png" for n in numbers] + [f"matte_00001_rgba.{n}.png" for n in numbers])
    alphas = []
    for n in numbers:
        png = Image.open(base / "output" / "videomama" / f"matte_00001_.{n}.png")
        assert png.mode in ("I;16", "I") and png.size == (CLIP_W, CLIP_H)  # 16-bit greyscale
        alphas.append(np.asarray(png, dtype=np.float64) / 65535.0)
        rgba = Image.open(base / "output" / "videomama" / f"matte_00001_rgba.{n}.png")
        assert rgba.mode == "RGBA" and rgba.size == (CLIP_W, CLIP_H)
    alphas = np.stack(alphas)
    assert alphas.std() > 0 and len(np.unique(alphas)) > 256  # a decoded matte at more than 8 bits
    previews = [o for o in entry["outputs"].values() if o.get("images") and o["images"][0]["type"] == "temp"]
    assert len(previews) == 1 and len(previews[0]["images"]) == CLIP_FRAMES


def test_unet_from_extra_model_paths_yaml_loads(server):
    """A single-file UNet in the yaml's folder is listed next to models/videomama and loads."""
    prompt = _api("matte_video_with_mask_video")
    _set(prompt, "MaskToMatte", resolution=64, window=4, overlap=1, seed=3)
    _set(prompt, "LoadVideoMaMa", unet="videomama/yaml_unet.safetensors")
    server.run(prompt)
    assert "yaml_unet.safetensors (diffusers-file" in server.log_text()


def test_core_video_chain_with_weight_free_refiner(server, base):
    """Workflow (c): one mask image for all frames, no weights; matte and preview videos of the source size."""
    import numpy as np

    entry = server.run(_api("matte_video_core_nodes"))
    videos = {}
    for out in entry["outputs"].values():
        for item in out.get("images", []):
            videos[item["filename"]] = base / "output" / item["subfolder"] / item["filename"]
    assert len(videos) == 2
    matte = read_video(next(p for n, p in videos.items() if "matte" in n))
    assert matte.shape[:3] == (CLIP_FRAMES, CLIP_H, CLIP_W)
    mask0 = np.load(base / "clip_masks.npy")[0] > 127
    grey = matte[..., 0].astype(float) / 255
    # the refiner follows the (single) mask: bright inside, dark outside, on every frame
    assert grey[:, mask0].mean() > 0.8 and grey[:, ~mask0].mean() < 0.2


def test_sam2_track_matte_composite(server, base, object_info):
    if not _sam2_listed(object_info):
        pytest.skip("the 'sam2' package is not installed in COMFYUI_PYTHON")
    prompt = _api("sam2_track_matte_composite")
    _set(prompt, "MaskToMatte", resolution=64, window=4, overlap=1)
    _set(prompt, "SAM2MatteTrack", prompts='[{"frame": 3, "object": 1, "box": [10, 10, 60, 50]}]')
    entry = server.run(prompt)
    kinds = {item["filename"].rsplit(".", 1)[-1] for o in entry["outputs"].values() for item in o.get("images", [])}
    assert kinds == {"mp4", "png"}


def test_svd_workflow_passes_validation_and_stops_at_the_weights(server, object_info):
    """The generative example cannot run here (no SVD-XT weights): the server accepts the prompt
    (every type, value, file name and link validated), and the run stops at the SVD loader,
    which is given a file without SVD's UNet."""
    if not _sam2_listed(object_info):
        pytest.skip("the 'sam2' package is not installed in COMFYUI_PYTHON")
    entry = server.wait(server.queue(_api("svd_generate_track_matte_composite")))
    assert entry["status"]["status_str"] == "error"
    err = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert err["node_type"] == "ImageOnlyCheckpointLoader", err


def test_library_errors_reach_the_user_with_their_message(server):
    prompt = _api("matte_video_with_mask_video")
    _set(prompt, "MaskToMatte", resolution=64, window=4, overlap=4)
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "error"
    err = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert err["node_type"] == "MaskToMatte"
    assert err["exception_type"].endswith("InputError")
    assert "overlap=4 must be >= 0 and smaller than window=4" in err["exception_message"]


def test_interrupt_stops_a_long_run_and_next_run_works(server):
    prompt = _api("matte_video_with_mask_video")
    _set(prompt, "MaskToMatte", resolution=64, window=1, overlap=0, seed=7)  # 240 windows
    for entry in prompt.values():
        if entry["class_type"] == "LoadVideo":
            entry["inputs"]["file"] = entry["inputs"]["file"].replace("clip", "long")
    prompt_id = server.queue(prompt)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until MaskToMatte is at work (its progress shows in the log-free way: queue)
        running = server.get("/queue")["queue_running"]
        if running and running[0][1] == prompt_id:
            break
        time.sleep(0.2)
    time.sleep(6)  # loaders and decoding take ~1-2 s here; then MaskToMatte runs window after window
    t0 = time.time()
    status, _ = server.post("/interrupt", {})
    assert status == 200
    entry = server.wait(prompt_id, timeout=120)
    stop_latency = time.time() - t0
    events = {m[0]: m[1] for m in entry["status"]["messages"]}
    assert "execution_interrupted" in events, entry["status"]
    assert events["execution_interrupted"]["node_type"] == "MaskToMatte"
    print(f"\ninterrupt: stopped {stop_latency:.2f} s after POST /interrupt")
    assert stop_latency < 30
    # the next prompt runs normally
    prompt2 = _api("matte_video_with_mask_video")
    _set(prompt2, "MaskToMatte", resolution=64, window=4, overlap=1, seed=8)
    server.run(prompt2)


def test_model_management_in_every_vram_state(tmp_path):
    """In-process probe on the real ComfyUI modules (see tests/comfyui_host_probe.py)."""
    out = tmp_path / "probe.json"
    proc = subprocess.run([COMFYUI_PYTHON, str(TESTS / "comfyui_host_probe.py"), COMFYUI_DIR, str(out)],
                          cwd=COMFYUI_DIR, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    print("\n" + json.dumps(result, indent=1))
    assert result["cpu_vs_plain_library_max_abs_diff"] < 1e-4  # node under ComfyUI == the library alone
    for label, r in result["compute"].items():
        assert r["bit_identical_to_cpu_reference"], label
        partial = "little free" in label or "LOW_VRAM" in label or "NO_VRAM" in label
        assert (r["streamed_layers"] > 100) == partial, (label, r)
        assert (r["loaded_bytes"] < r["model_bytes"]) == partial, (label, r)
    low = result["compute"]["LOW_VRAM (--lowvram)"]
    assert low["after_partial_unload_identical"] and low["after_full_unload_identical"]
    assert low["loaded_bytes_after_full_unload"] == 0
    for label, r in result["placement_meta"].items():
        assert r["misplaced_count"] == 0, (label, r)
        assert r["compute_device"] == "meta"
    # without the pack's fixes ComfyUI's own patcher leaves plain layers behind on a partial budget
    assert result["plain_modelpatcher_lowvram"]["params_left_on_cpu"] > 0
    assert result["auto_dtypes_on_cpu"] == ["torch.float32", "torch.float32"]


@functools.cache
def _has_gpu() -> bool:
    probe = subprocess.run([COMFYUI_PYTHON, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, timeout=120)
    return probe.stdout.strip() == "True"


@pytest.mark.skipif(not _has_gpu(), reason="no CUDA device here: ComfyUI accepts --lowvram/--novram/--highvram/"
                    "--normalvram only without --cpu (test_model_management_in_every_vram_state covers their rules)")
@pytest.mark.parametrize("flag", ["--lowvram", "--novram", "--highvram", "--normalvram"])
def test_gpu_vram_modes_end_to_end(base, flag):
    """On a machine with an NVIDIA GPU: start without --cpu in each VRAM mode and run workflow (a)."""
    srv = Server(base, [flag], cpu=False)
    try:
        srv.start()
        prompt = _api("matte_video_with_mask_video")
        _set(prompt, "MaskToMatte", resolution=64, window=4, overlap=1)
        _set(prompt, "LoadVideoMaMa", precision="fp16")
        srv.run(prompt)
        assert "loaded" in srv.log_text()
    finally:
        srv.stop()
