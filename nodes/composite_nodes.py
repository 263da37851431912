"""AlphaComposite: put a matted subject on a new background and export RGBA (V1 API)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from . import host
from .convert import image_rgb, mask_batch

log = logging.getLogger(__name__)

BACKGROUNDS = ("color", "image", "checkerboard")
FITS = ("cover", "contain", "stretch")
RGBA_MODES = ("straight", "premultiplied")


class AlphaComposite:
    """foreground + alpha (+ background) -> composite IMAGE and RGBA IMAGE."""

    DESCRIPTION = (
        "Composites the subject over a new background (a clip, a single image, a solid colour or a checkerboard) "
        "using its alpha matte, optionally estimating the subject's clean colour in semi-transparent pixels "
        "(hair, motion blur) so the old background does not show through. Also outputs RGBA, straight or "
        "premultiplied, for SaveImage or video packs that write alpha."
    )
    CATEGORY = "VideoMaMa"
    FUNCTION = "composite"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("composite", "rgba")
    OUTPUT_TOOLTIPS = (
        "The subject composited over the background (RGB, frames of the foreground's size).",
        "The subject as RGBA (4 channels): straight colour, or colour multiplied by alpha if rgba_mode is "
        "premultiplied. SaveImage writes it as PNG with transparency (PNG expects straight alpha).",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "foreground": ("IMAGE", {"tooltip": "The frames that contain the subject (the clip that was matted)."}),
                "alpha": ("MASK", {"tooltip": "The matte, 1 = subject (MaskToMatte's alpha). One per frame or one for all."}),
                "invert_alpha": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Turn on if the mask uses ComfyUI's LoadImage convention (1 = transparent background), "
                               "e.g. a mask from LoadImage or SplitImageWithAlpha.",
                }),
                "background": (list(BACKGROUNDS), {
                    "default": "color",
                    "tooltip": "color: a solid colour (see color). image: the background_image input (a clip of the "
                               "same length, or one image for all frames). checkerboard: a grey preview pattern.",
                }),
                "color": ("STRING", {
                    "default": "#00FF00",
                    "tooltip": "Background colour for background=color, and the padding colour of fit=contain: "
                               "'#RRGGBB' or 'R,G,B' with 0-255.",
                }),
                "fit": (list(FITS), {
                    "default": "cover",
                    "tooltip": "How a background image of another size is fitted: cover (scale to fill, crop the "
                               "centre), contain (scale to fit, pad with color), stretch (ignore the aspect ratio).",
                }),
                "estimate_foreground": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Recover the subject's own colour where alpha is between 0 and 1 (blur-fusion "
                               "estimation), removing the old background's fringe. Off: use the frame colour as is.",
                }),
                "rgba_mode": (list(RGBA_MODES), {
                    "default": "straight",
                    "tooltip": "straight: colour not multiplied by alpha (PNG, most video packs). premultiplied: colour "
                               "times alpha (for tools that expect premultiplied input).",
                }),
            },
            "optional": {
                "background_image": ("IMAGE", {
                    "tooltip": "Background for background=image: a clip with as many frames as the foreground, or a "
                               "single image used for every frame.",
                }),
            },
        }

    def composite(self, foreground: torch.Tensor, alpha: torch.Tensor, invert_alpha: bool = False,
                  background: str = "color", color: str = "#00FF00", fit: str = "cover",
                  estimate_foreground: bool = True, rgba_mode: str = "straight",
                  background_image: torch.Tensor | None = None):
        from ..videomama.errors import InputError
        from ..videomama.imaging import composite as comp

        frames = image_rgb(foreground, "foreground")
        a = mask_batch(alpha, "alpha").clamp(0.0, 1.0)
        if invert_alpha:
            a = 1.0 - a
        count = max(frames.shape[0], a.shape[0])
        frames = comp.broadcast_frames(frames, count, "foreground")
        a = comp.broadcast_frames(a, count, "alpha")
        if tuple(a.shape[1:]) != tuple(frames.shape[1:3]):
            raise InputError(
                f"alpha is {a.shape[2]}x{a.shape[1]} but foreground is {frames.shape[2]}x{frames.shape[1]}; "
                "give the matte of these frames (MaskToMatte returns it at the source size)."
            )
        h, w = frames.shape[1:3]
        if background == "image":
            if background_image is None:
                raise InputError("background is 'image' but background_image is not connected; connect an IMAGE "
                                 "or choose background=color / checkerboard.")
            bg = comp.prepare_background(image_rgb(background_image, "background_image"), count, h, w, fit, color)
        elif background in ("color", "checkerboard"):
            bg = comp.prepare_background("checkerboard" if background == "checkerboard" else color, count, h, w)
        else:
            raise InputError(f"background '{background}' is unknown; choose one of {', '.join(BACKGROUNDS)}.")
        if rgba_mode not in RGBA_MODES:
            raise InputError(f"rgba_mode '{rgba_mode}' is unknown; choose straight or premultiplied.")

        fg = frames
        if estimate_foreground:
            progress, cancel = host.progress_and_cancel(count)
            with host.interruptible():
                fg = comp.estimate_foreground(frames, a, device=host.torch_device(),
                                              progress=progress, should_cancel=cancel)
        out_device = host.intermediate_device()
        result = comp.composite(fg, a, bg).to(out_device)
        rgba = comp.to_rgba(fg, a, premultiplied=rgba_mode == "premultiplied").to(out_device)
        return (result, rgba)


NODE_CLASS_MAPPINGS = {"AlphaComposite": AlphaComposite}
NODE_DISPLAY_NAME_MAPPINGS = {"AlphaComposite": "Alpha Composite (VideoMaMa)"}
