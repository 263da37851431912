"""Model folders: registering models/videomama and models/sam2, listing what is in them, resolving a choice.

Files and diffusers folders are identified by the library's checkpoint identification (from
their tensors and config.json), cached by path, size and modification time, so a listing
re-reads nothing that did not change.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...videomama.errors import CheckpointError, InputError
from ...videomama.weights.files import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES
from .comfy import comfy_folder_paths

log = logging.getLogger(__name__)

VIDEOMAMA_FOLDER = "videomama"
SAM2_FOLDER = "sam2"
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
_MAX_FOLDER_DEPTH = 4  # how deep we look for diffusers folders (config.json) under a models folder


# What an empty model list shows: short, so the combo keeps its label on a normal-width node.
# The error raised when one is picked (and the inputs' tooltips) say where the files go.
UNET_PLACEHOLDER = "(no UNet found)"
VAE_PLACEHOLDER = "(no VAE found)"
SAM2_PLACEHOLDER = "(no SAM2 found)"
_WHERE_FILES_GO = {
    UNET_PLACEHOLDER: "Put the 'unet' folder of the SammyLim/VideoMaMa release into ComfyUI/models/videomama",
    VAE_PLACEHOLDER: "Put svd_xt.safetensors or svd_xt_1_1.safetensors into ComfyUI/models/checkpoints, or the "
                     "'vae' folder of stable-video-diffusion-img2vid-xt into ComfyUI/models/videomama",
    SAM2_PLACEHOLDER: "Put an official SAM2/SAM2.1 .pt (e.g. sam2.1_hiera_tiny.pt) into ComfyUI/models/sam2",
}


def register_model_folders() -> None:
    """Register ``models/videomama`` and ``models/sam2`` with ComfyUI.

    ``add_model_folder_path`` appends to a name that ``extra_model_paths.yaml`` already defined
    (those entries stay first) and creates it otherwise; nothing is replaced. No-op outside
    ComfyUI.
    """
    fp = comfy_folder_paths()
    if fp is None:
        return
    for name in (VIDEOMAMA_FOLDER, SAM2_FOLDER):
        fp.add_model_folder_path(name, os.path.join(fp.models_dir, name))


def _dirs(folder: str) -> list[Path]:
    fp = comfy_folder_paths()
    if fp is None:
        return []
    try:
        return [Path(d) for d in fp.get_folder_paths(folder)]
    except KeyError:  # a folder name this ComfyUI does not know (e.g. an old version)
        return []


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk with a depth limit, following symlinks, skipping hidden folders."""
    if not root.is_dir():
        return
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if len(here.parts) - base_depth >= _MAX_FOLDER_DEPTH:
            dirnames[:] = []
        yield here, dirnames, filenames


@functools.lru_cache(maxsize=4096)
def _identified(path: str, size: int, mtime_ns: int) -> str:
    """The library's identification of a weight file or diffusers folder, cached by size and mtime.

    Safetensors files are identified from their header (cheap); folders from their config.json.
    """
    from ...videomama.weights.checkpoints import identify

    try:
        info = identify(path)
    except Exception as exc:
        log.debug("cannot identify %s: %s", path, exc)
        return "unreadable"
    if info.kind == "svd_checkpoint":
        return "svd_checkpoint_with_vae" if info.has_vae else "svd_checkpoint"
    return info.kind


def _kind(path: Path) -> str | None:
    """What a listed path holds; None for pickles (reading one costs a full unpickle: they are
    identified when loaded)."""
    if path.is_dir():
        stamp = path / "config.json"
    elif path.suffix.lower() in SAFETENSORS_SUFFIXES:
        stamp = path
    else:
        return None
    try:
        st = stamp.stat()
    except OSError:
        return "unreadable"
    return _identified(str(path), st.st_size, st.st_mtime_ns)


@dataclass
class _Listing:
    files: list[tuple[str, Path]] = field(default_factory=list)  # (label, path)
    folders: list[tuple[str, Path, str]] = field(default_factory=list)  # (label, path, kind)


def _scan(folder: str) -> _Listing:
    """Weight files and diffusers model folders under every directory registered as ``folder``.

    Labels are ``<folder>/<path relative to that directory>`` with forward slashes. Files
    inside a diffusers folder (one holding config.json) belong to that folder, not the list.
    """
    out = _Listing()
    seen: set[str] = set()
    for root in _dirs(folder):
        for here, _dirnames, filenames in _walk(root):
            rel = here.relative_to(root).as_posix()
            if "config.json" in filenames:
                label = f"{folder}/{rel}"
                if rel != "." and label not in seen:
                    seen.add(label)
                    out.folders.append((label, here, _kind(here) or "unknown"))
                continue  # weights next to a config.json are that folder's
            for name in sorted(filenames):
                if not name.lower().endswith(WEIGHT_SUFFIXES):
                    continue
                label = f"{folder}/{name}" if rel == "." else f"{folder}/{rel}/{name}"
                if label not in seen:
                    seen.add(label)
                    out.files.append((label, here / name))
    return out


