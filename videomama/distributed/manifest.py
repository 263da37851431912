"""The batch manifest: which shots to matte, where their frames and masks are, per-shot options.

A JSON list of objects or a CSV file with a header row; both carry the same fields:

    name      the shot's output folder under --out (one path component, unique)
    frames    folder of images or a video file
    masks     folder of mask images or a mask video
    resolution, window, overlap, seed, posterior, mask_threshold, crop   optional, override the
              command line's defaults for this shot (an empty CSV cell keeps the default)

Relative paths are taken from the manifest's own folder, so a manifest can travel with its
shots. A manifest that cannot be read, or whose entries are malformed, is refused as a whole
before any work (one line naming the entry and the fix); option *values* are checked per shot,
so one bad shot fails alone.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..options import MatteOptions

__all__ = ["OPTION_FIELDS", "ShotEntry", "load_manifest", "parse_manifest"]

OPTION_FIELDS: dict[str, type] = {"resolution": int, "window": int, "overlap": int, "seed": int,
                                  "posterior": str, "mask_threshold": float, "crop": str}
"""Per-shot options a manifest may set, with their types (the MatteOptions fields of the same names)."""

_REQUIRED = ("name", "frames", "masks")


@dataclass(frozen=True)
class ShotEntry:
    """One shot of a manifest (paths absolute; ``options`` as written, checked by :meth:`matte_options`)."""

    name: str
    frames: Path
    masks: Path
    options: dict[str, Any] = field(default_factory=dict)

    def matte_options(self, defaults: MatteOptions) -> MatteOptions:
        """The shot's MatteOptions: ``defaults`` with this shot's overrides (InputError naming the shot)."""
        values = {key: _convert(key, raw, self.name) for key, raw in self.options.items()}
        try:
            return dataclasses.replace(defaults, **values)
        except InputError as exc:
            raise InputError(f"shot '{self.name}': {exc}") from None


def load_manifest(path: str | os.PathLike[str]) -> list[ShotEntry]:
    """Read a manifest file (``.csv``: CSV; anything else: JSON)."""
    source = Path(path).expanduser()
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"MANIFEST '{source}' does not exist; give a JSON or CSV file listing the shots.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"MANIFEST '{source}' cannot be read ({exc}); give a UTF-8 JSON or CSV file.") from None
    return parse_manifest(text, source.resolve().parent, csv_format=source.suffix.lower() == ".csv", name=str(source))


def parse_manifest(text: str, base: Path, *, csv_format: bool = False, name: str = "MANIFEST") -> list[ShotEntry]:
    """Entries of a manifest's text; relative paths are taken from ``base``."""
    rows = _csv_rows(text, name) if csv_format else _json_rows(text, name)
    if not rows:
        raise InputError(f"{name} lists no shots; add at least one entry with name, frames and masks.")
    entries: list[ShotEntry] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        where = f"{name} entry {number}"
        if not isinstance(row, dict):
            raise InputError(f"{where} is {type(row).__name__}, not an object with name, frames and masks.")
        row = {str(k).strip().replace("-", "_"): v for k, v in row.items()}
        unknown = sorted(set(row) - set(_REQUIRED) - set(OPTION_FIELDS))
        if unknown:
            raise InputError(f"{where} has unknown field(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join((*_REQUIRED, *OPTION_FIELDS))}.")
        missing = [k for k in _REQUIRED if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise InputError(f"{where} has no {' / '.join(missing)}; every shot needs name, frames and masks.")
        shot = row["name"].strip()
        _check_name(shot, where)
        key = shot.casefold()  # two names differing in case are one folder on some file systems
        if key in seen:
            raise InputError(f"{where}: the name '{shot}' is already used by entry {seen[key]}; give each shot its own name.")
        seen[key] = number
        options = {k: v for k, v in row.items() if k in OPTION_FIELDS and v is not None and v != ""}
        entries.append(ShotEntry(shot, _path(row["frames"], base), _path(row["masks"], base), options))
    return entries


def _json_rows(text: str, name: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}); write a list of shots, "
                         "or give a .csv file.") from None
    if not isinstance(data, list):
        raise InputError(f"{name} holds a JSON {type(data).__name__}; write a list of shots: "
                         '[{"name": ..., "frames": ..., "masks": ...}, ...].')
    return data


def _csv_rows(text: str, name: str) -> list[Any]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or any(k not in [f.strip() for f in reader.fieldnames] for k in _REQUIRED):
        raise InputError(f"{name} needs a header row with at least the columns name,frames,masks.")
    rows = []
    for row in reader:
        if None in row:
            raise InputError(f"{name} line {reader.line_num} has more cells than the header; quote paths with commas.")
        cells = {k: (v or "").strip() for k, v in row.items()}
        if any(cells.values()):  # blank lines are skipped
            rows.append(cells)
    return rows


def _convert(key: str, raw: Any, shot: str) -> Any:
    """A manifest value (JSON value or CSV text) as the option's type."""
    kind = OPTION_FIELDS[key]
    if kind is str and isinstance(raw, str):
        return raw.strip()
    if kind is not str and not isinstance(raw, bool):
        try:
            if kind is int and isinstance(raw, float):
                if raw.is_integer():
                    return int(raw)
            else:
                return kind(raw)
        except (TypeError, ValueError):
            pass
    what = {int: "an integer", float: "a number", str: "text"}[kind]
    raise InputError(f"shot '{shot}': {key}={raw!r} is not {what}; fix it in the manifest.")


def _check_name(shot: str, where: str) -> None:
    bad = ("/" in shot or "\\" in shot or shot in (".", "..") or shot.startswith(".") or any(ord(c) < 32 for c in shot))
    if bad:
        raise InputError(f"{where}: the name '{shot}' is not a plain folder name; use letters, digits, '_', '-' "
                         "(no slashes, not starting with '.').")


def _path(value: str, base: Path) -> Path:
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else base / path
