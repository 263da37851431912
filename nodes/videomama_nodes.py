"""LoadVideoMaMa and MaskToMatte: VideoMaMa's mask-to-matte step as ComfyUI nodes.

The node ids, input names and their order are what saved workflows refer to: keep them.
"""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ..videomama.options import (
    CROP_MODES,
    DEFAULT_CROP,
    DEFAULT_OVERLAP,
    DEFAULT_RESOLUTION,
    DEFAULT_SEED,
    DEFAULT_WINDOW,
    MatteOptions,
)
from . import host, matting
from .convert import image_rgb, mask_batch
from .schema import SEED_CONTROL, SEED_MAX, VideoMaMaModel, node_schema

log = logging.getLogger(__name__)


class LoadVideoMaMa(io.ComfyNode):
    """Pick the VideoMaMa UNet and SVD's temporal VAE; weights are read to the CPU only."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            "LoadVideoMaMa", "Load VideoMaMa",
            "Loads the VideoMaMa UNet and Stable Video Diffusion's temporal VAE (from the svd_xt checkpoint you "
            "may already have, or SVD-XT's diffusers 'vae' folder) for MaskToMatte. Weights are read into CPU "
            "memory; ComfyUI moves them to the GPU when MaskToMatte runs and may unload them for other models.",
            inputs=[
                io.Combo.Input("unet", options=host.unet_choices(), tooltip=(
                    "VideoMaMa's UNet: the 'unet' folder of the SammyLim/VideoMaMa release (or a single "
                    ".safetensors made from it) under models/videomama or models/diffusion_models.")),
                io.Combo.Input("vae", options=host.vae_choices(), tooltip=(
                    "SVD's temporal VAE: svd_xt*.safetensors from models/checkpoints (only its VAE part is "
                    "read), a VAE file in models/vae or models/videomama, or SVD-XT's diffusers 'vae' folder.")),
                io.Combo.Input("precision", options=list(host.PRECISIONS), default="auto", tooltip=(
                    "Weight and compute precision. auto: what ComfyUI picks for this device (fp16/bf16 on "
                    "most GPUs, fp32 on the CPU; --fp16-unet/--bf16-vae etc. are honoured). fp16 is the "
                    "official VideoMaMa setting on GPUs.")),
            ],
            outputs=[VideoMaMaModel.Output("videomama_model", display_name="videomama_model", tooltip=(
                "The VideoMaMa model (UNet + temporal VAE) for MaskToMatte's 'model' input."))],
            search_aliases=("video matting model", "svd matting", "alpha matte loader"),
        )

    @classmethod
    def execute(cls, unet: str, vae: str, precision: str = "auto") -> io.NodeOutput:
        from ..videomama.pipeline.model import VideoMaMaModel as Model
        from ..videomama.weights.checkpoints import load_unet, load_vae
        from ..videomama.weights.precision import upcast_vae

        unet_path = host.resolve_choice(unet, "unet")
        vae_path = host.resolve_choice(vae, "vae")
        device = host.torch_device()
        unet_dtype, vae_dtype = host.model_dtypes(precision, device)
        vae_model = upcast_vae(load_vae(vae_path, vae_dtype), device)  # fp16 asked: SVD's VAE wants bf16/fp32
        vae_dtype = vae_model.decoder.conv_in.weight.dtype
        model = Model(load_unet(unet_path, unet_dtype), vae_model)
        hosted = host.host_model(
            model, streamable=True, description=f"VideoMaMa {unet} + {vae} ({unet_dtype}, VAE {vae_dtype})",
            unet=unet, vae=vae, unet_dtype=unet_dtype, vae_dtype=vae_dtype,
        )
        log.info("LoadVideoMaMa: %s", hosted.description)
        return io.NodeOutput(hosted)


class MaskToMatte(io.ComfyNode):
    """Coarse masks + frames -> soft alpha matte (VideoMaMa, or the weight-free refiner)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            "MaskToMatte", "Mask To Matte (VideoMaMa)",
            "Turns coarse per-frame masks (SAM/SAM2, segmentation packs, MatAnyone, hand-painted; soft masks are "
            "binarised by mask_threshold) into a soft alpha matte for every frame. With a VideoMaMa model connected "
            "it runs VideoMaMa's one-step video diffusion in overlapping windows; without one it uses the "
            "weight-free edge-aware refiner (no download needed). Output MASK: 1 = subject.",
            inputs=[
                io.Image.Input("images", tooltip="The video frames (an IMAGE batch, e.g. from GetVideoComponents)."),
                io.Mask.Input("masks", tooltip=(
                    "Coarse subject masks, 1 = subject: one per frame, or a single mask used for every frame. Soft "
                    "masks are binarised at mask_threshold; another size is resized to the frames. For masks from "
                    "LoadImage's alpha (1 = transparent) add an InvertMask first.")),
                io.Int.Input("resolution", default=DEFAULT_RESOLUTION, min=64, max=8192, step=64, tooltip=(
                    "Long side in pixels the model works at (the frame is scaled keeping its aspect ratio, padded "
                    "to a multiple of 64; the matte is returned at the source size). 1024 is VideoMaMa's native "
                    "size; lower is faster and coarser. Without a model: the size the refiner solves edges at.")),
                io.Int.Input("window", default=DEFAULT_WINDOW, min=1, max=128, step=1, tooltip=(
                    "Frames per model call. Longer windows see more motion context and need more memory (16 is "
                    "the official setting). Not used without a model.")),
                io.Int.Input("overlap", default=DEFAULT_OVERLAP, min=0, max=127, step=1, tooltip=(
                    "Frames shared by consecutive windows; their mattes are cross-faded so windows join without a "
                    "jump. Must be smaller than window. Not used without a model.")),
                io.Int.Input("seed", default=DEFAULT_SEED, min=0, max=SEED_MAX, step=1,
                             control_after_generate=SEED_CONTROL, tooltip=(
                                 "Noise seed (42 is the official default). The noise of each frame depends only on "
                                 "the seed and the frame index, so results repeat exactly; it stays fixed unless "
                                 "you change it or its control. Not used without a model.")),
                io.Float.Input("mask_threshold", default=0.5, min=0.01, max=0.99, step=0.01, tooltip=(
                    "Masks are binarised at this level (VideoMaMa was trained on binary masks). Lower it to keep "
                    "faint parts of soft masks, raise it to drop them.")),
                io.Combo.Input("posterior", options=["sample", "mean"], default="sample", tooltip=(
                    "sample: draw the VAE latents (seeded, the official behaviour). mean: use their mean (fully "
                    "deterministic, independent of the seed for the latents). Not used without a model.")),
                VideoMaMaModel.Input("model", optional=True, tooltip=(
                    "VideoMaMa model from LoadVideoMaMa. Leave unconnected to use the weight-free edge-aware "
                    "refiner instead (works without any download, lower quality on hair).")),
                io.Boolean.Input("detail_pass", default=False, optional=True, tooltip=(
                    "After VideoMaMa, add full-resolution edge detail from the source frames when they are larger "
                    "than 'resolution' (e.g. 4K at 1024): a guided-filter detail transfer that only changes the "
                    "soft edge. Off: plain upsampling of the model's matte.")),
                io.Combo.Input("crop", options=list(CROP_MODES), default=DEFAULT_CROP, optional=True, tooltip=(
                    "auto: per window, VideoMaMa processes only the padded box around the subject's masks at "
                    "'resolution', so a small subject in a large frame gets the model's full detail (alpha is 0 "
                    "outside the box). off: whole frames, as the official pipeline. Not used without a model.")),
            ],
            outputs=[
                io.Mask.Output("alpha", display_name="alpha", tooltip=(
                    "Alpha matte, float (frames, height, width) at the source resolution, 1 = subject (opaque), "
                    "0 = background. ComfyUI's LoadImage / JoinImageWithAlpha use the opposite convention "
                    "(1 = transparent): put a core InvertMask node in between for those.")),
                io.Image.Output("rgba", display_name="rgba", tooltip=(
                    "The frames with the matte as a 4th channel (straight, not premultiplied, RGBA): connect to "
                    "SaveImage for PNGs with transparency, or to a video pack that writes alpha (ProRes 4444, WebM "
                    "VP9). Colour is the source frame; AlphaComposite can estimate the clean foreground colour at "
                    "the edges.")),
                io.Image.Output("preview", display_name="preview",
                                tooltip="Preview: the subject over a grey checkerboard (RGB)."),
            ],
            search_aliases=("alpha matte", "video matting", "rotoscope", "refine mask", "hair matte"),
        )

    @classmethod
    def execute(cls, images: torch.Tensor, masks: torch.Tensor, resolution: int = DEFAULT_RESOLUTION,
                window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP, seed: int = DEFAULT_SEED,
                mask_threshold: float = 0.5, posterior: str = "sample", model: host.HostedModel | None = None,
                detail_pass: bool = False, crop: str = DEFAULT_CROP) -> io.NodeOutput:
        options = MatteOptions(
            resolution=int(resolution), window=int(window), overlap=int(overlap), seed=int(seed) % 2**63,
            posterior=posterior, mask_threshold=float(mask_threshold), crop=crop,
        )
        out = matting.matte(image_rgb(images, "images"), mask_batch(masks, "masks"), options, model,
                            bool(detail_pass))
        return io.NodeOutput(out.alpha, out.rgba, out.preview)
