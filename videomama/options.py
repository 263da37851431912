"""Plain settings of a matting run, shared by the CLI, the nodes and the tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from .errors import InputError

Posterior = Literal["sample", "mean"]

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: called as work finishes (windows or frames, as each function says)."""
CancelFn = Callable[[], bool]
"""``should_cancel()``: asked between units of work; True stops the run with ``Cancelled``."""

DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
"""The precisions a user can name (CLI ``--precision``, node ``precision``), by name."""


def parse_dtype(name: str, what: str = "precision") -> torch.dtype:
    """The torch dtype of a precision name ('fp32', 'fp16', 'bf16'); InputError naming ``what`` otherwise."""
    try:
        return DTYPES[name]
    except KeyError:
        raise InputError(f"{what} '{name}' is unknown; choose one of {', '.join(DTYPES)}.") from None


# Official defaults (docs/inference.md) and our measured choices.
DEFAULT_RESOLUTION = 1024  # long side the model works at; the official demo uses 1024x576
DEFAULT_WINDOW = 16  # frames per UNet call, the official CLI default
DEFAULT_OVERLAP = 4  # one training clip (4 frames) of shared context between windows
DEFAULT_SEED = 42  # official default seed
DECODE_CHUNK = 8  # the temporal decoder sees 8-frame chunks in the official pipeline


CROP_MODES = ("off", "auto")
DEFAULT_CROP = "off"  # whole frames: what the official pipeline does (BENCHMARKS.md, "Subject crop")


@dataclass(frozen=True)
class MatteOptions:
    """How one clip is matted.

    resolution: target long side in pixels of the processing size (rounded up to /64 by
        padding, never by stretching).
    window: frames per UNet call; overlap: frames shared by consecutive windows and
        cross-faded.
    seed: noise seed; the noise of frame i depends only on (seed, i).
    posterior: 'sample' draws from the VAE posterior (seeded, the official behaviour);
        'mean' uses its mean (deterministic, the parity reference).
    mask_threshold: source masks are binarised at this level before resizing.
    decode_chunk: frames the temporal decoder sees at once (8 as trained/officially used).
    crop: 'off' processes whole frames (the official behaviour); 'auto' processes, per window,
        the padded box around the subject's masks at ``resolution`` (more model pixels on a
        small subject; alpha 0 outside the box; see :mod:`videomama.pipeline.crop`).
    """

    resolution: int = DEFAULT_RESOLUTION
    window: int = DEFAULT_WINDOW
    overlap: int = DEFAULT_OVERLAP
    seed: int = DEFAULT_SEED
    posterior: Posterior = "sample"
    mask_threshold: float = 0.5
    decode_chunk: int = DECODE_CHUNK
    crop: str = DEFAULT_CROP

    def __post_init__(self) -> None:
        if not 64 <= self.resolution <= 8192:
            raise InputError(
                f"resolution={self.resolution} is out of range: give a long side between 64 and 8192 "
                "pixels (1024 is the model's native size)."
            )
        if self.window < 1:
            raise InputError(f"window={self.window} must be at least 1 frame (16 is the default).")
        if not 0 <= self.overlap < self.window:
            raise InputError(
                f"overlap={self.overlap} must be >= 0 and smaller than window={self.window}; "
                f"try overlap={min(DEFAULT_OVERLAP, self.window - 1)}."
            )
        if self.posterior not in ("sample", "mean"):
            raise InputError(f"posterior={self.posterior!r} must be 'sample' or 'mean'.")
        if not 0.0 < self.mask_threshold < 1.0:
            raise InputError(
                f"mask_threshold={self.mask_threshold} must lie strictly between 0 and 1 (0.5 is the default)."
            )
        if self.decode_chunk < 1:
            raise InputError(f"decode_chunk={self.decode_chunk} must be at least 1 (8 as trained).")
        if self.crop not in CROP_MODES:
            raise InputError(f"crop={self.crop!r} must be one of {', '.join(CROP_MODES)}.")
        if not 0 <= self.seed < 2**63:
            raise InputError(f"seed={self.seed} must be between 0 and 2**63-1.")
