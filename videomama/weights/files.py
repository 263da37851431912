"""Reading tensors from weight files without trusting them.

Only two ways in: safetensors (memory-mapped, so a 9 GB SVD checkpoint costs nothing until a
tensor is asked for) and ``torch.load(weights_only=True)`` for pickled ``.pt/.bin/.ckpt``
files, which refuses anything but plain tensors and containers. Every failure becomes a
:class:`CheckpointError` that names the file and says what to do.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES  # what a model-folder listing offers

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass
class TensorIndex:
    """Names, shapes and dtypes of the tensors in one weight file, plus a way to read them.

    ``read(name)`` returns one tensor on the CPU (memory-mapped for safetensors). Keeping the
    reader lazy is what lets us take ``first_stage_model.*`` out of a full SVD checkpoint
    without touching the UNet's 6 GB.
    """

    path: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    metadata: dict[str, str] = field(default_factory=dict)
    read: Callable[[str], torch.Tensor] = field(repr=False, default=lambda name: torch.empty(0))

    def keys(self) -> Iterable[str]:
        return self.shapes.keys()

    def __contains__(self, name: str) -> bool:
        return name in self.shapes


def is_pickle_bytes(head: bytes) -> bool:
    # torch.save writes a zip (PK..) since 1.6; the legacy format starts with a pickle opcode.
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def open_tensor_file(path: str | os.PathLike[str]) -> TensorIndex:
    """Index the tensors of a ``.safetensors`` or a weights-only pickle file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weight file not found: '{path}'. Check the path (and that the download finished).")
    if path.is_dir():
        raise CheckpointError(f"'{path}' is a folder where a weight file was expected.")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES or not is_pickle_bytes(head):
        return _open_safetensors(path)
    return _open_pickle(path)


def _open_safetensors(path: Path) -> TensorIndex:
    from safetensors import SafetensorError, safe_open

    try:
        # safe_open validates the header against the file length, so a truncated download
        # fails here rather than half-way through loading.
        handle = safe_open(str(path), framework="pt", device="cpu")
        shapes: dict[str, tuple[int, ...]] = {}
        dtypes: dict[str, torch.dtype] = {}
        for name in handle.keys():
            sl = handle.get_slice(name)
            shapes[name] = tuple(sl.get_shape())
            dtypes[name] = _SAFETENSORS_DTYPES.get(sl.get_dtype(), torch.float32)
        metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"'{path}' is not a readable safetensors file ({exc}). It is probably truncated or corrupt: "
            "download it again and compare its size with the published one."
        ) from exc

    def read(name: str) -> torch.Tensor:
        try:
            return handle.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"could not read tensor '{name}' from '{path}': {exc}. Download the file again.") from exc

    return TensorIndex(path=path, shapes=shapes, dtypes=dtypes, metadata=metadata, read=read)


def load_pickle_weights(path: Path, fix: str = "use the .safetensors release of these weights") -> Any:
    """``torch.load`` of a PyTorch file with ``weights_only=True`` (never runs code from the file).

    The file is memory-mapped (big checkpoints stay off the heap); the legacy non-zip format,
    which cannot be mapped, is read normally. Any failure becomes one CheckpointError that
    says whether the file holds code or is damaged, and ends with ``fix``.
    """
    def load(mmap: bool) -> Any:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            return load(mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return load(mmap=False)
    except Exception as exc:  # the unpickler raises many different types
        text = str(exc)
        first = text.splitlines()[0][:200] if text else ""
        if "weights_only" in text or "Unsupported global" in text:
            why = "it contains pickled Python objects other than tensors, and loading those would run code from the file"
        else:
            why = "it is probably truncated or corrupt"
        raise CheckpointError(
            f"'{path}' could not be loaded as plain weights ({type(exc).__name__}: {first}): {why}. "
            f"Only safetensors files and weights-only PyTorch files are accepted (pickled code is never run): {fix}."
        ) from exc


def unwrap_state_dict(obj: Any) -> Any:
    """The state dict inside common checkpoint wrappers (``{"state_dict": ...}``, ``"model"``, ``"module"``)."""
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model", "module"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                return inner
    return obj


def index_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> TensorIndex:
    """A TensorIndex over tensors already in memory (or memory-mapped)."""
    held = dict(tensors)
    return TensorIndex(path=path, shapes={k: tuple(v.shape) for k, v in held.items()},
                       dtypes={k: v.dtype for k, v in held.items()}, read=held.__getitem__)


def _open_pickle(path: Path) -> TensorIndex:
    obj = unwrap_state_dict(load_pickle_weights(path))
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"'{path}' holds no state dict of tensors; give a model weight file.")
    return index_tensors(path, obj)


def describe_mismatch(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]],
                      examples: int = 3) -> str | None:
    """How the tensor names/shapes in a file differ from a model's, in a few words; None if they agree.

    Shared by every loader so a wrong or partial file is described the same way everywhere.
    """
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    wrong = sorted(k for k in set(expected) & set(given) if tuple(given[k]) != tuple(expected[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:examples])})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:examples])})")
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} with a wrong shape (e.g. {k}: {tuple(given[k])} in the file, "
            f"another shape {tuple(expected[k])} in the model)"
        )
    return "; ".join(parts) or None


def read_json(path: Path) -> dict:
    """Read a config.json, with an error that names it."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"could not read model config '{path}': {exc}. Download the folder again.") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"model config '{path}' is not a JSON object.")
    return data
