"""Writing a shot's outputs all or nothing: alpha (16-bit PNG or float EXR), RGBA foreground.

Files are named by the clip's :class:`~videomama.io.sequence.FrameNaming`: a numbered sequence
keeps its frame numbers (``shot_v01.1001.png``), anything else is numbered by position
(``00000.png``). Formats:

* ``png16``: 16-bit greyscale PNG (alpha), 16-bit RGBA PNG (foreground);
* ``exr``: 32-bit float OpenEXR, ZIP compressed; alpha is one channel named ``A`` (Nuke and
  most compositors read it as the alpha channel), the foreground has R, G, B, A.

Every folder is staged next to its target and put in place by one rename after the last frame
(see :class:`SequenceWriter`), so nothing half-written ever looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from .sequence import FrameNaming

__all__ = ["FORMATS", "AlphaSequenceWriter", "OutputFormat", "RGBASequenceWriter", "SequenceWriter", "alpha_to_uint16",
           "check_output_dir", "frame_file_name", "write_alpha_png16", "write_alpha_sequence"]

OutputFormat = Literal["png16", "exr"]
FORMATS: tuple[str, ...] = ("png16", "exr")
EXTENSIONS = {"png16": ".png", "exr": ".exr"}


def check_output_dir(out_dir: str | os.PathLike[str], name: str = "--out") -> Path:
    """The output folder, checked before any work: a folder (existing or to be made) we may write in."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{name} '{out}' is an existing file, not a folder; give a folder path (it is created if needed).")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{name} '{out}' lies under '{parent}', which is a file; give a path inside a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{name} '{out}' cannot be written: no write permission in '{parent}'; give a folder you can write.")
    return out


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def alpha_to_uint16(alpha: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float alpha in [0, 1] -> uint16 with rounding (65535 = opaque)."""
    from .images import to_uint16

    return to_uint16(alpha.detach().cpu().numpy() if isinstance(alpha, torch.Tensor) else np.asarray(alpha))


def write_alpha_png16(path: str | os.PathLike[str], alpha: torch.Tensor | np.ndarray) -> None:
    """Write one (H, W) alpha in [0, 1] as a 16-bit grayscale PNG."""
    from PIL import Image

    # A uint16 array becomes a 16-bit grayscale ("I;16") image.
    Image.fromarray(alpha_to_uint16(alpha)).save(path, format="PNG")


def _write_alpha_exr(path: Path, alpha: torch.Tensor | np.ndarray) -> None:
    from .images import write_image

    write_image(path, np.clip(_numpy(alpha), 0.0, 1.0), ("A",))


def _write_rgba(path: Path, rgba: torch.Tensor | np.ndarray) -> None:
    from .images import write_image

    write_image(path, _numpy(rgba), ("R", "G", "B", "A"), bits=16)


def frame_file_name(index: int) -> str:
    """The file name of clip position ``index`` in an output folder of a clip without frame numbers."""
    return FrameNaming().name(index)


class SequenceWriter:
    """Writes one image per frame into ``out_dir/subdir`` all or nothing.

    Frames go to a hidden staging folder next to the target (``.<subdir>.partial-*``);
    :meth:`commit` replaces the target with it in one rename, after the last frame. Until
    then the target is untouched, so a failed or killed run never leaves a folder that looks
    complete. Frames may be written in any order and by several writers of the same staging
    folder (:meth:`attach`), e.g. workers writing the segments of one long shot.
    """

    def __init__(self, out_dir: str | os.PathLike[str], subdir: str, encode: Callable[[Path, np.ndarray | torch.Tensor], None],
                 *, extension: str, naming: FrameNaming | None = None, staging: Path | None = None):
        self.out = Path(out_dir).expanduser()
        self.target = self.out / subdir
        self.naming = naming if naming is not None else FrameNaming()
        self.extension = extension
        self._encode = encode
        if staging is None:
            self.out.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{subdir}.partial-", dir=self.out))
        self.staging = staging
        self.written = 0

    def write(self, index: int, image: torch.Tensor | np.ndarray) -> Path:
        """Stage the image of clip position ``index``."""
        path = self.staging / self.naming.name(index, self.extension)
        self._encode(path, image)
        self.written += 1
        return path

    def commit(self) -> Path:
        """Replace the target folder with the staged frames."""
        if self.target.exists():
            shutil.rmtree(self.target)
        self.staging.rename(self.target)
        return self.target

    def commit_into(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Move the staged frames into ``folder``, which may hold other files (a host's output
        folder), instead of replacing a folder of their own. Names already there are refused
        before anything moves; the staging folder must be on the same file system (it is when
        ``out_dir`` is ``folder``)."""
        dest = Path(folder)
        staged = sorted(self.staging.iterdir())
        taken = [p.name for p in staged if (dest / p.name).exists()]
        if taken:
            self.abort()
            raise InputError(f"'{dest / taken[0]}' already exists; give another filename_prefix or move the old files.")
        moved = [p.rename(dest / p.name) for p in staged]
        self.staging.rmdir()
        return moved

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


class AlphaSequenceWriter(SequenceWriter):
    """The alpha folder of a shot (``out_dir/alpha``): 16-bit PNGs or float EXRs (channel ``A``)."""

    def __init__(self, out_dir: str | os.PathLike[str], subdir: str = "alpha", *, staging: Path | None = None,
                 naming: FrameNaming | None = None, format: OutputFormat = "png16"):
        if format not in FORMATS:
            raise InputError(f"--format {format!r} is not an output format; use one of {', '.join(FORMATS)}.")
        encode = write_alpha_png16 if format == "png16" else _write_alpha_exr
        super().__init__(out_dir, subdir, encode, extension=EXTENSIONS[format], naming=naming, staging=staging)

    @classmethod
    def attach(cls, staging: Path, out_dir: str | os.PathLike[str], subdir: str = "alpha", *,
               naming: FrameNaming | None = None, format: OutputFormat = "png16") -> AlphaSequenceWriter:
        """A writer into an existing staging folder (another process created it)."""
        return cls(out_dir, subdir, staging=Path(staging), naming=naming, format=format)


class RGBASequenceWriter(SequenceWriter):
    """The foreground folder of a shot (``out_dir/rgba``): (H, W, 4) RGBA as 16-bit PNG or float EXR."""

    def __init__(self, out_dir: str | os.PathLike[str], subdir: str = "rgba", *, naming: FrameNaming | None = None,
                 format: OutputFormat = "png16"):
        super().__init__(out_dir, subdir, _write_rgba, extension=EXTENSIONS[format], naming=naming)


def write_alpha_sequence(frames: Iterable[tuple[int, torch.Tensor]], out_dir: str | os.PathLike[str],
                         subdir: str = "alpha", *, naming: FrameNaming | None = None,
                         format: OutputFormat = "png16") -> Path:
    """Write ``(index, alpha)`` pairs to ``out_dir/subdir`` all or nothing (see :class:`SequenceWriter`);
    returns the folder."""
    writer = AlphaSequenceWriter(out_dir, subdir, naming=naming, format=format)
    try:
        for index, alpha in frames:
            writer.write(index, alpha)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
