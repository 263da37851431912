"""Video files read lazily with PyAV, at the depth they hold, and checked against their header.

Frames decode in order (a backwards jump restarts the decoder; a few recent frames are kept
for re-reads). 8-bit video decodes to rgb24, deeper video (10-bit ProRes, HEVC, FFV1 ...) to
rgb48le, so no precision is lost on the way to float32. A file whose frames fall short of what
its container declares (a truncated download or copy) is refused with both numbers, instead
of being matted in part.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["VIDEO_SUFFIXES", "VideoFile"]

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".mxf"}


def _frames_word(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


class VideoFile(Sequence):
    """Frames of a video file as (H, W, 3) float32 in [0, 1] (masks: their luma), decoded on access."""

    def __init__(self, path: Path, name: str = "--frames", keep: int = 64):
        self.path = path
        self.name = name
        self._keep = keep
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._decoder: Iterator[torch.Tensor] | None = None
        self._position = 0
        self.rate = 24.0  # frames per second, from the stream when it says
        self._length, self._deep = self._probe()

    def _what(self) -> str:
        return f"{self.name} video '{self.path}'"

    def _open(self) -> tuple[Any, Any]:
        import av

        try:
            container = av.open(str(self.path))
            stream = container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as exc:
            raise InputError(f"cannot read {self._what()}: {exc}. Is it a video file ffmpeg understands?") from exc
        return container, stream

    def _probe(self) -> tuple[int, bool]:
        """(frame count, deep) after checking the count against the container's own."""
        import av

        container, stream = self._open()
        try:
            declared = int(stream.frames or 0)
            tolerance = 0  # a count in the header (MP4, MOV) is exact
            if declared == 0 and container.duration and stream.average_rate and self.path.suffix.lower() != ".gif":
                # Matroska/WebM give no count: the duration times the rate, which variable frame
                # rates and rounding make approximate (GIF delays vary too much to use at all).
                declared = round(container.duration / 1_000_000 * float(stream.average_rate))
                tolerance = max(1, round(0.02 * declared))
            if stream.average_rate:
                self.rate = float(stream.average_rate)
            fmt = stream.codec_context.format
            deep = fmt is not None and any(c.bits > 8 for c in fmt.components)
            try:
                # Demuxing without decoding is cheap; the last packet of a cut file is often partial.
                present = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except av.error.FFmpegError:
                present = 0
        finally:
            container.close()
        if declared and present < declared - tolerance:
            raise InputError(f"{self._what()} holds {_frames_word(present)} but its container declares {declared}: "
                             "the file is truncated or damaged; copy or export it again.")
        if present == 0:
            raise InputError(f"{self._what()} holds no video frames; give another file.")
        return present, deep

    def _frames(self) -> Iterator[torch.Tensor]:
        import av

        container, stream = self._open()
        fmt, scale = ("rgb48le", 65535.0) if self._deep else ("rgb24", 255.0)
        index = 0
        try:
            for frame in container.decode(stream):
                yield torch.from_numpy(frame.to_ndarray(format=fmt).astype(np.float32) / scale)
                index += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"{self._what()} cannot be decoded after {_frames_word(index)} of {self._length} ({exc}); "
                             "the file is damaged: copy or export it again.") from exc
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
        raise InputError(f"{self._what()} decodes to {_frames_word(self._position)} of the {self._length} it holds; "
                         "the file is damaged: copy or export it again.")
