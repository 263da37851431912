"""Run code on fake CUDA tensors (CPU-only torch) and record what a GPU would pay for.

``FakeTensorMode`` gives tensors a ``cuda`` device without memory or kernels and raises on
device mixing; a ``TorchFunctionMode`` on top records host->device copies (blocking or not),
host syncs (``.item()``, ``.tolist()``, ``bool(t)``, ``.cpu()``/blocking D2H copies,
``torch.cuda.synchronize``), SDPA batch sizes (batch x heads), and reads of a non-blocking
D2H copy into pageable memory before a sync. ``torch.cuda`` calls the code makes are thin
stand-ins (available, capability 9.0, synchronize counts as a sync).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)
_PINNED = "_fake_pinned"


@dataclass
class Record:
    h2d_blocking: int = 0
    h2d_nonblocking: int = 0
    syncs: int = 0
    sync_sites: list[str] = field(default_factory=list)
    attention_batches: list[int] = field(default_factory=list)
    unfinished_reads: int = 0
    mode: Any = None

    def fake(self, x: Any, device: torch.device | str = "cpu") -> Any:
        """A real CPU tensor or module as fake tensors on ``device`` (modules: in place)."""
        if isinstance(x, torch.nn.Module):  # swap every parameter and buffer in place
            for module in x.modules():
                for name, p in list(module.named_parameters(recurse=False)):
                    module._parameters[name] = self._move(p.detach(), device)
                for name, b in list(module.named_buffers(recurse=False)):
                    module._buffers[name] = self._move(b, device)
            return x
        return self._move(x, device)

    def _move(self, t: torch.Tensor, device: Any) -> torch.Tensor:
        with torch._C.DisableTorchFunction():
            return self.mode.from_tensor(t).to(device)

    def reset(self) -> None:
        self.h2d_blocking = self.h2d_nonblocking = self.syncs = self.unfinished_reads = 0
        self.sync_sites, self.attention_batches = [], []

    def sync(self, what: str) -> None:
        self.syncs += 1
        self.sync_sites.append(f"{what} at {_caller()}")


def _caller() -> str:
    """The innermost project frame (file:line) outside this harness: where a sync comes from."""
    for frame in reversed(traceback.extract_stack()):
        if ("videomama" in frame.filename or "/tests/" in frame.filename) and not frame.filename.endswith("fake_cuda.py"):
            return f"{frame.filename.rsplit('/', 2)[-2]}/{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return "?"


def _device_of(args: tuple, kwargs: dict) -> tuple[torch.device | None, bool]:
    """Target device and non_blocking of a ``Tensor.to`` call."""
    target = kwargs.get("device")
    for a in args:
        if isinstance(a, (str, torch.device)):
            target = a
        elif isinstance(a, torch.Tensor):
            target = a.device
    blocking = not kwargs.get("non_blocking", False)
    if len(args) >= 2 and isinstance(args[-1], bool):
        blocking = not args[-1]
    return (torch.device(target) if target is not None else None), not blocking


def _names_cuda(args: tuple, kwargs: dict) -> bool:
    targets = [kwargs.get("device")] + [a for a in args if isinstance(a, (str, torch.device))]
    return any(t is not None and torch.device(t).type == "cuda" for t in targets)


class _Recorder(TorchFunctionMode):
    def __init__(self, record: Record):
        super().__init__()
        self.r = record
        self.pending: set[int] = set()  # ids of non-blocking D2H results not yet synced

    def settle(self) -> None:
        self.pending.clear()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor) and id(a) in self.pending:
                self.r.unfinished_reads += 1
        name = getattr(func, "__name__", "")
        flat = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
        flat += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
        on_gpu = any(isinstance(t, FakeTensor) for t in flat) or _names_cuda(args, kwargs)
        if not on_gpu:  # pure host work runs for real, so its values (weights, indices) exist
            with unset_fake_temporarily():
                if name == "pin_memory":
                    out = args[0].clone()
                    setattr(out, _PINNED, True)
                    return out
                if name == "is_pinned":
                    return bool(getattr(args[0], _PINNED, False))
                return func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            q = args[0]
            self.r.attention_batches.append(int(q.shape[:-2].numel()))
        if name in ("item", "tolist", "__bool__", "__float__", "__int__", "nonzero") and isinstance(args[0], FakeTensor):
            if args[0].device.type == "cuda":
                self.r.sync(name)
            # Fake tensors have no values: every read says "1" (finite, true, in range).
            if name == "__bool__":
                return True
            if name in ("item", "__float__"):
                return 1.0
            if name == "__int__":
                return 1
            if name == "tolist":
                return torch.ones(args[0].shape).tolist()
            if name == "nonzero":  # data-dependent size: stand in "every element is nonzero" (index 0)
                t = args[0]
                idx = torch.zeros(t.numel(), device=t.device, dtype=torch.long)
                if kwargs.get("as_tuple") or (len(args) > 1 and args[1]):
                    return tuple(idx for _ in range(t.ndim))
                return torch.zeros(t.numel(), t.ndim, device=t.device, dtype=torch.long)
        if func in (torch.tensor, torch.as_tensor) and _names_cuda(args, kwargs):
            self.r.h2d_blocking += 1  # built on the host, then copied (blocking) to the device
        if name == "pin_memory":
            if args[0].device.type != "cpu":  # as real torch: only dense CPU tensors can be pinned
                raise RuntimeError(f"cannot pin '{args[0].device}' memory: only dense CPU tensors can be pinned")
            out = args[0].clone()
            setattr(out, _PINNED, True)
            return out
        if name == "is_pinned":
            return bool(getattr(args[0], _PINNED, False))
        if name in ("to", "cuda", "cpu") and isinstance(args[0], torch.Tensor):
            src = args[0]
            if name == "cuda":
                target, non_blocking = CUDA, bool(kwargs.get("non_blocking", False))
            elif name == "cpu":
                target, non_blocking = torch.device("cpu"), False
            else:
                target, non_blocking = _device_of(args[1:], kwargs)
            if target is not None and target.type != src.device.type:
                if target.type == "cuda":
                    if non_blocking and getattr(src, _PINNED, False):
                        self.r.h2d_nonblocking += 1
                    else:
                        self.r.h2d_blocking += 1
                else:
                    if non_blocking:
                        out = func(*args, **kwargs)
                        self.pending.add(id(out))
                        return out
                    self.r.sync("d2h")
        return func(*args, **kwargs)


class _Event:
    def __init__(self, *a: Any, **k: Any):
        self._rec: _Recorder | None = None

    def record(self, *a: Any, **k: Any) -> None:
        pass

    def synchronize(self) -> None:
        _ACTIVE[-1].settle()
        _ACTIVE[-1].r.sync("event")

    def query(self) -> bool:
        return True

    def wait(self, *a: Any, **k: Any) -> None:
        pass


class _Stream:
    def __init__(self, *a: Any, **k: Any):
        self.device = CUDA

    def wait_stream(self, *a: Any) -> None:
        pass

    def wait_event(self, *a: Any) -> None:
        pass

    def synchronize(self) -> None:
        _Event().synchronize()

    def record_event(self, *a: Any) -> _Event:
        return _Event()


_ACTIVE: list[_Recorder] = []


def _synchronize(*a: Any) -> None:
    _ACTIVE[-1].settle()
    _ACTIVE[-1].r.sync("synchronize")


@contextlib.contextmanager
def fake_cuda() -> Iterator[Record]:
    """Inside: new tensors may live on ``cuda``, and the
    returned :class:`Record` fills in. Device or dtype mixing raises as on a GPU."""
    record = Record()
    recorder = _Recorder(record)
    patches = [
        mock.patch("torch.cuda.device_count", lambda: 1),
        mock.patch("torch.cuda.current_device", lambda: 0),
        mock.patch("torch.cuda.synchronize", _synchronize),
        mock.patch("torch.cuda.get_device_capability", lambda *a: (9, 0)),
        mock.patch("torch.cuda.is_bf16_supported", lambda *a, **k: True),
        mock.patch("torch.cuda.Event", _Event),
        mock.patch("torch.cuda.Stream", _Stream),
        mock.patch("torch.cuda.current_stream", lambda *a: _Stream()),
        mock.patch("torch.cuda.stream", lambda *a: contextlib.nullcontext()),
        mock.patch("torch.cuda.empty_cache", lambda: None),
        mock.patch("torch.cuda.mem_get_info", lambda *a: (80 << 30, 80 << 30)),
        mock.patch("torch.cuda.memory_allocated", lambda *a: 0),
        mock.patch("torch.cuda.max_memory_allocated", lambda *a: 0),
        mock.patch("torch.cuda.reset_peak_memory_stats", lambda *a: None),
    ]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        record.mode = stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
        _ACTIVE.append(recorder)
        stack.callback(_ACTIVE.pop)
        stack.enter_context(recorder)
        yield record
