"""The example workflows shipped in ``workflows/`` (written by ``python tests/workflow_tools.py``).

Layout rules, checked by tests/test_workflows.py (and in a real browser by test_browser.py):
nodes stand in columns and data flows left to right; a link never runs under a node (links
that travel far, like a clip's fps and audio, keep to a free lane above the nodes they pass,
and nodes fed by one long link are stepped so the curve clears the ones in between); each
stage sits in a group titled "Step N - ..."; a note at the left says what the workflow needs
and where files go; seeds stay "fixed" so a second Run repeats the first.
"""

from __future__ import annotations

from typing import Any

from workflow_tools import Workflow

# Labels of the weights as LoadVideoMaMa/LoadSAM2 list them when the files are where the README says.
UNET = "videomama/VideoMaMa/unet"
VAE = "checkpoints/svd_xt.safetensors"
SVD = "svd_xt.safetensors"
SAM2 = "sam2/sam2.1_hiera_tiny.pt"
VIDEO = "clip.mp4"
MASK_VIDEO = "clip_mask.mp4"
MASK_IMAGE = "clip_mask.png"
BACKGROUND = "background.png"
START_FRAME = "start_frame.png"
MATTE = {"resolution": 1024, "window": 16, "overlap": 4, "seed": 42, "mask_threshold": 0.5, "posterior": "sample"}
COMPOSITE = {"invert_alpha": False, "background": "image", "color": "#00B140", "fit": "cover",
             "estimate_foreground": True, "rgba_mode": "straight"}

NOTE_W = 360  # the note's column
GAP = 80  # between columns: room for links to bend


def columns(*widths: int, start: int = NOTE_W + GAP) -> list[int]:
    """x of each column, left to right, ``GAP`` apart."""
    xs, x = [], start
    for w in widths:
        xs.append(x)
        x += w + GAP
    return xs


WEIGHTS_VIDEOMAMA = (
    "- **VideoMaMa UNet**: the `unet` folder of `SammyLim/VideoMaMa` in `ComfyUI/models/videomama/VideoMaMa/unet/`\n"
    "- **SVD VAE**: `svd_xt.safetensors` in `ComfyUI/models/checkpoints/` (only its VAE is read)\n")
WEIGHTS_SAM2 = (
    "- **SAM2**: `sam2.1_hiera_tiny.pt` (or another SAM2 / SAM2.1 / SAM2-Matte checkpoint) in `ComfyUI/models/sam2/`, "
    "and the Python package: `SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2`\n")


def mask_video(schemas: dict[str, dict[str, Any]]) -> Workflow:
    """A clip and its mask video -> VideoMaMa -> RGBA PNGs and a preview."""
    w = Workflow("matte_video_with_mask_video", schemas)
    x = columns(320, 240, 240, 320, 320, 420)
    w.note(
        "## Matte a clip with its mask video\n\n"
        "**Needs**\n" + WEIGHTS_VIDEOMAMA +
        f"- **Inputs** in `ComfyUI/input/`: the clip `{VIDEO}` and its mask video `{MASK_VIDEO}` "
        "(white = subject, one mask per frame)\n\n"
        "**Run**: pick your files in the two Load Video nodes and press Run. The alpha and RGBA (straight) "
        "sequences, 16-bit PNGs numbered from frame 1001 (`format` exr for float EXR), go to "
        "`ComfyUI/output/videomama/`.\n\n"
        "Lower `resolution` (e.g. 512) for a quick look; 1024 is the model's native size.",
        pos=(0, 0), size=(NOTE_W, 520))
    video = w.add("LoadVideo", {"file": VIDEO}, pos=(x[0], 0), size=(320, 330), title="Load video")
    mvideo = w.add("LoadVideo", {"file": MASK_VIDEO}, pos=(x[0], 440), size=(320, 330), title="Load mask video")
    comp = w.add("GetVideoComponents", links={"video": (video, 0)}, pos=(x[1], 0), size=(240, 70))
    mcomp = w.add("GetVideoComponents", links={"video": (mvideo, 0)}, pos=(x[1], 440), size=(240, 70))
    to_mask = w.add("ImageToMask", {"channel": "red"}, {"image": (mcomp, 0)}, pos=(x[2], 440), size=(240, 60))
    w.group("Step 1 - Load the clip and its mask video", "input", [video, mvideo, comp, mcomp, to_mask])
    matte = w.add("MaskToMatte", MATTE, {"images": (comp, 0), "masks": (to_mask, 0)}, pos=(x[4], 0), size=(320, 290))
    loader = w.add("LoadVideoMaMa", {"unet": UNET, "vae": VAE, "precision": "auto"}, pos=(x[3], 640),
                   size=(320, 110))
    w.nodes[matte - 1].links["model"] = (loader, 0)
    w.group("Step 2 - Matte with VideoMaMa", "matte", [loader, matte])
    save = w.add("SaveMatteSequence", {"filename_prefix": "videomama/matte", "format": "png16", "first_frame": 1001},
                 {"alpha": (matte, 0), "rgba": (matte, 1)}, pos=(x[5], 0), size=(420, 330))
    preview = w.add("PreviewImage", links={"images": (matte, 2)}, pos=(x[5], 440), size=(420, 330),
                    title="Preview (checkerboard)")
    w.group("Step 3 - Save", "output", [save, preview])
    return w


