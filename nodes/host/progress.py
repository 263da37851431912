"""Progress bars and the cancel button: the library's progress/cancel callbacks on ComfyUI's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ...videomama.errors import Cancelled
from .comfy import comfy_mm


class Progress:
    """A library ``progress(done, total)`` callback driving ComfyUI's progress bar.

    Under a running server each update also checks the user's cancel button (ComfyUI's hook
    raises its InterruptProcessingException there).
    """

    def __init__(self, total: int):
        import comfy.utils  # type: ignore[import-not-found]

        self.bar = comfy.utils.ProgressBar(int(total))
        self.calls = 0

    def __call__(self, done: int, total: int) -> None:
        self.calls += 1
        self.bar.update_absolute(int(done), int(total))


def should_cancel() -> bool:
    """The library's ``should_cancel``: has the user pressed cancel (POST /interrupt)?"""
    return bool(comfy_mm().processing_interrupted())


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn the library's :class:`Cancelled` into ComfyUI's interrupt, so the run ends as
    'interrupted' (not as an error) and the flag is cleared for the next run."""
    try:
        yield
    except Cancelled as exc:
        mm = comfy_mm()
        mm.throw_exception_if_processing_interrupted()  # raises and clears the flag
        raise mm.InterruptProcessingException() from exc


def progress_and_cancel(total: int) -> tuple[Callable[[int, int], None], Callable[[], bool]]:
    return Progress(total), should_cancel
