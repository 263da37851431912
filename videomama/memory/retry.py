"""Out-of-memory errors: recognising them, freeing memory, and saying what a step down changes."""

from __future__ import annotations

import gc

import torch

from .plans import MemoryPlan

__all__ = ["add_note", "describe_step_down", "first_line", "free_memory", "is_oom_error"]


def is_oom_error(exc: BaseException) -> bool:
    """An out-of-memory error of any torch device (or the CPU allocator's RuntimeError)."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(exc, oom_types):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory() -> None:
    """Collect garbage (tensors of a failed attempt held by reference cycles) and return cached
    device memory to the driver."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def add_note(exc: BaseException, text: str) -> None:
    """Attach a hint to an exception that propagates (shown under the traceback and by our CLI)."""
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(text)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_step_down(plan: MemoryPlan, lower: MemoryPlan, reason: str, resumed_at: int) -> str:
    """The one log line of a retry: both plans, every change, and whether results change."""
    verdict = ("so the result CHANGES" if lower.changes_results
               else "so the result is unchanged (up to float rounding)")
    where = f"resuming at frame {resumed_at}" if resumed_at else "starting again"
    return (f"out of memory with memory plan '{plan.name}' ({reason}); {where} with '{lower.name}': "
            f"{lower.changes_from(plan)}; {verdict}.")