def core_nodes(schemas: dict[str, dict[str, Any]]) -> Workflow:
    """Core video nodes only, no weights: one mask image for every frame, the weight-free refiner."""
    w = Workflow("matte_video_core_nodes", schemas)
    x = columns(320, 240, 320, 240, 260, 420)
    w.note(
        "## Matte a clip without any download\n\n"
        "Runs with no weights: MaskToMatte uses its weight-free edge refiner when no model is connected.\n\n"
        "**Needs**\n"
        f"- **Inputs** in `ComfyUI/input/`: the clip `{VIDEO}` and one mask image `{MASK_IMAGE}` "
        "(white = subject), used for every frame\n\n"
        "**Run**: pick your files and press Run. The matte video and a checkerboard preview (with the clip's "
        "sound) go to `ComfyUI/output/videomama/`.\n\n"
        "**VideoMaMa quality**: add a *Load VideoMaMa* node and connect it to MaskToMatte's `model` input "
        "(weights: see the other examples).",
        pos=(0, 0), size=(NOTE_W, 500))
    video = w.add("LoadVideo", {"file": VIDEO}, pos=(x[0], 0), size=(320, 330), title="Load video")
    comp = w.add("GetVideoComponents", links={"video": (video, 0)}, pos=(x[1], 0), size=(240, 70))
    image = w.add("LoadImage", {"image": MASK_IMAGE}, pos=(x[0], 440), size=(320, 330), title="Load mask image")
    to_mask = w.add("ImageToMask", {"channel": "red"}, {"image": (image, 0)}, pos=(x[1], 440), size=(240, 60))
    w.group("Step 1 - Load the clip and one mask", "input", [video, comp, image, to_mask])
    matte = w.add("MaskToMatte", MATTE, {"images": (comp, 0), "masks": (to_mask, 0)}, pos=(x[2], 320),
                  size=(320, 290))
    as_image = w.add("MaskToImage", links={"mask": (matte, 0)}, pos=(x[3], 470), size=(240, 30))
    w.group("Step 2 - Matte (weight-free refiner)", "matte", [matte, as_image])
    matte_video = w.add("CreateVideo", {"fps": 30.0}, {"images": (as_image, 0), "fps": (comp, 2)},
                        pos=(x[4], 0), size=(260, 80), title="Matte video")
    preview_video = w.add("CreateVideo", {"fps": 30.0}, {"images": (matte, 2), "fps": (comp, 2), "audio": (comp, 1)},
                          pos=(x[4], 150), size=(260, 80), title="Checkerboard preview video")
    save_matte = w.add("SaveVideo", {"filename_prefix": "videomama/matte", "format": "auto", "codec": "auto"},
                       {"video": (matte_video, 0)}, pos=(x[5], 0), size=(420, 340), title="Save matte video")
    save_preview = w.add("SaveVideo", {"filename_prefix": "videomama/preview", "format": "auto", "codec": "auto"},
                         {"video": (preview_video, 0)}, pos=(x[5], 440), size=(420, 340),
                         title="Save preview video")
    w.group("Step 3 - Save the matte and a preview", "output", [matte_video, preview_video, save_matte, save_preview])
    return w


