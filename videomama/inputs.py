"""Turning what callers pass as frames and masks into checked tensors (one home for these checks).

Frames are ``(H, W, 3)`` RGB in [0, 1]; masks ``(H, W)``. A clip is anything indexable with a
length: a ``(T, H, W, C)`` tensor or array, a list, or a lazy sequence that decodes on access
(a video file). Every error names the input and says how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import InputError

__all__ = ["as_tensor", "check_finite", "check_frame_shape", "frame_at", "frame_count"]


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A frame/mask from a tensor, numpy array or PIL-like object as a float32 tensor (same device).

    Integer images are scaled to [0, 1]: uint8 by 255, 16-bit (uint16, or int32 as PIL gives
    16-bit PNGs) by 65535.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        try:
            t = torch.from_numpy(np.asarray(x))
        except Exception as exc:  # exotic inputs: say what was given
            raise InputError(f"{name} is a {type(x).__name__}, not an image array or tensor.") from exc
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype in (torch.uint16, torch.int32):
        return t.float() / 65535.0
    if t.dtype == torch.bool:
        return t.float()
    return t.float()


def frame_count(clip: Any, name: str = "frames", *, item_ndim: int = 3) -> int:
    """Number of items of a clip; an error that names ``name`` for a single item, a non-sequence or nothing.

    item_ndim: dimensions of one item (3 for ``(H, W, C)`` frames, 2 for ``(H, W)`` masks), so
    a lone image passed without its frame axis is caught with a hint instead of being read
    as a clip of rows.
    """
    if isinstance(clip, (torch.Tensor, np.ndarray)):
        # (H, W, 3|4) with item_ndim 3 is one image; (T, H, W) is a clip of wrong items (reported per item).
        single = clip.ndim < item_ndim or (clip.ndim == item_ndim and (item_ndim == 2 or clip.shape[-1] in (3, 4)))
        if single:
            shape = tuple(clip.shape)
            raise InputError(f"{name} has shape {shape}, a single item without a frame axis; add one, e.g. x[None].")
    try:
        count = len(clip)
    except TypeError as exc:
        raise InputError(f"{name} is a {type(clip).__name__}; give a (T, ...) tensor/array or a sequence of frames.") from exc
    if count == 0:
        raise InputError(f"{name} is empty: the clip has no frames.")
    return count


def check_frame_shape(frame: torch.Tensor, index: int, name: str = "frames") -> None:
    """A frame must be (H, W, 3) RGB and at least 8x8 pixels."""
    if frame.ndim != 3 or frame.shape[-1] != 3:
        hint = " (RGBA: drop the alpha channel first)" if frame.ndim == 3 and frame.shape[-1] == 4 else ""
        raise InputError(f"{name}[{index}] has shape {tuple(frame.shape)}; expected (height, width, 3) RGB{hint}.")
    if frame.shape[0] < 8 or frame.shape[1] < 8:
        raise InputError(f"{name}[{index}] is {frame.shape[1]}x{frame.shape[0]} pixels; give frames of at least 8x8.")


def frame_at(clip: Any, index: int, name: str = "frames") -> torch.Tensor:
    """Item ``index`` of a clip as a checked (H, W, 3) float32 tensor (values not yet checked)."""
    frame = as_tensor(clip[index], f"{name}[{index}]")
    check_frame_shape(frame, index, name)
    return frame


def check_finite(frames: torch.Tensor, indices: list[int], name: str = "frames") -> None:
    """One reduction over a batch (on whatever device it lives); names the first bad frame."""
    finite = torch.isfinite(frames).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = indices[int((~finite).nonzero()[0])]
        raise InputError(f"{name}[{bad}] contains NaN or infinite values; fix the node or file that produced it.")
