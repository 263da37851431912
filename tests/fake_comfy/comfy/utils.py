"""Stand-in for comfy.utils.ProgressBar; every update is recorded in ``UPDATES``."""

from __future__ import annotations

UPDATES: list[tuple[int, int]] = []
HOOK = None  # tests may set a callable(value, total) that runs on each update, as the server's hook


class ProgressBar:
    def __init__(self, total, node_id=None):
        self.total = total
        self.current = 0

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        UPDATES.append((self.current, self.total))
        if HOOK is not None:
            HOOK(self.current, self.total)

    def update(self, value):
        self.update_absolute(self.current + value)
