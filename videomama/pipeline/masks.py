"""Masks as the model takes them: one per frame (or one for all), checked, binarised, resized."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError
from ..imaging.resize import resize_binary
from ..inputs import as_tensor, frame_count

log = logging.getLogger(__name__)


def check_mask(mask: torch.Tensor, index: int, threshold: float, name: str = "masks",
               finite_flags: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Validate one mask ((H, W), or (H, W, C) from an image file) and binarise it at ``threshold``.

    With ``finite_flags`` the value check is left to the caller: a device flag is appended
    instead of a host sync per mask (masks on a GPU).
    """
    if mask.ndim == 3 and mask.shape[-1] in (1, 3, 4):
        mask = mask[..., 0] if mask.shape[-1] == 1 else mask[..., :3].mean(-1)
    if mask.ndim != 2:
        raise InputError(f"{name}[{index}] has shape {tuple(mask.shape)}; expected (height, width).")
    if finite_flags is not None:
        finite_flags.append(torch.isfinite(mask).all())
    elif not torch.isfinite(mask).all():
        raise InputError(f"{name}[{index}] contains NaN or infinite values; fix the node or file that produced it.")
    return (mask > threshold).float()


class MaskSequence(Sequence):
    """Masks indexed by frame: one per frame, or a single mask broadcast to every frame."""

    def __init__(self, masks: Any, num_frames: int, threshold: float, name: str = "masks"):
        self._masks = masks
        self._name = name
        self._threshold = threshold
        self._num_frames = num_frames
        count = frame_count(masks, name, item_ndim=2)
        if count not in (1, num_frames):
            raise InputError(
                f"{name} has {count} mask{'s' * (count != 1)} for {num_frames} frame{'s' * (num_frames != 1)}; "
                "give one mask per frame or a single mask (it is then used for every frame)."
            )
        self._broadcast = count == 1

    def __len__(self) -> int:
        return self._num_frames

    @property
    def broadcast(self) -> bool:
        """True when one mask stands for every frame (every index gives the same mask)."""
        return self._broadcast

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return self.get(index)

    def get(self, index: int, finite_flags: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Mask ``index``, binarised; ``finite_flags``: see :func:`check_mask`."""
        raw = self._masks[0 if self._broadcast else index]
        return check_mask(as_tensor(raw, f"{self._name}[{index}]"), index, self._threshold, self._name, finite_flags)


def check_sizes(frame_hw: tuple[int, ...], mask_hw: tuple[int, ...], name: str = "masks") -> None:
    """Masks of another size are resized to the frames; say so, since it often means a wrong pairing."""
    if tuple(frame_hw) != tuple(mask_hw):
        fa, ma = frame_hw[1] / frame_hw[0], mask_hw[1] / mask_hw[0]
        extra = " and a different aspect ratio" if abs(fa - ma) > 0.01 * fa else ""
        log.warning(
            "%s are %dx%d but frames are %dx%d%s; resizing the masks to the frames.",
            name, mask_hw[1], mask_hw[0], frame_hw[1], frame_hw[0], extra,
        )


def resize_mask(mask: torch.Tensor, hw: tuple[int, ...]) -> torch.Tensor:
    """Resize a binary (H, W) mask keeping it binary."""
    return resize_binary(mask[None, None], hw)[0, 0]
