"""A preview video of a matte: the subject composited over a grey checkerboard (H.264, PyAV).

Written to a hidden staging file and renamed into place when complete, like every output.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

__all__ = ["PreviewWriter"]


class PreviewWriter:
    """Frames (H, W, 3) and alphas (H, W) in -> ``out_dir/preview.mp4`` (8-bit H.264, ``rate`` fps)."""

    def __init__(self, out_dir: str | os.PathLike[str], name: str = "preview.mp4", rate: int = 24):
        self.target = Path(out_dir).expanduser() / name
        self.target.parent.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(prefix=f".{name}.partial-", suffix=".mp4", dir=self.target.parent)
        os.close(handle)
        self.staging = Path(staged)
        self.rate = rate
        self._container: Any = None
        self._stream: Any = None
        self._board: torch.Tensor | None = None

    def _open(self, height: int, width: int) -> None:
        import av

        from ..imaging.composite import checkerboard

        try:
            self._container = av.open(str(self.staging), "w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=self.rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise InputError(f"--preview cannot write an H.264 video here ({exc}); leave out --preview.") from exc
        # yuv420p (what every player shows) needs even sizes: odd ones get one replicated row/column.
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": "18"}
        self._board = checkerboard(height, width)[0]

    def write(self, frame: torch.Tensor, alpha: torch.Tensor) -> None:
        """Add the next frame: ``frame`` composited over the checkerboard with ``alpha``."""
        import av

        from ..imaging.composite import composite

        if self._container is None:
            self._open(int(frame.shape[0]), int(frame.shape[1]))
        assert self._board is not None
        rgb = composite(frame[None], alpha[None].float(), self._board[None])[0]
        arr = np.rint(rgb.numpy() * 255).astype(np.uint8)
        arr = np.pad(arr, ((0, arr.shape[0] % 2), (0, arr.shape[1] % 2), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
            self._container.mux(packet)

    def commit(self) -> Path:
        """Flush the encoder and put the video in place."""
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        os.replace(self.staging, self.target)
        return self.target

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # closing a half-written file after a failure: nothing to report
                pass
            self._container = None
        self.staging.unlink(missing_ok=True)
