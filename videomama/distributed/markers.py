"""Completion markers: a rerun of a batch skips the shots that are finished with the same settings.

A shot's marker (``DIR/<name>/.videomama-batch.json``) is written only after its alpha folder
was committed (one rename, see ``videomama.io.writers.AlphaSequenceWriter``), and removed
before the shot is started again; so a run killed at any point leaves no shot that looks
complete, and the next run redoes exactly the unfinished ones. The marker holds a hash of
everything that decides the result (inputs, options, weight files, settings, version); a
shot whose settings changed is redone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import __version__
from ..options import MatteOptions
from ..shots import ShotFiles, ShotSettings

__all__ = ["MARKER_NAME", "clear_shot", "is_complete", "mark_complete", "result_key"]

MARKER_NAME = ".videomama-batch.json"
ALPHA_FOLDER = "alpha"  # the folder matte_shot commits under the shot's output folder


def result_key(frames: Path, masks: Path, num_frames: int, options: MatteOptions, settings: ShotSettings,
               files: ShotFiles | None = None) -> str:
    """A hash of what decides a shot's output: a different key means the shot must be redone."""
    described: dict[str, Any] = {
        "version": __version__,
        "frames": str(Path(frames).resolve()),
        "masks": str(Path(masks).resolve()),
        "num_frames": num_frames,
        "options": dataclasses.asdict(options),
        "settings": dataclasses.asdict(settings),
        # Another frame range, transfer or output format writes other files.
        "files": dataclasses.asdict(files or ShotFiles()),
        # Weight files replaced under the same name give other mattes.
        "weights": [_file_stamp(p) for p in (settings.unet, settings.vae) if p is not None],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _file_stamp(path: str) -> list[Any]:
    p = Path(path).expanduser()
    if not p.is_file():
        return [str(p)]
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def is_complete(out_dir: Path, key: str) -> bool:
    """True when the shot in ``out_dir`` was finished with the settings ``key`` stands for."""
    try:
        marker = json.loads((out_dir / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("key") == key and (out_dir / ALPHA_FOLDER).is_dir()


def clear_shot(out_dir: Path) -> None:
    """Before a shot starts: drop its marker and what killed runs left staged (only this shot's folder)."""
    (out_dir / MARKER_NAME).unlink(missing_ok=True)
    if out_dir.is_dir():
        for staged in out_dir.glob(".*.partial-*"):
            if staged.is_dir():
                shutil.rmtree(staged, ignore_errors=True)
            else:
                staged.unlink(missing_ok=True)


def mark_complete(out_dir: Path, key: str, num_frames: int, seconds: float) -> None:
    """After the commit: write the marker in one rename (never half-written)."""
    handle, staged = tempfile.mkstemp(prefix=f"{MARKER_NAME}.partial-", dir=out_dir)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump({"key": key, "frames": num_frames, "seconds": round(seconds, 3), "version": __version__}, f)
        os.replace(staged, out_dir / MARKER_NAME)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
