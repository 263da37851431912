"""Whether the optional ``sam2`` package is there, and the one message that says how to install it."""

from __future__ import annotations

from typing import Any

from ..errors import VideoMaMaError

__all__ = ["MissingDependencyError", "require_sam2", "sam2_available"]

_INSTALL_HELP = (
    "SAM2 tracking needs the 'sam2' Python package: install it into the Python that runs "
    "ComfyUI / this library with `pip install sam2` (tip: `SAM2_BUILD_CUDA=0 pip install "
    "--no-build-isolation sam2` skips compiling its optional CUDA extension and reuses the "
    "installed torch). No CUDA build is needed: without the extension 'sam2._C' only SAM2's "
    "optional filling of tiny holes in the masks is skipped; tracking is otherwise identical."
)


class MissingDependencyError(VideoMaMaError, ImportError):
    """An optional package needed by the requested feature is not installed."""


def sam2_available() -> bool:
    """Whether the ``sam2`` package can be imported (no error raised)."""
    try:
        require_sam2()
    except MissingDependencyError:
        return False
    return True


def require_sam2() -> Any:
    """Import our ``sam2`` extension module, or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        from . import predictor as _sam2_ext
    except ImportError as exc:
        raise MissingDependencyError(f"{_INSTALL_HELP} (import failed: {exc})") from exc
    return _sam2_ext

