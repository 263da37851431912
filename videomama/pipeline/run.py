"""The one runner of VideoMaMa for every host: choose a memory plan, place the weights, run, and
step down on out-of-memory errors.

    frames + masks --(choose plan)--> host places weights --> iter_matte under the plan --> alpha
                          ^                                          |
                          +------ out of memory: one plan lower, resume where it stopped

The CLI and library callers use :class:`LocalHost` (this library moves the weights, and
streams UNet blocks under the ``low_vram`` plans). ComfyUI's node passes a host whose
``place`` is ComfyUI's ``load_models_gpu`` (it owns placement and streams weights itself
in ``--lowvram``), so no plan streams blocks there. Both go through :func:`run_matte` and
therefore share one retry policy:

- only out-of-memory errors are retried; each retry steps one plan down the ladder
  (:meth:`MemoryPlan.lower`) and never into a plan that changes the result unless the caller
  allowed that (``allow_result_changes``);
- the retry resumes at the first frame not yet handed out (already delivered frames are
  final and are not recomputed differently);
- each step logs one WARNING saying which plan failed, what changes and whether the result
  changes; at the bottom of the ladder the error propagates with a note on what to lower.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import InputError
from ..inputs import frame_at
from ..memory.estimate import choose_memory_plan, estimate_memory
from ..memory.execution import PlannedModel
from ..memory.plans import PLANS, MemoryPlan
from ..memory.retry import add_note, describe_step_down, first_line, free_memory, is_oom_error
from ..memory.streaming import (
    Placement,
    disable_block_streaming,
    enable_block_streaming,
    placement_of,
    restore_placement,
    streamer_of,
)
from ..options import CancelFn, MatteOptions, ProgressFn
from .geometry import fit_geometry
from .matte import FrameResult, WindowSpec, iter_window_results

log = logging.getLogger(__name__)

__all__ = ["LocalHost", "WeightHost", "resolve_plan", "run_matte", "run_window_results"]


class WeightHost(Protocol):
    """What a host does around a run: how much device memory there is and where weights go.

    places_weights: True when the host owns weight placement (ComfyUI's ModelPatcher): plans
        then never stream UNet blocks, and estimates count no weights.
    """

    places_weights: bool

    def available_bytes(self, model: Any) -> int | None:
        """Device bytes the run may use (weights included unless the host places them);
        None when there is no device memory to plan for (the CPU)."""
        ...

    def place(self, model: Any, plan: MemoryPlan, activation_bytes: int) -> None:
        """Put the weights where ``plan`` runs them, keeping ``activation_bytes`` free for the run."""
        ...

    def release(self) -> None:
        """Free what a failed attempt left (called after an out-of-memory error, before retrying)."""
        ...

    def finish(self, model: Any) -> None:
        """Called once when the run ends, however it ends."""
        ...


class LocalHost:
    """This library places the weights: on ``device``, or streamed from host memory for ``low_vram``.

    The model's placement found at the start is restored when the run finishes, so a model
    kept on the CPU between runs stays there.
    """

    places_weights = False

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._placement: Placement | None = None

    def available_bytes(self, model: Any) -> int | None:
        if self.device.type != "cuda":
            return None
        free, _total = torch.cuda.mem_get_info(self.device)
        on_device = sum(t.numel() * t.element_size() for t, dev in placement_of(model) if dev == self.device) \
            if isinstance(model, nn.Module) else 0
        return int(free) + int(on_device)

    def place(self, model: Any, plan: MemoryPlan, activation_bytes: int) -> None:
        if not isinstance(model, nn.Module):
            return  # a stand-in model (tests) places itself
        if self._placement is None:
            self._placement = placement_of(model)
        if plan.stream_unet:
            if streamer_of(model) is None:
                enable_block_streaming(model, self.device, prefetch=plan.prefetch)
            return
        disable_block_streaming(model, restore=False)
        model.to(self.device)

    def release(self) -> None:
        free_memory()

    def finish(self, model: Any) -> None:
        if not isinstance(model, nn.Module):
            return
        disable_block_streaming(model, restore=False)
        if self._placement is not None:
            try:
                restore_placement(self._placement)
            except Exception as exc:  # never mask the run's own outcome
                if not is_oom_error(exc):
                    raise
                log.warning("could not move the model back to where it was (out of memory); part of it stays "
                            "in host memory: %s", first_line(exc))
            self._placement = None


def resolve_plan(memory: str | MemoryPlan, host: WeightHost, model: Any, frames_hw: tuple[int, int],
                 options: MatteOptions, dtype: torch.dtype, *, allow_result_changes: bool = False) -> MemoryPlan:
    """The memory plan a run starts with: a plan by name, or ``'auto'`` chosen from the host's free memory."""
    if isinstance(memory, MemoryPlan):
        plan = memory
    elif memory == "auto":
        free = host.available_bytes(model)
        if free is None:
            plan = PLANS["default"]
        else:
            plan = choose_memory_plan(free, frames_hw, options.window, resolution=options.resolution, dtype=dtype,
                                      decode_chunk=options.decode_chunk, host_streams_weights=host.places_weights,
                                      allow_result_changes=allow_result_changes)
    elif memory in PLANS:
        plan = PLANS[memory]
    else:
        raise InputError(f"memory plan '{memory}' is unknown; choose auto or one of {', '.join(PLANS)}.")
    return plan.without_streaming() if host.places_weights else plan


def _model_dtype(model: Any) -> torch.dtype:
    return getattr(model, "compute_dtype", torch.float32)


def run_matte(
    model: Any,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    *,
    memory: str | MemoryPlan = "auto",
    host: WeightHost | None = None,
    allow_result_changes: bool = False,
    windows: Sequence[WindowSpec] | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Matte a clip under a memory plan; yields ``(frame_index, alpha)`` as :func:`iter_matte` does.

    model: a :class:`~videomama.pipeline.model.VideoMaMaModel` (or any ``WindowModel``).
    memory: ``'auto'`` (from the host's free device memory), a plan name, or a MemoryPlan.
    host: who places the weights; default :class:`LocalHost` on the model's compute device.
    allow_result_changes: let 'auto' and the out-of-memory retry pick plans that change the
        alpha (smaller decoder chunks, tiles); off by default, and a WARNING when used.
    windows: the window layout (e.g. with a subject region per window); default whole frames.
    """
    for result in run_window_results(model, frames, masks, options, memory=memory, host=host,
                                     allow_result_changes=allow_result_changes, windows=windows, progress=progress,
                                     should_cancel=should_cancel):
        yield result.index, result.alpha.clamp_(0.0, 1.0)


def run_window_results(
    model: Any,
    frames: Any,
    masks: Any,
    options: MatteOptions = MatteOptions(),
    *,
    memory: str | MemoryPlan = "auto",
    host: WeightHost | None = None,
    allow_result_changes: bool = False,
    windows: Sequence[WindowSpec] | None = None,
    run: range | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> Iterator[FrameResult]:
    """:func:`run_matte` for the windows ``run`` only (default all), reporting each frame they touch
    as :func:`~videomama.pipeline.matte.iter_window_results` does: finished frames, and partial
    sums of frames that windows outside ``run`` also cover (a segment of a long shot split
    across workers, merged by ``videomama.distributed``). Same plans, placement and retry policy."""
    host = host if host is not None else LocalHost(model.compute_device)
    first = frame_at(frames, 0)
    frames_hw = (int(first.shape[0]), int(first.shape[1]))
    dtype = _model_dtype(model)
    plan = resolve_plan(memory, host, model, frames_hw, options, dtype, allow_result_changes=allow_result_changes)
    geo = fit_geometry(*frames_hw, options.resolution)
    emitted = 0
    try:
        while True:
            est = estimate_memory(plan, (geo.pad_h, geo.pad_w), options.window, dtype=dtype,
                                  decode_chunk=options.decode_chunk, host_streams_weights=True)
            reason = ""
            try:
                host.place(model, plan, int(est.peak))
                log.info("memory plan '%s': %s", plan.name, plan.describe())
                for result in iter_window_results(PlannedModel(model, plan), frames, masks, options, progress,
                                                  should_cancel, windows=windows, run=run, resume_from=emitted):
                    emitted = result.index + 1
                    yield result
                return
            except Exception as exc:  # only out-of-memory errors are retried, see below
                if not is_oom_error(exc):
                    raise
                lower = plan.lower(streaming=not host.places_weights)
                if lower is not None and lower.changes_results and not allow_result_changes:
                    lower = None  # every plan further down changes the result
                if lower is None:
                    add_note(exc, f"videomama: out of memory with memory plan '{plan.name}' after {emitted} "
                                  f"frame(s) were handed out and no lower plan keeps the result; lower the "
                                  "resolution or the window, or free device memory.")
                    raise
                reason = first_line(exc)
            # Outside the except block: the failed attempt's tensors are no longer referenced.
            host.release()
            log.warning(describe_step_down(plan, lower, reason, emitted))
            plan = lower
    finally:
        host.finish(model)
