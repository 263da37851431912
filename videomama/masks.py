"""Checks and preparation of frames and masks (the two inputs a user gets wrong most often)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

log = logging.getLogger(__name__)


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A frame/mask from a tensor, numpy array or PIL-like object, as a float32 CPU tensor."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        try:
            t = torch.from_numpy(np.asarray(x))
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise InputError(f"{name} is a {type(x).__name__}, not an image array or tensor.") from exc
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype == torch.uint16 or t.dtype == torch.int32:
        return t.float() / 65535.0
    return t.float()


def check_frame(frame: torch.Tensor, index: int, name: str = "frames") -> torch.Tensor:
    """Validate one (H, W, 3) frame: three channels, finite values; returns it clamped to [0, 1]."""
    check_frame_shape(frame, index, name)
    check_finite(frame[None], [index], name)
    return frame.clamp(0.0, 1.0)


def check_finite(frames: torch.Tensor, indices: list[int], name: str = "frames") -> None:
    """One reduction over a batch (on whatever device it lives); names the first bad frame."""
    finite = torch.isfinite(frames).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = indices[int((~finite).nonzero()[0])]
        raise InputError(f"{name}[{bad}] contains NaN or infinite values; fix the node or file that produced it.")


def check_frame_shape(frame: torch.Tensor, index: int, name: str = "frames") -> None:
    """A frame must be (H, W, 3) RGB and at least 8x8 pixels."""
    if frame.ndim != 3 or frame.shape[-1] != 3:
        hint = " (RGBA: drop the alpha channel first)" if frame.ndim == 3 and frame.shape[-1] == 4 else ""
        raise InputError(
            f"{name}[{index}] has shape {tuple(frame.shape)}; expected (height, width, 3) RGB{hint}."
        )
    if frame.shape[0] < 8 or frame.shape[1] < 8:
        raise InputError(f"{name}[{index}] is {frame.shape[1]}x{frame.shape[0]} pixels; give frames of at least 8x8.")


def check_mask(mask: torch.Tensor, index: int, threshold: float, name: str = "masks") -> torch.Tensor:
    """Validate one mask ((H, W), or (H, W, C) from an image file) and binarise it at ``threshold``."""
    if mask.ndim == 3 and mask.shape[-1] in (1, 3, 4):
        mask = mask[..., 0] if mask.shape[-1] == 1 else mask[..., :3].mean(-1)
    if mask.ndim != 2:
        raise InputError(f"{name}[{index}] has shape {tuple(mask.shape)}; expected (height, width).")
    if not torch.isfinite(mask).all():
        raise InputError(f"{name}[{index}] contains NaN or infinite values; fix the node or file that produced it.")
    return (mask > threshold).float()


class MaskSequence(Sequence):
    """Masks indexed by frame: one per frame, or a single mask broadcast to every frame."""

    def __init__(self, masks: Any, num_frames: int, threshold: float, name: str = "masks"):
        self._masks = masks
        self._name = name
        self._threshold = threshold
        self._num_frames = num_frames
        count = _length(masks, name)
        if count == 0:
            raise InputError(f"{name} is empty; give one mask per frame, or one mask for the whole clip.")
        if count not in (1, num_frames):
            raise InputError(
                f"{name} has {count} masks for {num_frames} frames; give one mask per frame or a single mask "
                "(it is then used for every frame)."
            )
        self._broadcast = count == 1

    def __len__(self) -> int:
        return self._num_frames

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        raw = self._masks[0 if self._broadcast else index]
        return check_mask(as_tensor(raw, f"{self._name}[{index}]"), index, self._threshold, self._name)


def _length(x: Any, name: str) -> int:
    if isinstance(x, (torch.Tensor, np.ndarray)) and x.ndim == 2:
        raise InputError(f"{name} is a single (H, W) array: add a leading frame axis, e.g. mask[None].")
    try:
        return len(x)
    except TypeError as exc:
        raise InputError(f"{name} is a {type(x).__name__}; give a sequence of images (T, H, W[, C]).") from exc


def frame_count(frames: Any, name: str = "frames") -> int:
    count = _length(frames, name)
    if count == 0:
        raise InputError(f"{name} is empty: the clip has no frames.")
    return count


def check_sizes(frame_hw: tuple[int, int], mask_hw: tuple[int, int], name: str = "masks") -> None:
    """Masks of another size are resized to the frames; say so, since it often means a wrong pairing."""
    if tuple(frame_hw) != tuple(mask_hw):
        fa, ma = frame_hw[1] / frame_hw[0], mask_hw[1] / mask_hw[0]
        extra = " and a different aspect ratio" if abs(fa - ma) > 0.01 * fa else ""
        log.warning(
            "%s are %dx%d but frames are %dx%d%s; resizing the masks to the frames.",
            name, mask_hw[1], mask_hw[0], frame_hw[1], frame_hw[0], extra,
        )


def resize_mask(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize a binary (H, W) mask keeping it binary."""
    if tuple(mask.shape) == tuple(hw):
        return mask
    x = F.interpolate(mask[None, None], size=hw, mode="bilinear", align_corners=False)
    return (x[0, 0] > 0.5).float()
