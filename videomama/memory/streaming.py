"""UNet block streaming: keep the UNet's blocks in host memory and run each on the compute device.

Results are unchanged: every block computes with the same weights on the same device; only
where the weights wait between forwards changes. Used by the ``low_vram`` memory plans when
this library places the weights itself (the CLI). A host that places weights on its own
(ComfyUI's ModelPatcher in ``--lowvram``) does not use it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "BlockStreamer", "Placement", "block_streaming", "disable_block_streaming", "enable_block_streaming",
    "placement_of", "restore_placement", "streamer_of", "stream_units", "unet_of",
]


def unet_of(model: nn.Module) -> nn.Module:
    """The UNet of a VideoMaMaModel, or the model itself when it is a bare UNet."""
    unet = getattr(model, "unet", None)
    return unet if isinstance(unet, nn.Module) and hasattr(model, "vae") else model


def _has_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


# Execution order of the UNet's top-level children (prefetch and the memory model use it);
# children not listed follow in registration order.
_EXECUTION_ORDER = ("time_embedding", "add_embedding", "conv_in", "down_blocks", "mid_block", "up_blocks",
                    "conv_norm_out", "conv_out")


def stream_units(unet: nn.Module, granularity: str) -> list[tuple[str, nn.Module]]:
    """The UNet's streamed units in execution order: top-level blocks, or (``layer``) the
    direct children of each down/mid/up block (resnets, attentions, samplers)."""
    children = dict(unet.named_children())
    names = [n for n in _EXECUTION_ORDER if n in children] + [n for n in children if n not in _EXECUTION_ORDER]
    units: list[tuple[str, nn.Module]] = []
    for name in names:
        child = children[name]
        if name == "conv_in" or not _has_tensors(child):
            continue  # conv_in stays resident: it anchors VideoMaMaModel.compute_device (35 k parameters)
        blocks = list(child.named_children()) if isinstance(child, nn.ModuleList) else [("", child)]
        for sub, block in blocks:
            full = f"{name}.{sub}" if sub else name
            if granularity == "layer" and name in ("down_blocks", "up_blocks", "mid_block"):
                for leaf_name, leaf in block.named_children():
                    if isinstance(leaf, nn.ModuleList):
                        units += [(f"{full}.{leaf_name}.{i}", m) for i, m in enumerate(leaf) if _has_tensors(m)]
                    elif _has_tensors(leaf):
                        units.append((f"{full}.{leaf_name}", leaf))
            elif _has_tensors(block):
                units.append((full, block))
    return units


_PIN_ALIGN = 64  # bytes: every view starts aligned for any dtype


def _pinned_views(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of ``tensors`` as views into ONE page-locked CPU buffer (one per streamed block).

    Pinning each tensor on its own costs a host-allocator block apiece (rounded up, kept for
    the process): 1,426 blocks made 2.84 GiB of weights take 3.66 GiB of page-locked memory.
    """
    sizes = [t.numel() * t.element_size() for t in tensors]
    starts, total = [], 0
    for size in sizes:
        starts.append(total)
        total += -(-size // _PIN_ALIGN) * _PIN_ALIGN
    flat = torch.empty(max(total, 1), dtype=torch.uint8).pin_memory()
    views = []
    for t, start, size in zip(tensors, starts, sizes):
        view = flat[start : start + size].view(t.dtype).view(t.shape)
        view.copy_(t.data)
        views.append(view)
    return views


class BlockStreamer:
    """Forward hooks that keep a UNet's blocks on ``offload_device`` and run them on ``compute_device``.

    Each streamed tensor (parameter or buffer) keeps one copy on the offload device (pinned
    host memory when computing on CUDA). A forward pre-hook swaps the block's tensors to
    compute-device copies (``tensor.data = ...``, so parameter objects keep their identity),
    and a forward hook swaps them back, dropping the device copies. With ``prefetch`` on
    CUDA the copy of the block that ran next last time is started on a side stream, so the
    transfer overlaps the current block's compute; at most two blocks are on the device.

    Everything the streamer does not stream (conv_in, tensors outside the units, and the VAE
    of a :class:`~videomama.pipeline.model.VideoMaMaModel`) is moved to the compute device.
    """

    def __init__(self, model: nn.Module, compute_device: torch.device | str, offload_device: torch.device | str = "cpu",
                 *, prefetch: bool = True, pin_memory: bool | None = None, granularity: str = "block",
                 _force_copy: bool = False):
        if granularity not in ("block", "layer"):
            raise InputError(f"granularity={granularity!r} must be 'block' or 'layer'.")
        self.model = model
        self.unet = unet_of(model)
        self.compute_device = torch.device(compute_device)
        self.offload_device = torch.device(offload_device)
        cuda = self.compute_device.type == "cuda"
        self.prefetch = bool(prefetch and cuda and self.offload_device.type == "cpu")
        pin = (cuda and self.offload_device.type == "cpu") if pin_memory is None else pin_memory
        self._force_copy = _force_copy  # tests: copy on load even when devices match, to catch missed hooks
        self.units = stream_units(self.unet, granularity)
        self.loads = 0  # how many unit loads happened (tests and logs)
        self.prefetch_hits = 0
        self._entries: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self._pending: dict[int, tuple[list[torch.Tensor], Any]] = {}
        self._next: dict[int, int] = {}
        self._last_started: int | None = None
        self._stream = torch.cuda.Stream(self.compute_device) if self.prefetch else None
        self._handles: list[Any] = []

        # Where every tensor was, so remove() can leave the model as it was found (a host such
        # as ComfyUI keeps its own account of where the weights are).
        self._placement = placement_of(self.model)
        streamed: set[int] = set()
        for _, unit in self.units:
            tensors = []
            for t in [*unit.parameters(), *unit.buffers()]:
                if id(t) in streamed:
                    continue  # shared tensor already streamed by an earlier unit
                streamed.add(id(t))
                tensors.append(t)
            offs = _pinned_views(tensors) if pin else [t.data.to(self.offload_device) for t in tensors]
            for t, off in zip(tensors, offs):
                t.data = off
            self._entries.append(list(zip(tensors, offs)))
        # Everything else lives on the compute device for the whole run.
        for m in self.model.modules():
            for store in (m._parameters, m._buffers):
                for tensor in store.values():
                    if tensor is not None and id(tensor) not in streamed and tensor.device != self.compute_device:
                        tensor.data = tensor.data.to(self.compute_device)
        for i, (_, unit) in enumerate(self.units):
            self._handles.append(unit.register_forward_pre_hook(self._make_pre(i)))
            self._handles.append(unit.register_forward_hook(self._make_post(i)))
        self._handles.append(self.unet.register_forward_pre_hook(self._start_forward))
        self._handles.append(self.unet.register_forward_hook(self._end_forward))
        total = sum(t.numel() * t.element_size() for e in self._entries for t, _ in e)
        largest = max((sum(t.numel() * t.element_size() for t, _ in e) for e in self._entries), default=0)
        self.streamed_bytes, self.largest_unit_bytes = total, largest
        log.info("streaming %d UNet units (%.2f GB, largest %.2f GB) from %s to %s%s",
                 len(self.units), total / 1e9, largest / 1e9, self.offload_device, self.compute_device,
                 ", prefetching the next unit" if self.prefetch else "")

    # -- hooks
    def _start_forward(self, module: nn.Module, args: Any) -> None:
        self._last_started = None

    def _end_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        self._drop_pending()

    def _copies(self, i: int) -> list[torch.Tensor]:
        if self._force_copy and self.compute_device == self.offload_device:
            return [off.clone() for _, off in self._entries[i]]
        return [off.to(self.compute_device, non_blocking=True) for _, off in self._entries[i]]

    def _make_pre(self, i: int) -> Callable[..., None]:
        def pre(module: nn.Module, args: Any) -> None:
            if self._last_started is not None and self._last_started != i:
                self._next[self._last_started] = i  # learn the execution order for prefetching
            self._last_started = i
            pending = self._pending.pop(i, None)
            if pending is not None:
                copies, event = pending
                current = torch.cuda.current_stream(self.compute_device)
                current.wait_event(event)
                for c in copies:
                    c.record_stream(current)  # allocated on the side stream, used on this one
                self.prefetch_hits += 1
            else:
                copies = self._copies(i)
            for (t, _), c in zip(self._entries[i], copies):
                t.data = c
            self.loads += 1
            nxt = self._next.get(i)
            if self.prefetch and nxt is not None and nxt not in self._pending and nxt != i:
                with torch.cuda.stream(self._stream):
                    prefetched = self._copies(nxt)
                    event = torch.cuda.Event()
                    event.record(self._stream)
                self._pending[nxt] = (prefetched, event)
        return pre

    def _make_post(self, i: int) -> Callable[..., None]:
        def post(module: nn.Module, args: Any, output: Any) -> None:
            for t, off in self._entries[i]:
                t.data = off
        return post

    def _drop_pending(self) -> None:
        for _copies, event in self._pending.values():
            event.synchronize()
        self._pending.clear()

    # -- state
    @property
    def active(self) -> bool:
        return bool(self._handles)

    def offloaded(self) -> bool:
        """True when every streamed tensor is back on its offload copy (between forwards)."""
        return all(t.data.data_ptr() == off.data_ptr() and t.device == off.device
                   for e in self._entries for t, off in e)

    def remove(self, restore: bool = True) -> None:
        """Remove every hook. restore: put every tensor back on the device it was on before
        streaming began (otherwise streamed tensors stay on the offload device and the rest on
        the compute device)."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._drop_pending()
        for e in self._entries:
            for t, off in e:
                t.data = off
        if restore:
            restore_placement(self._placement)
        self._placement = []


_STREAMER_ATTR = "_videomama_block_streamer"

Placement = list[tuple[torch.Tensor, torch.device]]


def placement_of(model: nn.Module) -> Placement:
    """Where each parameter and buffer of ``model`` is (references to the tensors, not copies)."""
    return [(t, t.device) for m in model.modules() for store in (m._parameters, m._buffers)
            for t in store.values() if t is not None]


def restore_placement(placement: Placement) -> None:
    """Move every tensor back to the device recorded by :func:`placement_of`."""
    for t, device in placement:
        if t.device != device:
            t.data = t.data.to(device)


def enable_block_streaming(model: nn.Module, compute_device: torch.device | str,
                           offload_device: torch.device | str = "cpu", *, prefetch: bool = True,
                           pin_memory: bool | None = None, granularity: str = "block") -> BlockStreamer:
    """Stream the UNet of ``model`` (a VideoMaMaModel or a bare UNet) block by block; see :class:`BlockStreamer`.

    Results are unchanged: every block computes with the same weights on the same device.
    Calling it on a model that already streams replaces the old streamer.
    """
    unet = unet_of(model)
    disable_block_streaming(model)
    streamer = BlockStreamer(model, compute_device, offload_device, prefetch=prefetch, pin_memory=pin_memory,
                             granularity=granularity)
    object.__setattr__(unet, _STREAMER_ATTR, streamer)
    return streamer


def disable_block_streaming(model: nn.Module, device: torch.device | str | None = None, *,
                            restore: bool = True) -> bool:
    """Remove the streaming hooks (if any) and put every tensor back where it was before
    streaming (``restore``); with ``device`` the whole model is then moved there. Returns
    whether streaming was on."""
    unet = unet_of(model)
    streamer = unet.__dict__.pop(_STREAMER_ATTR, None)
    if streamer is not None:
        streamer.remove(restore=restore)
    if device is not None:
        model.to(device)
    return streamer is not None


def streamer_of(model: nn.Module) -> BlockStreamer | None:
    return unet_of(model).__dict__.get(_STREAMER_ATTR)


@contextlib.contextmanager
def block_streaming(model: nn.Module, compute_device: torch.device | str, **kwargs: Any) -> Iterator[BlockStreamer]:
    """``with block_streaming(model, "cuda"): ...`` streams inside the block only."""
    streamer = enable_block_streaming(model, compute_device, **kwargs)
    try:
        yield streamer
    finally:
        disable_block_streaming(model)
