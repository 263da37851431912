"""LoadVideoMaMa and MaskToMatte: VideoMaMa's mask-to-matte step as ComfyUI nodes (V1 API)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..videomama.options import (
    DEFAULT_OVERLAP,
    DEFAULT_RESOLUTION,
    DEFAULT_SEED,
    DEFAULT_WINDOW,
    MatteOptions,
)
from . import host
from .convert import image_rgb, mask_batch, rgba

log = logging.getLogger(__name__)

MODEL_TYPE = "VIDEOMAMA_MODEL"
CATEGORY = "VideoMaMa"
SEED_MAX = 0xFFFFFFFFFFFFFFFF  # as ComfyUI's samplers; folded into the library's 0..2**63-1


def _checkerboard_preview(frames: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The subject over a grey checkerboard (straight alpha), for a quick look at the matte."""
    from ..videomama.imaging.composite import checkerboard, composite

    h, w = alpha.shape[-2:]
    return composite(frames, alpha, checkerboard(h, w))


class LoadVideoMaMa:
    """Pick the VideoMaMa UNet and SVD's temporal VAE; weights are read to the CPU only."""

    DESCRIPTION = (
        "Loads the VideoMaMa UNet and Stable Video Diffusion's temporal VAE (from the svd_xt checkpoint you "
        "may already have, or SVD-XT's diffusers 'vae' folder) for MaskToMatte. Weights are read into CPU "
        "memory; ComfyUI moves them to the GPU when MaskToMatte runs and may unload them for other models."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("videomama_model",)
    OUTPUT_TOOLTIPS = ("The VideoMaMa model (UNet + temporal VAE) for MaskToMatte's 'model' input.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "unet": (host.unet_choices(), {
                    "tooltip": "VideoMaMa's UNet: the 'unet' folder of the SammyLim/VideoMaMa release (or a single "
                               ".safetensors made from it) under models/videomama or models/diffusion_models.",
                }),
                "vae": (host.vae_choices(), {
                    "tooltip": "SVD's temporal VAE: svd_xt*.safetensors from models/checkpoints (only its VAE part is "
                               "read), a VAE file in models/vae or models/videomama, or SVD-XT's diffusers 'vae' folder.",
                }),
                "precision": (list(host.PRECISIONS), {
                    "default": "auto",
                    "tooltip": "Weight and compute precision. auto: what ComfyUI picks for this device (fp16/bf16 on "
                               "most GPUs, fp32 on the CPU; --fp16-unet/--bf16-vae etc. are honoured). fp16 is the "
                               "official VideoMaMa setting on GPUs.",
                }),
            }
        }

    def load(self, unet: str, vae: str, precision: str = "auto"):
        from ..videomama.pipeline.model import VideoMaMaModel
        from ..videomama.weights.checkpoints import load_unet, load_vae

        unet_path = host.resolve_choice(unet, "unet")
        vae_path = host.resolve_choice(vae, "vae")
        unet_dtype, vae_dtype = host.model_dtypes(precision, host.torch_device())
        model = VideoMaMaModel(load_unet(unet_path, unet_dtype), load_vae(vae_path, vae_dtype))
        hosted = host.host_model(
            model, streamable=True, description=f"VideoMaMa {unet} + {vae} ({unet_dtype}, VAE {vae_dtype})",
            unet=unet, vae=vae, unet_dtype=unet_dtype, vae_dtype=vae_dtype,
        )
        log.info("LoadVideoMaMa: %s", hosted.description)
        return (hosted,)


