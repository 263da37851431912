"""Frame numbers of image sequences, and the names of the files written for them.

A folder is a *numbered sequence* when all its images share one name apart from the last group
of digits, written as ``printf('%0Nd')`` would (``shot_v01.1001.exr``, ``shot_v01.1002.exr`` ...,
or ``frame_9.png``, ``frame_10.png``): then each file's number is its frame number, and what is
written for it keeps that number (``OUT/alpha/shot_v01.1001.png``, the plate's name with the
output's extension; a compositor reads it back as ``shot_v01.####.png``). Any other folder,
and every video, is numbered by position: ``00000.png``, ``00001.png`` ...
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = ["FrameNaming", "detect_numbering", "select_range"]

_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


@dataclass(frozen=True)
class FrameNaming:
    """How the output files of a clip are named: ``prefix`` + frame number (``padding`` digits) + suffix.

    numbers: the frame number of each clip position (None: positions are the numbers, 00000 style).
    """

    prefix: str = ""
    padding: int = 5
    numbers: tuple[int, ...] | None = None
    suffix: str = ""

    def number(self, index: int) -> int:
        """The frame number of clip position ``index``."""
        return self.numbers[index] if self.numbers is not None else index

    def name(self, index: int, extension: str = ".png") -> str:
        """The file name of clip position ``index`` with ``extension`` (e.g. '.png', '.exr')."""
        return f"{self.prefix}{self.number(index):0{self.padding}d}{self.suffix}{extension}"

    def subset(self, positions: Sequence[int]) -> FrameNaming:
        """The naming of the clip positions ``positions`` (a frame range of this clip)."""
        if self.numbers is None:
            return FrameNaming(self.prefix, self.padding, tuple(positions), self.suffix)
        return FrameNaming(self.prefix, self.padding, tuple(self.numbers[i] for i in positions), self.suffix)


def detect_numbering(files: list[Path]) -> FrameNaming | None:
    """The numbering of a folder's images (sorted naturally), or None when they are no numbered sequence."""
    if not files:
        return None
    parts = [_LAST_NUMBER.match(p.stem) for p in files]
    if any(m is None for m in parts):
        return None
    prefixes = {m.group(1) for m in parts if m is not None}
    suffixes = {m.group(3) for m in parts if m is not None}
    if len(prefixes) != 1 or len(suffixes) != 1 or len({p.suffix.lower() for p in files}) != 1:
        return None
    digits = [m.group(2) for m in parts if m is not None]
    padding = min(len(d) for d in digits)
    # printf('%0Nd'): numbers of exactly N digits, or longer ones without a leading zero.
    if any(len(d) != padding and d.startswith("0") for d in digits):
        return None
    numbers = tuple(int(d) for d in digits)
    if len(set(numbers)) != len(numbers):
        return None
    return FrameNaming(prefixes.pop(), padding, numbers, suffixes.pop())


def select_range(naming: FrameNaming, count: int, start: int | None, end: int | None, name: str = "--frames") -> range:
    """The clip positions of frames ``start``..``end`` (inclusive, in the clip's own frame numbers)."""
    if start is None and end is None:
        return range(count)
    numbers = [naming.number(i) for i in range(count)]
    first, last = numbers[0], numbers[-1]
    lo = first if start is None else start
    hi = last if end is None else end
    if lo > hi:
        raise InputError(f"--start {lo} is after --end {hi}; give a start at or before the end.")
    positions = [i for i, n in enumerate(numbers) if lo <= n <= hi]
    if not positions:
        raise InputError(f"--start/--end {lo}-{hi} select no frame of {name}, which holds frames {first}-{last}; "
                         "give a range inside it.")
    for bound, flag in ((start, "--start"), (end, "--end")):
        if bound is not None and not first <= bound <= last:
            raise InputError(f"{flag} {bound} is outside {name}, which holds frames {first}-{last}; "
                             "give a frame number inside that range.")
    return range(positions[0], positions[-1] + 1)
