"""Reading clips from disk lazily and writing 16-bit alpha PNGs atomically.

``open_frames(path)`` accepts a folder of images (natural sort: 2.png before 10.png) or a
video file, and returns a sequence whose items are decoded only when asked for, so a long
4K clip never sits in memory whole.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import InputError

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
        self._decoder = None
        self._position = 0
        self._length = self._count_frames()

    def _open(self):
        import av

        try:
            container = av.open(str(self.path))
            stream = container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:  # type: ignore[attr-defined]
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
        for frame in self._decoder:
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


def alpha_to_uint16(alpha: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float alpha in [0, 1] -> uint16 with rounding (65535 = opaque)."""
    a = alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha)
    return np.clip(np.rint(a.astype(np.float64) * 65535.0), 0, 65535).astype(np.uint16)


def write_alpha_png16(path: str | os.PathLike[str], alpha: torch.Tensor | np.ndarray) -> None:
    """Write one (H, W) alpha in [0, 1] as a 16-bit grayscale PNG."""
    from PIL import Image

    # A uint16 array becomes a 16-bit grayscale ("I;16") image.
    Image.fromarray(alpha_to_uint16(alpha)).save(path, format="PNG")


def read_alpha_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an 8- or 16-bit grayscale (or RGB) PNG as float32 alpha in [0, 1]."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(im, dtype=np.float32) / 65535.0
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def write_alpha_sequence(frames: Iterable[tuple[int, torch.Tensor]], out_dir: str | os.PathLike[str],
                         subdir: str = "alpha") -> Path:
    """Write ``(index, alpha)`` pairs to ``out_dir/subdir/00000.png ...`` all or nothing.

    Files go to a hidden temporary folder next to the target, which replaces the target only
    after the last frame is written; on any error the temporary folder is removed, so a failed
    run never leaves a partial ``alpha`` folder behind.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    target = out / subdir
    staging = Path(tempfile.mkdtemp(prefix=f".{subdir}.partial-", dir=out))
    try:
        for index, alpha in frames:
            write_alpha_png16(staging / f"{index:05d}.png", alpha)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
