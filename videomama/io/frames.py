"""Reading clips from disk lazily: image folders and video files.

``open_frames(path)`` accepts a folder of images (natural sort: 2.png before 10.png) or a
video file, and returns a sequence whose items are decoded only when asked for, so a long
4K clip never sits in memory whole.
"""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".mxf"}


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers by value: frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _image_to_tensor(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
                arr = np.repeat(arr[..., None], 3, axis=-1)
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image '{path}': {exc}. Replace or remove the file.") from exc
    return torch.from_numpy(np.ascontiguousarray(arr))


class ImageFolder(Sequence):
    """Images of a folder in natural order, decoded on access as (H, W, 3) float32 in [0, 1]."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return _image_to_tensor(self.files[index])


class VideoFile(Sequence):
    """Frames of a video file, decoded in order with PyAV; keeps a few recent frames for re-reads."""

    def __init__(self, path: Path, keep: int = 64):
        self.path = path
        self._keep = keep
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._decoder: Iterator[torch.Tensor] | None = None
        self._position = 0
        self._length = self._count_frames()

    def _open(self):
        import av

        try:
            container = av.open(str(self.path))
            stream = container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            raise InputError(f"cannot read video '{self.path}': {exc}. Is it a video file ffmpeg understands?") from exc
        return container, stream

    def _count_frames(self) -> int:
        container, stream = self._open()
        try:
            # Demuxing without decoding is cheap; the header's frame count is often missing (WebM).
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        finally:
            container.close()

    def _frames(self):
        container, stream = self._open()
        try:
            for frame in container.decode(stream):
                yield torch.from_numpy(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0)
        finally:
            container.close()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not 0 <= index < self._length:
            raise IndexError(index)
        if index in self._cache:
            return self._cache[index]
        if self._decoder is None or index < self._position:
            self._decoder, self._position = self._frames(), 0  # restart: only on a backwards jump
        decoder = self._decoder
        for frame in decoder:
            self._cache[self._position] = frame
            if len(self._cache) > self._keep:
                self._cache.popitem(last=False)
            self._position += 1
            if self._position - 1 == index:
                return frame
        raise InputError(f"video '{self.path}' ended at frame {self._position}, before frame {index}.")


def open_frames(path: str | os.PathLike[str], name: str = "frames") -> Sequence:
    """A lazy frame sequence from a folder of images or a video file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{name} path not found: '{p}'. Give a folder of images or a video file.")
    if p.is_dir():
        seq: Sequence = ImageFolder(p)
    elif p.suffix.lower() in VIDEO_SUFFIXES:
        seq = VideoFile(p)
    elif p.suffix.lower() in IMAGE_SUFFIXES:
        seq = [_image_to_tensor(p)]
    else:
        raise InputError(f"{name} '{p}' is neither a folder of images nor a video file ({', '.join(sorted(VIDEO_SUFFIXES))}).")
    if len(seq) == 0:
        raise InputError(f"{name} '{p}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    return seq


def read_matte(path: str | Path) -> np.ndarray:
    """Read a matte image as a float64 (H, W) array in [0, 1].

    8-bit images are divided by 255 and 16-bit ones by 65535. Grey images are used as they
    are; images with an alpha channel (LA, RGBA) give their alpha channel; RGB images their
    first channel (a grey matte saved as RGB has three equal channels).
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("LA", "RGBA", "PA"):
                arr = np.asarray(im.getchannel("A"))
            elif mode == "P":
                arr = np.asarray(im.convert("L"))
            elif mode == "1":
                arr = np.asarray(im, dtype=np.uint8) * 255
            else:
                arr = np.asarray(im)
    except OSError as exc:
        raise InputError(f"cannot read {path} as an image ({exc}); replace or remove the file.") from exc
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype.kind in "ui":  # I;16 (uint16) or I (int32 holding 16-bit PNG values)
        return arr.astype(np.float64) / 65535.0
    return np.clip(arr.astype(np.float64), 0.0, 1.0)  # F (float) images
