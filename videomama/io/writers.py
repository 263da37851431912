"""Writing alpha mattes: 16-bit PNGs, all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

__all__ = ["AlphaSequenceWriter", "alpha_to_uint16", "frame_file_name", "write_alpha_png16", "write_alpha_sequence"]


def alpha_to_uint16(alpha: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float alpha in [0, 1] -> uint16 with rounding (65535 = opaque)."""
    a = alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha)
    return np.clip(np.rint(a.astype(np.float64) * 65535.0), 0, 65535).astype(np.uint16)


def write_alpha_png16(path: str | os.PathLike[str], alpha: torch.Tensor | np.ndarray) -> None:
    """Write one (H, W) alpha in [0, 1] as a 16-bit grayscale PNG."""
    from PIL import Image

    # A uint16 array becomes a 16-bit grayscale ("I;16") image.
    Image.fromarray(alpha_to_uint16(alpha)).save(path, format="PNG")


def frame_file_name(index: int) -> str:
    """The file name of frame ``index`` in an alpha folder."""
    return f"{index:05d}.png"


class AlphaSequenceWriter:
    """Writes one shot's alpha frames into ``out_dir/subdir`` all or nothing.

    Frames go to a hidden staging folder next to the target (``.alpha.partial-*``);
    :meth:`commit` replaces the target with it in one rename, after the last frame. Until
    then the target is untouched, so a failed or killed run never leaves a folder that looks
    complete. Frames may be written in any order and by several writers of the same staging
    folder (:meth:`attach`), e.g. workers writing the segments of one long shot.
    """

    def __init__(self, out_dir: str | os.PathLike[str], subdir: str = "alpha", *, staging: Path | None = None):
        self.out = Path(out_dir).expanduser()
        self.target = self.out / subdir
        if staging is None:
            self.out.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{subdir}.partial-", dir=self.out))
        self.staging = staging
        self.written = 0

    @classmethod
    def attach(cls, staging: Path, out_dir: str | os.PathLike[str], subdir: str = "alpha") -> AlphaSequenceWriter:
        """A writer into an existing staging folder (another process created it)."""
        return cls(out_dir, subdir, staging=Path(staging))

    def write(self, index: int, alpha: torch.Tensor | np.ndarray) -> Path:
        path = self.staging / frame_file_name(index)
        write_alpha_png16(path, alpha)
        self.written += 1
        return path

    def commit(self) -> Path:
        """Replace the target folder with the staged frames."""
        if self.target.exists():
            shutil.rmtree(self.target)
        self.staging.rename(self.target)
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def write_alpha_sequence(frames: Iterable[tuple[int, torch.Tensor]], out_dir: str | os.PathLike[str],
                         subdir: str = "alpha") -> Path:
    """Write ``(index, alpha)`` pairs to ``out_dir/subdir/00000.png ...`` all or nothing
    (see :class:`AlphaSequenceWriter`); returns the folder."""
    writer = AlphaSequenceWriter(out_dir, subdir)
    try:
        for index, alpha in frames:
            writer.write(index, alpha)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
