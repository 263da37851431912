"""The one home of host -> device moves.

Pinning is only possible for dense CPU tensors, and ``non_blocking`` only helps (and is only
safe to rely on) from pinned memory: a tensor already on the device is returned as is (frames
from ComfyUI ``--gpu-only``), a CPU tensor bound for CUDA goes through page-locked memory
without stalling the stream, anything else is a plain copy.
"""

from __future__ import annotations

import torch


def to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` on ``device`` (and ``dtype``), without a blocking host -> device copy on CUDA."""
    if x.device == device or (device.type != "cuda"):
        return x.to(device, dtype) if dtype is not None else x.to(device)
    if x.device.type == "cpu" and x.layout == torch.strided:
        if dtype is not None and dtype.itemsize < x.dtype.itemsize:
            x = x.to(dtype)  # cast on the host when it shrinks the copy
        pinned = x if x.is_pinned() else x.contiguous().pin_memory()
        out = pinned.to(device, non_blocking=True)
        return out.to(dtype) if dtype is not None else out
    return x.to(device, dtype) if dtype is not None else x.to(device)
