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
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
COMFYUI_DIR = os.environ.get("COMFYUI_DIR", "")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
STARTUP_TIMEOUT = 120
CLIP_FRAMES, CLIP_W, CLIP_H = 8, 96, 64


def _skip_reason() -> str | None:
    if not COMFYUI_DIR:
        return "COMFYUI_DIR is not set: point it at a ComfyUI checkout (see README, Development) to run this test"
    if not (Path(COMFYUI_DIR) / "main.py").is_file():
        return f"COMFYUI_DIR={COMFYUI_DIR} has no main.py: not a ComfyUI checkout"
    probe = subprocess.run(
        [COMFYUI_PYTHON, "-c", "import torch, aiohttp, av, yaml, safetensors, diffusers, PIL, numpy"],
        capture_output=True, text=True, timeout=120,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"ComfyUI's Python dependencies are not importable with COMFYUI_PYTHON={COMFYUI_PYTHON}: {last}"
    return None


_REASON = _skip_reason()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)


# ------------------------------------------------------------------------------------------ helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ComfyUI process on a temporary base directory; talks HTTP with urllib only."""

    def __init__(self, base: Path, extra_args: list[str] | None = None, cpu: bool = True):
        self.base = base
        self.cpu = cpu
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / f"comfyui-{self.port}.log"
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [COMFYUI_PYTHON, "main.py", *(["--cpu"] if self.cpu else []), "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:",
               *self.extra_args]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=COMFYUI_DIR, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + STARTUP_TIMEOUT
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.get("/object_info/MaskToMatte", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI did not answer within {STARTUP_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read().decode())

    def post(self, path: str, body: dict, timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text.strip() else {})
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "{}")

    def queue(self, prompt: dict) -> str:
        status, body = self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        assert status == 200, f"prompt refused: {json.dumps(body, indent=1)[:3000]}"
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error") or any(
                        m[0] == "execution_interrupted" for m in entry["status"].get("messages", [])):
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        entry = self.wait(self.queue(prompt), timeout)
        if entry["status"]["status_str"] != "success":
            errors = [m for m in entry["status"]["messages"] if m[0] == "execution_error"]
            pytest.fail(f"workflow failed: {json.dumps(errors, indent=1)[:4000]}\n{self.log_tail()}")
        return entry


def _write_video(path: Path, frames) -> None:
    """uint8 (T, H, W, 3) frames -> an H.264 mp4 (yuv420p, 30 fps)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _make_clip(t: int, h: int, w: int, seed: int = 0):
    """A textured clip with a bright disc moving right, and the disc's mask (uint8)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = (rng.random((t, h, w, 3)) * 60 + 40).astype(np.uint8)
    masks = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        disc = (yy - h / 2) ** 2 + (xx - w / 3 - 2 * i) ** 2 < (h / 4) ** 2
        frames[i][disc] = (230, 210, 190)
        masks[i][disc] = 255
    return frames, masks


def _read_video(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _sam2_listed(object_info: dict) -> bool:
    """Whether LoadSAM2 lists a checkpoint (not its placeholder): the tiny SAM2 needs the sam2 package."""
    return not object_info["LoadSAM2"]["input"]["required"]["checkpoint"][1]["options"][0].startswith("(")


def _api(name: str) -> dict:
    return json.loads((ROOT / "workflows" / f"{name}.api.json").read_text())


def _set(prompt: dict, class_type: str, **inputs) -> None:
    for entry in prompt.values():
        if entry["class_type"] == class_type:
            entry["inputs"].update(inputs)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A ComfyUI base directory with the pack linked in, tiny weights and input clips."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from conftest import save_safetensors

    from videomama.weights import sgm_vae
    from videomama.weights.configs import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_random_unet, build_random_vae

    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "ComfyUI-VideoMaMa").symlink_to(ROOT, target_is_directory=True)
    models = base / "models"
    build_random_unet(TINY_UNET_CONFIG, seed=0).save_pretrained(models / "videomama" / "VideoMaMa" / "unet")
    vae = build_random_vae(TINY_VAE_CONFIG, seed=0)
    sgm = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(vae.state_dict())
    single = {f"{sgm_vae.SGM_VAE_PREFIX}{k}": v for k, v in sgm.items()}
    single["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 8, 3, 3)  # SVD's own (8-ch) UNet stub
    save_safetensors(models / "checkpoints" / "svd_xt.safetensors", single)
    import importlib.util

    if importlib.util.find_spec("sam2") is not None:  # the tiny SAM2 is built with the sam2 package
        from tiny_sam2 import write_tiny_sam2

        (models / "sam2").mkdir(parents=True)
        write_tiny_sam2(models / "sam2" / "sam2.1_hiera_tiny.pt")

    # a second models folder given through extra_model_paths.yaml: both must be listed (no clobbering)
    extra = base / "extra_models"
    save_safetensors(extra / "videomama" / "yaml_unet.safetensors",
                     build_random_unet(TINY_UNET_CONFIG, seed=0).state_dict())
    (base / "extra_model_paths.yaml").write_text(f"test:\n    base_path: {extra}\n    videomama: videomama\n")

    inp = base / "input"
    inp.mkdir()
    frames, masks = _make_clip(CLIP_FRAMES, CLIP_H, CLIP_W)
    _write_video(inp / "clip.mp4", frames)
    _write_video(inp / "clip_mask.mp4", np.repeat(masks[..., None], 3, axis=-1))
    Image.fromarray(masks[0]).convert("RGB").save(inp / "clip_mask.png")
    long_frames, long_masks = _make_clip(240, 64, 64, seed=1)
    _write_video(inp / "long.mp4", long_frames)
    _write_video(inp / "long_mask.mp4", np.repeat(long_masks[..., None], 3, axis=-1))
    np.save(base / "clip_masks.npy", masks)
    return base


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
    import workflow_tools as wt

    for name, ui_path, api_path in wt.workflow_files():
        if "SAM2MatteTrack" in api_path.read_text() and not _sam2_listed(object_info):
            continue  # no sam2 package in this ComfyUI's Python: the checkpoint list is the placeholder
        ui, api = json.loads(ui_path.read_text()), json.loads(api_path.read_text())
        assert wt.check_ui(ui, object_info) == [], name
        assert wt.check_api(api, object_info, file_combos=True) == [], name
        from_ui = wt.api_from_ui(ui, object_info)
        assert {k: (v["class_type"], v["inputs"]) for k, v in from_ui.items()} == \
            {k: (v["class_type"], v["inputs"]) for k, v in api.items()}, name


def test_matte_video_with_mask_video(server, base):
    """Workflow (a) end to end with the tiny VideoMaMa: RGBA PNGs of the source size, one per frame."""
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
    assert len(images) == CLIP_FRAMES
    alphas = []
    for item in images:
        png = Image.open(base / "output" / item["subfolder"] / item["filename"])
        assert png.mode == "RGBA" and png.size == (CLIP_W, CLIP_H)
        alphas.append(np.asarray(png)[..., 3])
    alphas = np.stack(alphas)
    assert alphas.std() > 0  # a decoded matte, not a constant
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
    matte = _read_video(next(p for n, p in videos.items() if "matte" in n))
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
