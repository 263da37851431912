"""Reading clips from disk lazily: image folders, numbered sequences and video files.

``open_frames(path)`` accepts a folder of images (natural sort: 2.png before 10.png), a single
image or a video file, and returns a sequence whose items are decoded only when asked for, so a
long 4K clip never sits in memory whole. Frames come as (H, W, 3) float32 in [0, 1]
(display-referred, see :mod:`videomama.io.images`), masks (``kind="masks"``) as (H, W) mattes.
Every clip has a :class:`~videomama.io.sequence.FrameNaming` (:func:`clip_naming`): the frame
numbers its outputs carry.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import InputError
from .images import OIIO_SUFFIXES, Transfer, file_is_float, image_size, matte_from_channels, read_image, read_rgb
from .sequence import FrameNaming, detect_numbering, select_range
from .video import VIDEO_SUFFIXES, VideoFile

log = logging.getLogger(__name__)

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "ClipRange", "ImageFolder", "clip_naming", "clip_source", "list_images", "natural_key",
           "open_frames", "read_matte"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", *OIIO_SUFFIXES}
Kind = Literal["frames", "masks"]


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """The image files of a folder (hidden files skipped) in natural order."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def read_matte(path: str | Path) -> np.ndarray:
    """Read a matte image as a float64 (H, W) array in [0, 1].

    8-bit images are divided by 255 and 16-bit ones by 65535, float files (EXR) are clipped.
    Grey images are used as they are, colour images give their RGB mean, except that RGBA
    images with flat colour (black RGB, the matte in alpha) give their alpha.
    """
    arr, _ = read_image(path, np.float64)
    return np.clip(matte_from_channels(arr).astype(np.float64), 0.0, 1.0)


class ImageFolder(Sequence):
    """Images of a folder in natural order, decoded on access: frames (H, W, 3) or masks (H, W)."""

    def __init__(self, folder: Path, name: str = "--frames", kind: Kind = "frames", transfer: Transfer = "auto",
                 files: list[Path] | None = None):
        self.folder = folder
        self.name = name
        self.kind = kind
        self.transfer = transfer
        self.files = list_images(folder) if files is None else files
        numbering = detect_numbering(self.files)
        self.naming = numbering if numbering is not None else FrameNaming()
        if numbering is not None and numbering.numbers:
            _warn_gaps(numbering.numbers, name, folder)
        self._size: tuple[int, int] | None = None
        self._warned_empty = False

    def __len__(self) -> int:
        return len(self.files)

    @property
    def scene_linear(self) -> bool:
        """Whether the frames were converted from scene-linear values (see :func:`read_rgb`)."""
        return self.transfer == "linear" or (self.transfer == "auto" and file_is_float(self.files[0]))

    def _check_size(self, path: Path, hw: tuple[int, int]) -> None:
        if self._size is None:
            self._size = image_size(self.files[0])
        width, height = self._size
        if (hw[1], hw[0]) != (width, height):
            raise InputError(f"{self.name}: '{path.name}' is {hw[1]}x{hw[0]} but '{self.files[0].name}' is "
                             f"{width}x{height}; all images of '{self.folder}' must have one size "
                             "(re-export or remove the odd ones).")

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        path = self.files[index]
        if self.kind == "masks":
            arr, _ = read_image(path)
            matte = np.clip(matte_from_channels(arr), 0.0, 1.0).astype(np.float32)
            self._check_size(path, matte.shape[:2])
            if not self._warned_empty and not matte.any():
                self._warned_empty = True
                log.warning("%s: '%s' is all black (no subject); its frame gets an empty matte. Check the roto "
                            "(further empty masks are not reported).", self.name, path)
            return torch.from_numpy(matte)
        rgb = read_rgb(path, self.transfer)
        self._check_size(path, rgb.shape[:2])
        return torch.from_numpy(np.ascontiguousarray(rgb))


def _warn_gaps(numbers: tuple[int, ...], name: str, folder: Path) -> None:
    """A numbered sequence with missing frame numbers is matted as it is, but say so."""
    missing = (numbers[-1] - numbers[0] + 1) - len(numbers)
    if missing > 0:
        present = set(numbers)
        first = next(n for n in range(numbers[0], numbers[-1]) if n not in present)
        more = f" and {missing - 1} more" if missing > 1 else ""
        log.warning("%s: the sequence in '%s' has gaps: frame %d%s missing; the frames present are matted as "
                    "one clip and keep their numbers.", name, folder, first, more)


class ClipRange(Sequence):
    """The positions ``positions`` of a clip, as a clip of their own (frame range --start/--end)."""

    def __init__(self, clip: Sequence, positions: Sequence[int]):
        self.clip = clip
        self.positions = positions
        self.naming = clip_naming(clip).subset(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        return self.clip[self.positions[index]]


def clip_source(clip: Any) -> Any:
    """The clip a frame range was cut from (the clip itself when it is no range)."""
    while isinstance(clip, ClipRange):
        clip = clip.clip
    return clip


def clip_naming(clip: Any) -> FrameNaming:
    """The frame numbering of a clip (positions for anything not read from a numbered sequence)."""
    naming = getattr(clip, "naming", None)
    return naming if isinstance(naming, FrameNaming) else FrameNaming()


def open_frames(path: str | os.PathLike[str], name: str = "frames", *, kind: Kind = "frames",
                transfer: Transfer = "auto", start: int | None = None, end: int | None = None) -> Sequence:
    """A lazy clip from a folder of images, one image or a video file; ``start``/``end``: its frames
    in that range (inclusive, in the clip's own frame numbers: a sequence's, else positions from 0)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{name} path not found: '{p}'. Give a folder of images or a video file.")
    if p.is_dir():
        seq: Sequence = ImageFolder(p, name, kind, transfer)
    elif p.suffix.lower() in VIDEO_SUFFIXES:
        seq = VideoFile(p, name)
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        seq = ImageFolder(p.parent, name, kind, transfer, files=[p])
        seq.naming = FrameNaming()
    else:
        raise InputError(f"{name} '{p}' is neither a folder of images nor a video file ({', '.join(sorted(VIDEO_SUFFIXES))}).")
    if len(seq) == 0:
        raise InputError(f"{name} '{p}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    if start is None and end is None:
        return seq
    return ClipRange(seq, select_range(clip_naming(seq), len(seq), start, end, name))
