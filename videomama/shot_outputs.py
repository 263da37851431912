"""What a shot writes besides its alpha: the RGBA foreground and the checkerboard preview.

:class:`ShotOutputs` takes each finished ``(index, alpha)`` of a shot in frame order and writes
every output :class:`~videomama.shots.ShotFiles` asks for, each staged and committed together
(nothing half-written). The foreground colour is estimated from the frame and its alpha
(:func:`videomama.imaging.composite.estimate_foreground`, blur fusion), so the old background
does not show through hair; in an EXR of a scene-linear plate it is converted back to linear.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .shots import ShotFiles

log = logging.getLogger(__name__)

__all__ = ["ShotOutputs"]


class ShotOutputs:
    """The writers of one shot's outputs in ``out_dir`` (alpha always; rgba and preview on request)."""

    def __init__(self, out_dir: str | os.PathLike[str], frames: Any, files: ShotFiles):
        from .io.frames import clip_naming, clip_source
        from .io.preview import PreviewWriter
        from .io.writers import AlphaSequenceWriter, RGBASequenceWriter

        fmt: Any = files.format
        if files.rgba == "straight" and files.format == "exr":
            log.warning("--rgba straight in EXR files: EXR readers (Nuke and most compositors) take EXR colour as "
                        "premultiplied; use --rgba premultiplied unless your pipeline expects straight colour.")
        self.frames = frames
        self.files = files
        source = clip_source(frames)
        self.linear_out = files.format == "exr" and bool(getattr(source, "scene_linear", False))
        self.writers: list[Any] = [AlphaSequenceWriter(out_dir, naming=clip_naming(frames), format=fmt)]
        try:
            self.rgba = RGBASequenceWriter(out_dir, naming=clip_naming(frames), format=fmt) if files.rgba else None
            if self.rgba is not None:
                self.writers.append(self.rgba)
            self.preview = PreviewWriter(out_dir, rate=round(getattr(source, "rate", 24))) if files.preview else None
            if self.preview is not None:
                self.writers.append(self.preview)
        except BaseException:
            self.abort()
            raise

    def write(self, index: int, alpha: torch.Tensor) -> None:
        """Write frame ``index``'s alpha and what is made from it."""
        self.writers[0].write(index, alpha)
        if self.rgba is None and self.preview is None:
            return
        from .imaging.composite import estimate_foreground
        from .inputs import frame_at

        frame = frame_at(self.frames, index, "--frames")
        a = alpha.float().cpu().clamp(0.0, 1.0)
        fg = estimate_foreground(frame[None], a[None])[0]
        if self.rgba is not None:
            self.rgba.write(index, self._rgba(fg, a))
        if self.preview is not None:
            self.preview.write(fg, a)

    def _rgba(self, fg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        from .io.images import decode_srgb

        colour = torch.from_numpy(decode_srgb(fg.numpy())) if self.linear_out else fg
        if self.files.rgba == "premultiplied":
            colour = colour * alpha[..., None]
        return torch.cat([colour, alpha[..., None]], dim=-1)

    def commit(self) -> Path:
        """Put every output in place; returns the alpha folder."""
        targets = [writer.commit() for writer in self.writers]
        return targets[0]

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()