def unet_choices() -> list[str]:
    """VideoMaMa UNets: diffusers folders (12-channel UNetSpatioTemporalConditionModel config.json)
    and weight files under models/videomama and models/diffusion_models (safetensors are
    checked by their tensor names; pickles only by their folder/name). Never empty."""
    labels: list[str] = []
    for folder in (VIDEOMAMA_FOLDER, "diffusion_models", "diffusers"):
        listing = _scan(folder)
        labels += [label for label, _, kind in listing.folders if kind == "videomama_unet"]
        if folder == "diffusers":
            continue
        for label, path in listing.files:
            kind = _kind(path)
            if kind == "videomama_unet":
                labels.append(label)
            elif kind is None and (folder == VIDEOMAMA_FOLDER or "videomama" in path.name.lower()):
                labels.append(label)  # a pickle: identified when loaded
    return sorted(dict.fromkeys(labels)) or [UNET_PLACEHOLDER]


def vae_choices() -> list[str]:
    """SVD's temporal VAE: svd*.safetensors single-file checkpoints under models/checkpoints,
    VAE files under models/vae and models/videomama, and diffusers vae/ folders. Never empty."""
    labels: list[str] = []
    for folder in (VIDEOMAMA_FOLDER, "checkpoints", "vae", "diffusers"):
        listing = _scan(folder)
        labels += [label for label, _, kind in listing.folders if kind == "temporal_vae"]
        for label, path in listing.files:
            if folder == "checkpoints" and not re.search(r"svd", path.name, re.IGNORECASE):
                continue  # only Stable Video Diffusion checkpoints carry this VAE
            kind = _kind(path)
            if kind in ("temporal_vae", "svd_checkpoint_with_vae") or kind is None and (folder == VIDEOMAMA_FOLDER or re.search(r"svd", path.name, re.IGNORECASE)):
                labels.append(label)
    return sorted(dict.fromkeys(labels)) or [VAE_PLACEHOLDER]


def sam2_choices() -> list[str]:
    """SAM2 / SAM2.1 / SAM2-Matte checkpoints (.pt or .safetensors) under models/sam2. Never empty."""
    labels = [label for label, _ in _scan(SAM2_FOLDER).files]
    return sorted(labels) or [SAM2_PLACEHOLDER]


def resolve_choice(label: str, what: str) -> Path:
    """The path behind a label from :func:`unet_choices` / :func:`vae_choices` / :func:`sam2_choices`.

    Raises CheckpointError that says what to put where for a placeholder or a vanished file.
    """
    if label in _WHERE_FILES_GO:
        raise CheckpointError(f"{what}: no weights were found. {_WHERE_FILES_GO[label]}, then press R to refresh.")
    folder, _, rel = label.partition("/")
    searched = _dirs(folder)
    for root in searched:
        candidate = root / rel
        if rel and ".." not in Path(rel).parts and candidate.exists():
            return candidate
    where = ", ".join(str(d) for d in searched) or f"models/{folder} (not registered in this ComfyUI)"
    raise CheckpointError(
        f"{what}: '{label}' was not found (looked in {where}). It may have been moved or deleted; "
        "press R in ComfyUI to refresh the list and pick the file again."
    )


@dataclass(frozen=True)
class OutputSequence:
    """Where a save node writes one run: ``folder/<stem>_<counter:05>_.<frame>.<ext>`` (ComfyUI's
    own counter, so a later run never overwrites this one), and the subfolder the UI names."""

    folder: Path
    stem: str
    subfolder: str


def output_sequence(filename_prefix: str) -> OutputSequence:
    """The output folder and file stem for ``filename_prefix`` (may contain subfolders), as ComfyUI's
    SaveImage resolves it; a prefix that leaves the output folder is one clear error."""
    fp = comfy_folder_paths()
    if fp is None:
        raise InputError("saving needs ComfyUI's output folder: this node runs inside ComfyUI.")
    out = fp.get_output_directory()
    try:
        folder, filename, counter, subfolder, _prefix = fp.get_save_image_path(filename_prefix, out)
    except Exception:  # ComfyUI raises a bare Exception for a prefix outside the output folder
        raise InputError(f"filename_prefix '{filename_prefix}' points outside ComfyUI's output folder; give a "
                         "name like 'videomama/shot010'.") from None
    return OutputSequence(Path(folder), f"{filename}_{counter:05d}_", subfolder)
