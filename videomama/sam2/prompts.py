"""Tracking prompts: points, boxes and keyframe masks per object and frame, parsed and checked.

Nothing here imports ``sam2``: prompts can be checked (and errors shown) before any model is
loaded. Coordinates are source pixels (x to the right, y down, origin at the top-left
corner of the frame). The JSON form read by :func:`parse_prompts`::

    [
      {"frame": 0, "object": 1, "points": [[320, 200], [300, 420]], "labels": [1, 0]},
      {"frame": 0, "object": 1, "positive": [[330, 210]], "negative": [{"x": 20, "y": 30}]},
      {"frame": 10, "object": 2, "box": [100, 80, 260, 400]}
    ]

- ``frame`` (default 0) and ``object`` (default 1) say where the prompt applies; entries with
  the same frame and object are merged.
- ``points`` with ``labels`` (1 = subject, 0 = background; default all 1), and/or
  ``positive`` / ``negative`` point lists; a point is ``[x, y]`` or ``{"x": x, "y": y}``.
- ``box`` is ``[x0, y0, x1, y1]`` (one per object and frame; it may be combined with points).
- A single entry may be given without the surrounding list.
- A bare list of ``{"x": .., "y": ..}`` points (what point-editor nodes such as KJNodes'
  Points Editor emit) is read as positive points of object ``points_object`` on frame
  ``points_frame``; the separate ``positive`` / ``negative`` strings of such editors go to the
  arguments of the same names.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError

log = logging.getLogger(__name__)

__all__ = ["Prompt", "parse_prompts", "parse_integer", "prompt_objects", "validate_prompts"]


@dataclass(frozen=True)
class Prompt:
    """Every input for one object on one frame, in source pixel coordinates.

    points: ``((x, y), ...)`` with ``labels`` (1 = subject, 0 = background).
    box: ``(x0, y0, x1, y1)`` or None.
    mask: a ``(h, w)`` bool tensor (resized to the model by SAM2) or None; a mask excludes
        points and box on the same frame and object.
    """

    frame: int
    object: int = 1
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: torch.Tensor | None = field(default=None, compare=False, repr=False)


_ENTRY_KEYS = {"frame", "object", "points", "labels", "positive", "negative", "box"}
_EXAMPLE = '[{"frame": 0, "object": 1, "points": [[320, 200]], "labels": [1]}, {"frame": 0, "object": 2, "box": [10, 20, 200, 300]}]'


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputError(f"{where} must be a finite number, got {value!r}.")
    return float(value)


def parse_integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise InputError(f"{where} must be an integer, got {value!r}.")
    return int(value)


def _check_frame(frame: int, num_frames: int, where: str) -> None:
    if not 0 <= frame < num_frames:
        raise InputError(f"{where}: frame {frame} is out of range; the clip has {num_frames} frames (0 to {num_frames - 1}).")


def _check_object(obj: int, where: str) -> None:
    if obj < 0:
        raise InputError(f"{where}: object id {obj} must be 0 or more (objects are numbered 1, 2, ...).")


def _check_xy(x: float, y: float, width: int, height: int, where: str) -> None:
    if not (0.0 <= x <= width and 0.0 <= y <= height):
        raise InputError(
            f"{where}: point ({x:g}, {y:g}) is outside the {width}x{height} frame; coordinates are source pixels "
            "with x in [0, width] and y in [0, height] (use normalized=True for fractions of the size)."
        )


def _parse_point(value: Any, where: str, scale: tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, Mapping):
        if "x" not in value or "y" not in value:
            raise InputError(f"{where} must be [x, y] or {{\"x\": x, \"y\": y}}, got {value!r}.")
        x, y = value["x"], value["y"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        x, y = value
    else:
        raise InputError(f"{where} must be [x, y] or {{\"x\": x, \"y\": y}}, got {value!r}.")
    return _number(x, f"{where}.x") * scale[0], _number(y, f"{where}.y") * scale[1]


def _parse_points(value: Any, where: str, scale: tuple[float, float]) -> list[tuple[float, float]]:
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{where} must be a list of points [[x, y], ...], got {type(value).__name__}.")
    return [_parse_point(p, f"{where}[{i}]", scale) for i, p in enumerate(value)]


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if "'" in text and '"' not in text:  # Python repr of a list of dicts, as some nodes emit
            try:
                return json.loads(text.replace("'", '"'))
            except json.JSONDecodeError:
                pass
        raise InputError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (character {exc.pos}). "
            f"Example of the expected form: {_EXAMPLE}"
        ) from exc


def _is_xy_list(data: Any) -> bool:
    return (
        isinstance(data, list)
        and len(data) > 0
        and all(isinstance(p, Mapping) and set(p) == {"x", "y"} for p in data)
    )


@dataclass
class _Draft:
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    mask: torch.Tensor | None = None
    where: str = ""


def parse_prompts(
    text: str | None,
    num_frames: int,
    height: int,
    width: int,
    *,
    positive: str | None = None,
    negative: str | None = None,
    points_frame: int = 0,
    points_object: int = 1,
    box: Sequence[float] | None = None,
    mask: Any = None,
    mask_frame: int = 0,
    mask_object: int = 1,
    normalized: bool = False,
) -> list[Prompt]:
    """Parse and check tracking prompts; see the module docstring for the JSON form.

    text: the prompt JSON (may be empty/None when the other arguments give prompts).
    num_frames, height, width: the clip the prompts are for (used for the range checks).
    positive, negative: point-editor strings such as ``'[{"x": 100, "y": 200}, ...]'``
        (or ``[[x, y], ...]``), applied to object ``points_object`` on frame ``points_frame``.
    box: ``(x0, y0, x1, y1)`` for the same object and frame (e.g. the first BBOX of an editor).
    mask: a keyframe mask ``(h, w)`` or ``(1, h, w)`` (tensor or array, > 0.5 = subject) for
        object ``mask_object`` on frame ``mask_frame``; resized to the model as needed.
    normalized: coordinates of points and boxes are fractions of width/height instead of pixels.

    Returns one :class:`Prompt` per (frame, object), sorted. Raises :class:`InputError` saying
    where the problem is: malformed JSON, unknown keys, points outside the frame, frame out of
    range, a mask together with points for the same object and frame, or no prompt at all.
    """
    if num_frames < 1:
        raise InputError("the clip has no frames; give at least one frame to track.")
    scale = (float(width), float(height)) if normalized else (1.0, 1.0)
    drafts: dict[tuple[int, int], _Draft] = {}

    def draft(frame: int, obj: int, where: str) -> _Draft:
        _check_frame(frame, num_frames, where)
        _check_object(obj, where)
        d = drafts.setdefault((frame, obj), _Draft(where=where))
        return d

    def add_points(d: _Draft, pts: list[tuple[float, float]], labels: list[int], where: str) -> None:
        for i, (x, y) in enumerate(pts):
            _check_xy(x, y, width, height, f"{where}[{i}]")
        d.points.extend(pts)
        d.labels.extend(labels)

    def set_box(d: _Draft, value: Any, where: str, frame: int, obj: int) -> None:
        if not isinstance(value, (list, tuple)) or len(value) != 4:
            raise InputError(f"{where} must be [x0, y0, x1, y1], got {value!r}.")
        x0, y0, x1, y1 = (_number(v, f"{where}[{i}]") for i, v in enumerate(value))
        x0, x1 = x0 * scale[0], x1 * scale[0]
        y0, y1 = y0 * scale[1], y1 * scale[1]
        _check_xy(x0, y0, width, height, where)
        _check_xy(x1, y1, width, height, where)
        if not (x1 > x0 and y1 > y0):
            raise InputError(f"{where}: box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is empty; give [x0, y0, x1, y1] with x1 > x0 and y1 > y0.")
        if d.box is not None:
            raise InputError(f"{where}: object {obj} already has a box on frame {frame}; SAM2 takes one box per object and frame (use another object id).")
        d.box = (x0, y0, x1, y1)

    # 1. the JSON text
    if text is not None and text.strip():
        data = _loads(text.strip(), "prompts")
        if isinstance(data, Mapping):
            data = [data]
        if _is_xy_list(data):
            pts = _parse_points(data, "prompts", scale)
            add_points(draft(points_frame, points_object, "prompts"), pts, [1] * len(pts), "prompts")
            data = []
        if not isinstance(data, list):
            raise InputError(f"prompts must be a JSON list of prompt objects, got {type(data).__name__}. Example: {_EXAMPLE}")
        for n, entry in enumerate(data):
            where = f"prompts[{n}]"
            if not isinstance(entry, Mapping):
                raise InputError(f"{where} must be an object like {{\"frame\": 0, \"object\": 1, \"points\": [[x, y]]}}, got {entry!r}.")
            unknown = sorted(set(entry) - _ENTRY_KEYS)
            if unknown:
                raise InputError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(_ENTRY_KEYS)}.")
            frame = parse_integer(entry.get("frame", 0), f"{where}.frame")
            obj = parse_integer(entry.get("object", 1), f"{where}.object")
            d = draft(frame, obj, where)
            if not any(k in entry for k in ("points", "positive", "negative", "box")):
                raise InputError(f"{where} has no 'points', 'positive', 'negative' or 'box'; give at least one.")
            if "points" in entry:
                pts = _parse_points(entry["points"], f"{where}.points", scale)
                labels_raw = entry.get("labels", [1] * len(pts))
                if not isinstance(labels_raw, (list, tuple)) or len(labels_raw) != len(pts):
                    raise InputError(f"{where}.labels must be a list with one label per point ({len(pts)}), got {labels_raw!r}.")
                labels = [parse_integer(v, f"{where}.labels[{i}]") for i, v in enumerate(labels_raw)]
                if any(v not in (0, 1) for v in labels):
                    raise InputError(f"{where}.labels must be 1 (subject) or 0 (background), got {labels}.")
                add_points(d, pts, labels, f"{where}.points")
            elif "labels" in entry:
                raise InputError(f"{where} has 'labels' but no 'points'.")
            for key, label in (("positive", 1), ("negative", 0)):
                if key in entry:
                    pts = _parse_points(entry[key], f"{where}.{key}", scale)
                    add_points(d, pts, [label] * len(pts), f"{where}.{key}")
            if "box" in entry:
                set_box(d, entry["box"], f"{where}.box", frame, obj)

    # 2. point-editor strings and a box for (points_frame, points_object)
    for name, label, value in (("positive", 1, positive), ("negative", 0, negative)):
        if value is None or not str(value).strip():
            continue
        data = _loads(str(value).strip(), name)
        pts = _parse_points(data, name, scale)
        if pts:
            add_points(draft(points_frame, points_object, name), pts, [label] * len(pts), name)
    if box is not None:
        set_box(draft(points_frame, points_object, "box"), list(box), "box", points_frame, points_object)

    # 3. a keyframe mask
    if mask is not None:
        d = draft(mask_frame, mask_object, "mask")
        d.mask = _mask_prompt(mask, "mask")

    prompts = _finish(drafts)
    validate_prompts(prompts, num_frames, height, width)
    return prompts


def _mask_prompt(mask: Any, where: str) -> torch.Tensor:
    m = torch.as_tensor(mask)
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise InputError(f"{where} must be one (H, W) mask, got shape {tuple(m.shape)}; pick one frame of a MASK batch.")
    if m.dtype != torch.bool:
        m = m.float()
        if not torch.isfinite(m).all():
            raise InputError(f"{where} contains NaN or infinite values.")
        m = m > 0.5
    return m.cpu()


def _finish(drafts: Mapping[tuple[int, int], _Draft]) -> list[Prompt]:
    prompts = []
    for (frame, obj), d in sorted(drafts.items()):
        if d.mask is not None and (d.points or d.box is not None):
            raise InputError(
                f"object {obj} on frame {frame} has both a mask and points/box ({d.where}); SAM2 takes one or the "
                "other per object and frame: drop one, or prompt the other on another frame or object."
            )
        prompts.append(
            Prompt(frame=frame, object=obj, points=tuple(d.points), labels=tuple(d.labels), box=d.box, mask=d.mask)
        )
    if not prompts:
        raise InputError(
            "no prompts: give at least one point, box or mask (prompts JSON, positive/negative points, box or mask). "
            f"Example: {_EXAMPLE}"
        )
    return prompts


def validate_prompts(prompts: Sequence[Prompt], num_frames: int, height: int, width: int) -> None:
    """Check prompts (e.g. built by hand) against a clip; raises :class:`InputError`."""
    if not prompts:
        raise InputError(f"no prompts: give at least one point, box or mask. Example: {_EXAMPLE}")
    seen: set[tuple[int, int]] = set()
    for p in prompts:
        where = f"prompt for object {p.object} on frame {p.frame}"
        _check_frame(p.frame, num_frames, where)
        _check_object(p.object, where)
        if (p.frame, p.object) in seen:
            raise InputError(f"{where} is given twice; merge them into one Prompt.")
        seen.add((p.frame, p.object))
        if len(p.points) != len(p.labels):
            raise InputError(f"{where}: {len(p.points)} points but {len(p.labels)} labels.")
        for i, (x, y) in enumerate(p.points):
            _check_xy(x, y, width, height, f"{where}, point {i}")
        if any(v not in (0, 1) for v in p.labels):
            raise InputError(f"{where}: labels must be 1 (subject) or 0 (background), got {list(p.labels)}.")
        if p.box is not None:
            x0, y0, x1, y1 = p.box
            _check_xy(x0, y0, width, height, f"{where}, box")
            _check_xy(x1, y1, width, height, f"{where}, box")
            if not (x1 > x0 and y1 > y0):
                raise InputError(f"{where}: box {list(p.box)} is empty; x1 > x0 and y1 > y0 are needed.")
        if p.mask is not None:
            if p.points or p.box is not None:
                raise InputError(f"{where} has both a mask and points/box; SAM2 takes one or the other.")
            if p.mask.dim() != 2:
                raise InputError(f"{where}: the mask must be (H, W), got shape {tuple(p.mask.shape)}.")
            mh, mw = p.mask.shape
            if abs(mh / mw - height / width) > 0.02 * height / width:
                log.warning("%s: the mask is %dx%d but frames are %dx%d; it is stretched to the frame.", where, mw, mh, width, height)
            if not bool(p.mask.any()):
                log.warning("%s: the mask is empty, which tells SAM2 the object is absent on that frame.", where)
        elif not p.points and p.box is None:
            raise InputError(f"{where} has no points, box or mask.")
    by_object: dict[int, bool] = {}
    for p in prompts:
        positive = p.mask is not None or p.box is not None or any(v == 1 for v in p.labels)
        by_object[p.object] = by_object.get(p.object, False) or positive
    for obj, ok in by_object.items():
        if not ok:
            log.warning("object %d has only background (label 0) points; SAM2 will probably find nothing for it.", obj)


def prompt_objects(prompts: Sequence[Prompt]) -> list[int]:
    """The object ids the prompts define, sorted."""
    return sorted({p.object for p in prompts})
