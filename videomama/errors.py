"""Error types of the library.

Every error a user can cause names the input that is wrong and says how to fix it, so that
the CLI can print it as one line and the ComfyUI nodes can show it as is.
"""

from __future__ import annotations


class VideoMaMaError(Exception):
    """Base class of every error this library raises on purpose."""


class InputError(VideoMaMaError, ValueError):
    """A frame, mask or option is unusable (wrong shape, count, value, NaN ...)."""


class CheckpointError(VideoMaMaError, ValueError):
    """A weight file or folder is missing, corrupt, or not the model it was given as."""


class Cancelled(VideoMaMaError):
    """The caller asked to stop; raised between windows, never half-way through one."""