def sam2_composite(schemas: dict[str, dict[str, Any]]) -> Workflow:
    """SAM2 tracking -> VideoMaMa -> composite over a new background."""
    w = Workflow("sam2_track_matte_composite", schemas)
    x = columns(320, 320, 360, 320, 320, 260, 420)
    w.note(
        "## Track, matte and composite\n\n"
        "**Needs**\n" + WEIGHTS_VIDEOMAMA + WEIGHTS_SAM2 +
        f"- **Inputs** in `ComfyUI/input/`: the clip `{VIDEO}` and a new background `{BACKGROUND}`\n\n"
        "**Prompt**: edit SAM2 Matte Track's `prompts`: points and boxes in source pixels on any frame, "
        'e.g. `[{"frame": 0, "object": 1, "box": [x0, y0, x1, y1]}]`.\n\n'
        "**Run**: the composite video and RGBA PNGs go to `ComfyUI/output/videomama/`.",
        pos=(0, 0), size=(NOTE_W, 560))
    video = w.add("LoadVideo", {"file": VIDEO}, pos=(x[0], 0), size=(320, 330), title="Load video")
    comp = w.add("GetVideoComponents", links={"video": (video, 0)}, pos=(x[1], 0), size=(240, 70))
    w.group("Step 1 - Load the clip", "input", [video, comp])
    composite = _track_matte_composite(w, (comp, 0), box="[16, 16, 112, 112]", x=x[1:5], y=(440, 310, 180, 880))
    out_video = w.add("CreateVideo", {"fps": 30.0}, {"images": (composite, 0), "fps": (comp, 2), "audio": (comp, 1)},
                      pos=(x[5], 0), size=(260, 80))
    save_video = w.add("SaveVideo", {"filename_prefix": "videomama/composite", "format": "auto", "codec": "auto"},
                       {"video": (out_video, 0)}, pos=(x[6], 0), size=(420, 340), title="Save composite video")
    save_rgba = w.add("SaveImage", {"filename_prefix": "videomama/rgba"}, {"images": (composite, 1)},
                      pos=(x[6], 440), size=(420, 330), title="Save RGBA PNGs")
    w.group("Step 3 - Save", "output", [out_video, save_video, save_rgba])
    return w


def svd_composite(schemas: dict[str, dict[str, Any]]) -> Workflow:
    """A generative video (core SVD img2vid) -> SAM2 -> VideoMaMa -> composite over a new background."""
    w = Workflow("svd_generate_track_matte_composite", schemas)
    x = columns(360, 280, 300, 320, 360, 320, 320, 260, 420)
    w.note(
        "## Generate a clip with SVD, then matte it\n\n"
        "Stable Video Diffusion (core nodes) makes 25 frames from a start image; SAM2 finds the subject, "
        "VideoMaMa mattes it and the subject is composited over a new background.\n\n"
        "**Needs**\n"
        f"- **SVD-XT**: `{SVD}` in `ComfyUI/models/checkpoints/` (used twice: to generate, and as VideoMaMa's VAE)\n"
        "- **VideoMaMa UNet**: the `unet` folder of `SammyLim/VideoMaMa` in `ComfyUI/models/videomama/VideoMaMa/unet/`\n"
        + WEIGHTS_SAM2 +
        f"- **Inputs** in `ComfyUI/input/`: a start image `{START_FRAME}` (1024x576) and a new background "
        f"`{BACKGROUND}`\n\n"
        "**Prompt**: the box in SAM2 Matte Track's `prompts` marks the subject on frame 0 in 1024x576 pixels: "
        "edit it to fit your start image.\n\n"
        "**Not run by the pack's tests**: they have no SVD-XT weights; the graph is checked against ComfyUI "
        "0.3.64's node definitions only.",
        pos=(0, -300), size=(NOTE_W, 760))
    ckpt = w.add("ImageOnlyCheckpointLoader", {"ckpt_name": SVD}, pos=(x[0], -300), size=(360, 100),
                 title="Load SVD-XT")
    start = w.add("LoadImage", {"image": START_FRAME}, pos=(x[0], 0), size=(360, 330), title="Start image")
    cond = w.add("SVD_img2vid_Conditioning", {
        "width": 1024, "height": 576, "video_frames": 25, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0,
    }, {"clip_vision": (ckpt, 1), "init_image": (start, 0), "vae": (ckpt, 2)}, pos=(x[1], 0), size=(280, 220))
    guidance = w.add("VideoLinearCFGGuidance", {"min_cfg": 1.0}, {"model": (ckpt, 0)}, pos=(x[1], 340),
                     size=(280, 60))
    sampler = w.add("KSampler", {"seed": 42, "steps": 20, "cfg": 2.5, "sampler_name": "euler",
                                 "scheduler": "karras", "denoise": 1.0},
                    {"model": (guidance, 0), "positive": (cond, 0), "negative": (cond, 1), "latent_image": (cond, 2)},
                    pos=(x[2], 0), size=(300, 270))
    # the VAE link keeps to a free lane above the conditioning and the sampler
    decode = w.add("VAEDecode", links={"samples": (sampler, 0), "vae": (ckpt, 2)}, pos=(x[3], -300), size=(200, 50))
    w.group("Step 1 - Generate a clip with SVD (img2vid)", "input", [ckpt, start, cond, guidance, sampler, decode])
    composite = _track_matte_composite(w, (decode, 0), box="[384, 96, 640, 560]", x=x[3:7], y=(120, -30, -180, 600))
    out_video = w.add("CreateVideo", {"fps": 6.0}, {"images": (composite, 0)}, pos=(x[7], -300), size=(260, 80))
    save_video = w.add("SaveVideo", {"filename_prefix": "videomama/svd_composite", "format": "auto", "codec": "auto"},
                       {"video": (out_video, 0)}, pos=(x[8], -300), size=(420, 340), title="Save composite video")
    save_rgba = w.add("SaveImage", {"filename_prefix": "videomama/svd_rgba"}, {"images": (composite, 1)},
                      pos=(x[8], 140), size=(420, 330), title="Save RGBA PNGs")
    w.group("Step 3 - Save", "output", [out_video, save_video, save_rgba])
    return w


