"""Access to ComfyUI's own modules, imported lazily so the pack imports cleanly without ComfyUI."""

from __future__ import annotations

from typing import Any


class HostUnavailable(RuntimeError):
    """ComfyUI's own modules cannot be imported (the pack is used outside ComfyUI)."""


def comfy_folder_paths() -> Any | None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return folder_paths


def comfy_mm() -> Any:
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError as exc:
        raise HostUnavailable(
            "ComfyUI's comfy.model_management is not importable: these nodes run inside ComfyUI. "
            "Outside ComfyUI use the library (python -m videomama)."
        ) from exc
    return mm
