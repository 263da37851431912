"""SaveMatteSequence: alpha mattes (and RGBA) as numbered 16-bit PNG or float EXR sequences.

Core SaveImage writes 8-bit PNGs, which bands soft edges and loses the subtle alpha of hair
and motion blur; compositors want 16-bit or float files with frame numbers. The files go to
ComfyUI's output folder through the library's sequence writers (all or nothing: staged, then
moved into place after the last frame).
"""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ..videomama.errors import InputError
from ..videomama.io.sequence import FrameNaming
from ..videomama.io.writers import EXTENSIONS, FORMATS, AlphaSequenceWriter, RGBASequenceWriter, SequenceWriter
from . import host
from .convert import mask_batch
from .schema import node_schema

log = logging.getLogger(__name__)

FRAME_PADDING = 4  # shot.1001.png, as compositors number frames


class SaveMatteSequence(io.ComfyNode):
    """alpha MASK batch (+ optional RGBA IMAGE) -> files in the output folder, one per frame."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            "SaveMatteSequence", "Save Matte Sequence (VideoMaMa)",
            "Saves the matte as an image sequence a compositing package reads: 16-bit greyscale PNG or float "
            "OpenEXR (channel A), one file per frame with its frame number, in ComfyUI's output folder. "
            "Optionally also the RGBA foreground (MaskToMatte's or AlphaComposite's rgba). Core SaveImage "
            "writes 8-bit files, which band soft edges.",
            inputs=[
                io.Mask.Input("alpha", tooltip="The matte to save, 1 = subject (MaskToMatte's alpha)."),
                io.String.Input("filename_prefix", default="videomama/matte", tooltip=(
                    "Subfolder and name inside ComfyUI's output folder. Each run gets its own number, as with "
                    "SaveImage: videomama/matte_00001_.1001.png, ... A compositor reads it as matte_00001_.####.png.")),
                io.Combo.Input("format", options=list(FORMATS), default="png16", tooltip=(
                    "png16: 16-bit PNG (alpha greyscale, RGBA with alpha). exr: 32-bit float OpenEXR, ZIP "
                    "compressed (alpha as channel A); needs the OpenImageIO package.")),
                io.Int.Input("first_frame", default=1001, min=0, max=9_999_999, step=1, tooltip=(
                    "Frame number of the first frame (1001 is the usual start of a VFX shot; 0 or 1 to number "
                    "from the start of the clip).")),
                io.Image.Input("rgba", optional=True, tooltip=(
                    "Also save this RGBA IMAGE (4 channels) as a second sequence, '<name>_rgba_...'. Give as "
                    "many frames as the matte.")),
            ],
            outputs=[],
            output_node=True,
            search_aliases=("save alpha", "save exr", "16-bit png", "image sequence"),
        )

    @classmethod
    def execute(cls, alpha, filename_prefix: str, format: str, first_frame: int, rgba=None) -> io.NodeOutput:
        mattes = mask_batch(alpha, "alpha")
        if rgba is not None and (rgba.ndim != 4 or rgba.shape[-1] != 4 or rgba.shape[:3] != mattes.shape):
            n, h, w = mattes.shape
            raise InputError(
                f"rgba has shape {tuple(rgba.shape)}; give an RGBA IMAGE with 4 channels and {n} frames of {w}x{h} "
                "like the matte (MaskToMatte's or AlphaComposite's rgba output).")
        target = host.output_sequence(filename_prefix)  # checked (and made) before anything is written
        numbers = tuple(range(first_frame, first_frame + mattes.shape[0]))
        writers: list[SequenceWriter] = [AlphaSequenceWriter(
            target.folder, ".alpha", naming=FrameNaming(f"{target.stem}.", FRAME_PADDING, numbers), format=format)]
        if rgba is not None:
            writers.append(RGBASequenceWriter(target.folder, ".rgba", format=format,
                                              naming=FrameNaming(f"{target.stem}rgba.", FRAME_PADDING, numbers)))
        try:
            for i in range(mattes.shape[0]):
                writers[0].write(i, mattes[i].clamp(0.0, 1.0))
                if rgba is not None:
                    writers[1].write(i, rgba[i])
            saved = [path for w in writers for path in w.commit_into(target.folder)]
        except BaseException:
            for w in writers:
                w.abort()
            raise
        ext = EXTENSIONS[format]
        log.info("SaveMatteSequence: %d frame(s) to %s (%s####%s)", mattes.shape[0], target.folder, target.stem, ext)
        # The queue shows PNGs; browsers cannot show EXR, so those are only listed in the log.
        images = [{"filename": p.name, "subfolder": target.subfolder, "type": "output"} for p in saved
                  if p.suffix == ".png"]
        return io.NodeOutput(ui={"images": images})