def _track_matte_composite(w: Workflow, frames: tuple[int, int], box: str, x: list[int],
                           y: tuple[int, int, int, int]) -> int:
    """SAM2MatteTrack -> MaskToMatte -> AlphaComposite on ``frames``, with their loaders in a row below.

    ``x``: the loaders' first column, then the three nodes' columns; ``y``: the three nodes' rows
    and the loaders' row. The frames feed all three: the farther a node, the higher it stands,
    so each curve from the frames clears the nodes before it. Returns AlphaComposite's id.
    """
    track = w.add("SAM2MatteTrack", {
        "prompts": f'[{{"frame": 0, "object": 1, "box": {box}}}]',
        "output": "binary", "objects": "union", "offload_to_cpu": False, "points_frame": 0, "mask_frame": 0,
    }, {"images": frames}, pos=(x[1], y[0]), size=(360, 300))
    matte = w.add("MaskToMatte", MATTE, {"images": frames, "masks": (track, 0)}, pos=(x[2], y[1]), size=(320, 290))
    composite = w.add("AlphaComposite", COMPOSITE, {"foreground": frames, "alpha": (matte, 0)},
                      pos=(x[3], y[2]), size=(320, 230))
    w.group("Step 2 - Track, matte, composite", "matte", [track, matte, composite])
    sam = w.add("LoadSAM2", {"checkpoint": SAM2, "precision": "auto"}, pos=(x[0], y[3]), size=(320, 90))
    loader = w.add("LoadVideoMaMa", {"unet": UNET, "vae": VAE, "precision": "auto"}, pos=(x[1], y[3]),
                   size=(360, 110))
    background = w.add("LoadImage", {"image": BACKGROUND}, pos=(x[2], y[3]), size=(320, 330), title="New background")
    w.nodes[track - 1].links["sam2_model"] = (sam, 0)
    w.nodes[matte - 1].links["model"] = (loader, 0)
    w.nodes[composite - 1].links["background_image"] = (background, 0)
    w.group("Models and the new background", "model", [sam, loader, background])
    return composite


def build(schemas: dict[str, dict[str, Any]]) -> list[Workflow]:
    """The example workflows."""
    return [mask_video(schemas), core_nodes(schemas), sam2_composite(schemas), svd_composite(schemas)]
