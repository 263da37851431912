"""Stand-in for comfy.utils' progress bar (checked against ComfyUI 0.3.64 by tests/test_comfy_standin.py).

A ProgressBar takes the global hook at construction; each update clamps the value to the
total and calls ``hook(value, total, preview, node_id=node_id)``. Under a running server that
hook also raises ComfyUI's interrupt when the user pressed cancel.
"""

from __future__ import annotations

PROGRESS_BAR_HOOK = None


def set_progress_bar_global_hook(function) -> None:
    global PROGRESS_BAR_HOOK
    PROGRESS_BAR_HOOK = function


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0
        self.hook = PROGRESS_BAR_HOOK
        self.node_id = node_id

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)
