"""AlphaComposite: put a matted subject on a new background and export RGBA."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from . import host
from .convert import image_rgb, mask_batch
from .schema import node_schema

log = logging.getLogger(__name__)

BACKGROUNDS = ("color", "image", "checkerboard")
FITS = ("cover", "contain", "stretch")
RGBA_MODES = ("straight", "premultiplied")


class AlphaComposite(io.ComfyNode):
    """foreground + alpha (+ background) -> composite IMAGE and RGBA IMAGE."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            "AlphaComposite", "Alpha Composite (VideoMaMa)",
            "Composites the subject over a new background (a clip, a single image, a solid colour or a "
            "checkerboard) using its alpha matte, optionally estimating the subject's clean colour in "
            "semi-transparent pixels (hair, motion blur) so the old background does not show through. Also outputs "
            "RGBA, straight or premultiplied, for SaveImage or video packs that write alpha.",
            inputs=[
                io.Image.Input("foreground", tooltip="The frames that contain the subject (the clip that was matted)."),
                io.Mask.Input("alpha", tooltip=(
                    "The matte, 1 = subject (MaskToMatte's alpha). One per frame or one for all.")),
                io.Boolean.Input("invert_alpha", default=False, tooltip=(
                    "Turn on if the mask uses ComfyUI's LoadImage convention (1 = transparent background), e.g. a "
                    "mask from LoadImage or SplitImageWithAlpha.")),
                io.Combo.Input("background", options=list(BACKGROUNDS), default="color", tooltip=(
                    "color: a solid colour (see color). image: the background_image input (a clip of the same "
                    "length, or one image for all frames). checkerboard: a grey preview pattern.")),
                io.String.Input("color", default="#00FF00", tooltip=(
                    "Background colour for background=color, and the padding colour of fit=contain: '#RRGGBB' or "
                    "'R,G,B' with 0-255.")),
                io.Combo.Input("fit", options=list(FITS), default="cover", tooltip=(
                    "How a background image of another size is fitted: cover (scale to fill, crop the centre), "
                    "contain (scale to fit, pad with color), stretch (ignore the aspect ratio).")),
                io.Boolean.Input("estimate_foreground", default=True, tooltip=(
                    "Recover the subject's own colour where alpha is between 0 and 1 (blur-fusion estimation), "
                    "removing the old background's fringe. Off: use the frame colour as is.")),
                io.Combo.Input("rgba_mode", options=list(RGBA_MODES), default="straight", tooltip=(
                    "straight: colour not multiplied by alpha (PNG, most video packs). premultiplied: colour times "
                    "alpha (for tools that expect premultiplied input).")),
                io.Image.Input("background_image", optional=True, tooltip=(
                    "Background for background=image: a clip with as many frames as the foreground, or a single "
                    "image used for every frame.")),
            ],
            outputs=[
                io.Image.Output("composite", display_name="composite", tooltip=(
                    "The subject composited over the background (RGB, frames of the foreground's size).")),
                io.Image.Output("rgba", display_name="rgba", tooltip=(
                    "The subject as RGBA (4 channels): straight colour, or colour multiplied by alpha if rgba_mode "
                    "is premultiplied. SaveImage writes it as PNG with transparency (PNG expects straight alpha).")),
            ],
            search_aliases=("composite over background", "replace background", "green screen", "keying",
                            "premultiply"),
        )

    @classmethod
    def execute(cls, foreground: torch.Tensor, alpha: torch.Tensor, invert_alpha: bool = False,
                background: str = "color", color: str = "#00FF00", fit: str = "cover",
                estimate_foreground: bool = True, rgba_mode: str = "straight",
                background_image: torch.Tensor | None = None) -> io.NodeOutput:
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
        return io.NodeOutput(result, rgba)
