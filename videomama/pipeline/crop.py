"""Subject crop: per window, the box of the frame around the subject that the model processes.

The model works at ``resolution`` on its long side. Scaling the whole frame gives a subject
that covers a tenth of a UHD frame about a tenth of the model's pixels; processing only a
padded box around it gives it all of them. Per window of the clip:

    masks of the window (binarised)  -> union box -> union with the neighbouring windows' boxes
      (consecutive windows share frames, so their boxes overlap and grow or shrink gradually:
      no jitter at the cross-fades) -> padded by ``MARGIN`` of its size (at least ``MIN_MARGIN_PX``)
      -> clipped to the frame

A box that covers most of the frame is the whole frame (no gain, and the same result as off);
a window without any mask pixel keeps the whole frame (the model then sees an empty mask, as
without crop). The scheduler (:mod:`.matte`) processes each box at the model's resolution and
pastes the alpha back: 0 outside the box, the model's alpha inside.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from .geometry import Region
from .masks import MaskSequence

log = logging.getLogger(__name__)

__all__ = ["MARGIN", "MIN_MARGIN_PX", "WHOLE_FRAME_SHARE", "subject_regions"]

MARGIN = 0.15  # padding on each side, as a share of the box's own size: context for the model
MIN_MARGIN_PX = 32  # at least this many source pixels of context
WHOLE_FRAME_SHARE = 0.6  # a padded box with more of the frame's area than this is the whole frame


def _mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the nonzero pixels of an (h, w) binary mask, or None."""
    rows = torch.nonzero(mask.amax(dim=1) > 0).flatten()
    if rows.numel() == 0:
        return None
    cols = torch.nonzero(mask.amax(dim=0) > 0).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _union(a: Region | None, b: Region | None) -> Region | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _to_frame(box: Region, mask_hw: tuple[int, int], hw: tuple[int, int]) -> Region:
    """A box in mask pixels as a box in frame pixels (masks may be another size), rounded outwards."""
    (mh, mw), (h, w) = mask_hw, hw
    return box[0] * h // mh, box[1] * w // mw, -(-box[2] * h // mh), -(-box[3] * w // mw)


def _padded(box: Region, hw: tuple[int, int]) -> Region:
    top, left, bottom, right = box
    pad_y = max(MIN_MARGIN_PX, round(MARGIN * (bottom - top)))
    pad_x = max(MIN_MARGIN_PX, round(MARGIN * (right - left)))
    return max(0, top - pad_y), max(0, left - pad_x), min(hw[0], bottom + pad_y), min(hw[1], right + pad_x)


def subject_regions(masks: MaskSequence, windows: Sequence[range], hw: tuple[int, int]) -> list[Region | None]:
    """The region of each window (None: the whole frame) for ``crop='auto'``.

    masks: the clip's binarised masks; windows: the frame ranges of the windows, in order;
    hw: the source frame size. Reads every mask once (a pass before the first window; a single
    mask for the whole clip is read once).
    """
    boxes: dict[int, Region | None] = {}
    for i in range(1 if masks.broadcast else len(masks)):  # one mask for every frame: read it once
        mask = masks[i]
        found = _mask_box(mask)
        boxes[i] = None if found is None else _to_frame(found, (int(mask.shape[0]), int(mask.shape[1])), hw)
    if masks.broadcast:
        boxes = dict.fromkeys(range(len(masks)), boxes[0])
    own: list[Region | None] = []
    for win in windows:
        union: Region | None = None
        for i in win:
            union = _union(union, boxes[i])
        own.append(union)
    regions: list[Region | None] = []
    for k, box in enumerate(own):
        if box is None:
            regions.append(None)
            continue
        for near in (k - 1, k + 1):
            if 0 <= near < len(own):
                box = _union(box, own[near])
        assert box is not None
        padded = _padded(box, hw)
        area = (padded[2] - padded[0]) * (padded[3] - padded[1])
        regions.append(None if area > WHOLE_FRAME_SHARE * hw[0] * hw[1] else padded)
    cropped = sum(r is not None for r in regions)
    log.info("crop auto: %d of %d windows process a box around the subject%s", cropped, len(regions),
             "" if cropped == len(regions) else " (the others: the whole frame)")
    return regions
