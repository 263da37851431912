"""A real ComfyUI for tests: the gate, a headless server on a temporary base directory, and inputs.

Shared by ``test_comfyui_integration.py`` (HTTP), ``test_browser.py`` (the frontend in Chromium)
and ``record_core_nodes.py``. The ComfyUI checkout is named by ``COMFYUI_DIR`` and its
interpreter by ``COMFYUI_PYTHON`` (default: this one); the checkout is never written to (the
server gets ``--base-directory`` and an in-memory database).

The base directory (``build_base``) has this repo linked into ``custom_nodes/``, tiny
random-weight checkpoints in the real layouts (``models/videomama/VideoMaMa/unet`` diffusers
folder, ``models/checkpoints/svd_xt.safetensors`` with SGM ``first_stage_model.*`` keys,
``models/sam2/sam2.1_hiera_tiny.pt`` when the sam2 package is importable) and small generated
videos and images in ``input/``.
"""

from __future__ import annotations

import importlib.util
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


def skip_reason() -> str | None:
    """Why a real-ComfyUI test cannot run here, or None when it can."""
    if not COMFYUI_DIR:
        return "COMFYUI_DIR is not set: point it at a ComfyUI checkout (see README, Development) to run this test"
    if not (Path(COMFYUI_DIR) / "main.py").is_file():
        return f"COMFYUI_DIR={COMFYUI_DIR} has no main.py: not a ComfyUI checkout"
    probe = subprocess.run(
        [COMFYUI_PYTHON, "-c", "import torch, aiohttp, av, yaml, safetensors, diffusers, PIL, numpy"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"ComfyUI's Python dependencies are not importable with COMFYUI_PYTHON={COMFYUI_PYTHON}: {last}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ComfyUI process on a temporary base directory; talks HTTP with urllib only."""

    def __init__(self, base: Path, extra_args: list[str] | None = None, cpu: bool = True):
        self.base = base
        self.cpu = cpu
        self.port = free_port()
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


def write_video(path: Path, frames) -> None:
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


def make_clip(t: int, h: int, w: int, seed: int = 0):
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


def read_video(path: Path):
    import av
    import numpy as np

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def build_base(base: Path) -> Path:
    """Fill ``base`` as a ComfyUI base directory: the pack linked in, tiny weights, input clips."""
    import numpy as np
    import torch
    from PIL import Image

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from conftest import save_safetensors

    from videomama.weights import sgm_vae
    from videomama.weights.configs import TINY_UNET_CONFIG, TINY_VAE_CONFIG, build_random_unet, build_random_vae

    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / "ComfyUI-VideoMaMa").symlink_to(ROOT, target_is_directory=True)
    models = base / "models"
    build_random_unet(TINY_UNET_CONFIG, seed=0).save_pretrained(models / "videomama" / "VideoMaMa" / "unet")
    vae = build_random_vae(TINY_VAE_CONFIG, seed=0)
    sgm = sgm_vae.convert_diffusers_vae_state_dict_to_sgm(vae.state_dict())
    single = {f"{sgm_vae.SGM_VAE_PREFIX}{k}": v for k, v in sgm.items()}
    single["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 8, 3, 3)  # SVD's own (8-ch) UNet stub
    save_safetensors(models / "checkpoints" / "svd_xt.safetensors", single)

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
    frames, masks = make_clip(CLIP_FRAMES, CLIP_H, CLIP_W)
    write_video(inp / "clip.mp4", frames)
    write_video(inp / "clip_mask.mp4", np.repeat(masks[..., None], 3, axis=-1))
    Image.fromarray(masks[0]).convert("RGB").save(inp / "clip_mask.png")
    gradient = np.linspace(0, 255, CLIP_W, dtype=np.uint8)[None, :, None].repeat(CLIP_H, 0).repeat(3, 2)
    Image.fromarray(gradient).save(inp / "background.png")  # a new background for the composite examples
    Image.fromarray(frames[0]).save(inp / "start_frame.png")  # the SVD example's start image
    long_frames, long_masks = make_clip(240, 64, 64, seed=1)
    write_video(inp / "long.mp4", long_frames)
    write_video(inp / "long_mask.mp4", np.repeat(long_masks[..., None], 3, axis=-1))
    np.save(base / "clip_masks.npy", masks)
    return base