class MaskToMatte:
    """Coarse masks + frames -> soft alpha matte (VideoMaMa, or the weight-free refiner)."""

    DESCRIPTION = (
        "Turns coarse per-frame masks (SAM/SAM2, segmentation packs, MatAnyone, hand-painted; soft masks are "
        "binarised by mask_threshold) into a soft alpha matte for every frame. With a VideoMaMa model connected it "
        "runs VideoMaMa's one-step video diffusion in overlapping windows; without one it uses the weight-free "
        "edge-aware refiner (no download needed). Output MASK: 1 = subject."
    )
    CATEGORY = CATEGORY
    FUNCTION = "matte"
    RETURN_TYPES = ("MASK", "IMAGE", "IMAGE")
    RETURN_NAMES = ("alpha", "rgba", "preview")
    OUTPUT_TOOLTIPS = (
        "Alpha matte, float (frames, height, width) at the source resolution, 1 = subject (opaque), 0 = background. "
        "ComfyUI's LoadImage / JoinImageWithAlpha use the opposite convention (1 = transparent): put a core "
        "InvertMask node in between for those.",
        "The frames with the matte as a 4th channel (straight, not premultiplied, RGBA): connect to SaveImage for "
        "PNGs with transparency, or to a video pack that writes alpha (ProRes 4444, WebM VP9). Colour is the "
        "source frame; AlphaComposite can estimate the clean foreground colour at the edges.",
        "Preview: the subject over a grey checkerboard (RGB).",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames (an IMAGE batch, e.g. from GetVideoComponents)."}),
                "masks": ("MASK", {
                    "tooltip": "Coarse subject masks, 1 = subject: one per frame, or a single mask used for every "
                               "frame. Soft masks are binarised at mask_threshold; another size is resized to the "
                               "frames. For masks from LoadImage's alpha (1 = transparent) add an InvertMask first.",
                }),
                "resolution": ("INT", {
                    "default": DEFAULT_RESOLUTION, "min": 64, "max": 8192, "step": 64,
                    "tooltip": "Long side in pixels the model works at (the frame is scaled keeping its aspect "
                               "ratio, padded to a multiple of 64; the matte is returned at the source size). 1024 is "
                               "VideoMaMa's native size; lower is faster and coarser. Without a model: the size the "
                               "refiner solves edges at.",
                }),
                "window": ("INT", {
                    "default": DEFAULT_WINDOW, "min": 1, "max": 128, "step": 1,
                    "tooltip": "Frames per model call. Longer windows see more motion context and need more memory "
                               "(16 is the official setting). Not used without a model.",
                }),
                "overlap": ("INT", {
                    "default": DEFAULT_OVERLAP, "min": 0, "max": 127, "step": 1,
                    "tooltip": "Frames shared by consecutive windows; their mattes are cross-faded so windows join "
                               "without a jump. Must be smaller than window. Not used without a model.",
                }),
                "seed": ("INT", {
                    "default": DEFAULT_SEED, "min": 0, "max": SEED_MAX, "step": 1, "control_after_generate": True,
                    "tooltip": "Noise seed (42 is the official default). The noise of each frame depends only on the "
                               "seed and the frame index, so results repeat exactly. Not used without a model.",
                }),
                "mask_threshold": ("FLOAT", {
                    "default": 0.5, "min": 0.01, "max": 0.99, "step": 0.01,
                    "tooltip": "Masks are binarised at this level (VideoMaMa was trained on binary masks). Lower it "
                               "to keep faint parts of soft masks, raise it to drop them.",
                }),
                "posterior": (["sample", "mean"], {
                    "default": "sample",
                    "tooltip": "sample: draw the VAE latents (seeded, the official behaviour). mean: use their mean "
                               "(fully deterministic, independent of the seed for the latents). Not used without a model.",
                }),
            },
            "optional": {
                "model": (MODEL_TYPE, {
                    "tooltip": "VideoMaMa model from LoadVideoMaMa. Leave unconnected to use the weight-free "
                               "edge-aware refiner instead (works without any download, lower quality on hair).",
                }),
                "detail_pass": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "After VideoMaMa, add full-resolution edge detail from the source frames when they are "
                               "larger than 'resolution' (e.g. 4K at 1024): a guided-filter detail transfer that "
                               "only changes the soft edge. Off: plain upsampling of the model's matte.",
                }),
            },
        }

    def matte(self, images: torch.Tensor, masks: torch.Tensor, resolution: int = DEFAULT_RESOLUTION,
              window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP, seed: int = DEFAULT_SEED,
              mask_threshold: float = 0.5, posterior: str = "sample", model: host.HostedModel | None = None,
              detail_pass: bool = False):
        frames = image_rgb(images, "images")
        mask = mask_batch(masks, "masks")
        options = MatteOptions(
            resolution=int(resolution), window=int(window), overlap=int(overlap), seed=int(seed) % 2**63,
            posterior=posterior, mask_threshold=float(mask_threshold),
        )
        if model is None:
            alpha = self._refine(frames, mask, options)
        else:
            alpha = self._videomama(model, frames, mask, options)
            if detail_pass:
                alpha = self._detail(frames, alpha, options)
        alpha = alpha.to(host.intermediate_device(), torch.float32)
        frames = frames.to(alpha.device)
        return (alpha, rgba(frames, alpha), _checkerboard_preview(frames, alpha))

    @staticmethod
    def _refine(frames: torch.Tensor, masks: torch.Tensor, options: MatteOptions) -> torch.Tensor:
        from ..videomama.imaging.refine import refine_clip

        log.info("MaskToMatte: no VideoMaMa model connected; using the weight-free refiner.")
        progress, cancel = host.progress_and_cancel(frames.shape[0])
        with host.interruptible():
            return refine_clip(
                frames, masks, threshold=options.mask_threshold, work_size=options.resolution,
                device=host.torch_device(), progress=progress, should_cancel=cancel,
            )

    @staticmethod
    def _detail(frames: torch.Tensor, alpha: torch.Tensor, options: MatteOptions) -> torch.Tensor:
        from ..videomama.imaging.refine import detail_refine

        progress, cancel = host.progress_and_cancel(frames.shape[0])
        with host.interruptible():
            return detail_refine(frames, alpha, resolution=options.resolution, device=host.torch_device(),
                                 progress=progress, should_cancel=cancel)

    @staticmethod
    def _videomama(hosted: host.HostedModel, frames: torch.Tensor, masks: torch.Tensor,
                   options: MatteOptions) -> torch.Tensor:
        from ..videomama.pipeline.matte import collect_frames
        from ..videomama.pipeline.run import run_matte
        from ..videomama.pipeline.schedule import split_windows

        if not isinstance(hosted, host.HostedModel):
            raise TypeError(f"model is a {type(hosted).__name__}; connect the output of LoadVideoMaMa.")
        windows = split_windows(frames.shape[0], options.window, options.overlap)
        progress, cancel = host.progress_and_cancel(len(windows))
        with host.interruptible():
            return collect_frames(run_matte(hosted.model, frames, masks, options, host=host.ComfyHost(hosted),
                                            progress=progress, should_cancel=cancel), frames.shape[0])


NODE_CLASS_MAPPINGS = {"LoadVideoMaMa": LoadVideoMaMa, "MaskToMatte": MaskToMatte}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadVideoMaMa": "Load VideoMaMa", "MaskToMatte": "Mask To Matte (VideoMaMa)"}
