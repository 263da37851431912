"""Stand-in for ``comfy_api.latest.io`` (ComfyUI's V3 node schema), tests only.

Only what this pack's nodes use: ``ComfyNode`` with ``define_schema``/``execute``, ``Schema``,
the socket and widget types (Image, Mask, Int, Float, Boolean, String, Combo, ``Custom``),
``NodeOutput`` and ``Hidden``. ``ComfyNode.GET_NODE_INFO_V1()`` turns a schema into the
dictionary GET /object_info serves, following the rules recorded from ComfyUI 0.3.64:

* an input is ``[io_type, options]`` under "required" or "optional"; options drop every
  unset (None) field, keep ``False`` ones (e.g. ``multiline: false``) and never include
  "optional" itself; a combo's io_type is "COMBO" and its choices are ``options``;
* ``input_order`` lists the inputs of each section in schema order;
* ``output_name`` is an output's display_name, else its io_type; ``output_tooltips`` has None
  for outputs without a tooltip; outputs without an id get ``_<index>_<io_type>_``;
* an output node gets the hidden inputs "prompt" and "extra_pnginfo".

This host has neither ``Schema.search_aliases`` nor ``ControlAfterGenerate`` (both came after
0.3.64); nodes must work without them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from enum import Enum
from typing import Any


def _set_only(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class NumberDisplay(str, Enum):
    number = "number"
    slider = "slider"


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"


# ------------------------------------------------------------------------------------------ inputs / outputs
class Input:
    io_type = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None):
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = dict(extra_dict or {})

    def options(self) -> dict[str, Any]:
        base = {"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                "lazy": self.lazy}
        return _set_only(base) | _set_only(self.extra_dict)

    def socket_type(self) -> str:
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                 socketless: bool | None = None, force_input: bool | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy)
        self.default = default
        self.socketless = socketless
        self.force_input = force_input

    def options(self) -> dict[str, Any]:
        return super().options() | _set_only(
            {"default": self.default, "socketless": self.socketless, "forceInput": self.force_input})


class Output:
    io_type = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list


def _type(name: str, input_cls: type = Input) -> type:
    """A V3 type: a class with ``io_type`` and nested ``Input``/``Output`` classes bound to it."""
    inp = type("Input", (input_cls,), {"io_type": name})
    out = type("Output", (Output,), {"io_type": name})
    return type(name.title(), (), {"io_type": name, "Input": inp, "Output": out})


def Custom(io_type: str) -> type:
    """A socket type known only by its name (its wire type is this string)."""
    return _type(io_type)


Image = _type("IMAGE")
Mask = _type("MASK")


class _IntInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: int | None = None, min: int | None = None,
                 max: int | None = None, step: int | None = None, control_after_generate: bool | None = None,
                 display_mode: NumberDisplay | None = None, socketless: bool | None = None,
                 force_input: bool | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, force_input)
        self.range = {"min": min, "max": max, "step": step}
        self.control_after_generate = control_after_generate
        self.display_mode = display_mode

    def options(self) -> dict[str, Any]:
        return super().options() | _set_only({
            **self.range, "control_after_generate": self.control_after_generate,
            "display": self.display_mode.value if self.display_mode else None})


class _FloatInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: float | None = None, min: float | None = None,
                 max: float | None = None, step: float | None = None, round: float | None = None,
                 display_mode: NumberDisplay | None = None, socketless: bool | None = None,
                 force_input: bool | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, force_input)
        self.range = {"min": min, "max": max, "step": step, "round": round}
        self.display_mode = display_mode

    def options(self) -> dict[str, Any]:
        return super().options() | _set_only({**self.range, "display": self.display_mode})


class _StringInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, multiline: bool = False, placeholder: str | None = None,
                 default: str | None = None, dynamic_prompts: bool | None = None, socketless: bool | None = None,
                 force_input: bool | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, force_input)
        self.multiline = multiline
        self.placeholder = placeholder
        self.dynamic_prompts = dynamic_prompts

    def options(self) -> dict[str, Any]:
        return super().options() | _set_only(
            {"multiline": self.multiline, "placeholder": self.placeholder, "dynamicPrompts": self.dynamic_prompts})


class _BooleanInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 lazy: bool | None = None, default: bool | None = None, label_on: str | None = None,
                 label_off: str | None = None, socketless: bool | None = None, force_input: bool | None = None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, force_input)
        self.labels = {"label_on": label_on, "label_off": label_off}

    def options(self) -> dict[str, Any]:
        return super().options() | _set_only(self.labels)


class _ComboInput(WidgetInput):
    def __init__(self, id: str, options: list | type[Enum] | None = None, display_name: str | None = None,
                 optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                 default: Any = None, control_after_generate: bool | None = None, socketless: bool | None = None):
        if isinstance(options, type) and issubclass(options, Enum):
            options = [member.value for member in options]
        if isinstance(default, Enum):
            default = default.value
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
        self.choices = options
        self.control_after_generate = control_after_generate

    def options(self) -> dict[str, Any]:
        return super().options() | _set_only({
            "multiselect": False, "options": self.choices, "control_after_generate": self.control_after_generate})


Int = _type("INT", _IntInput)
Float = _type("FLOAT", _FloatInput)
String = _type("STRING", _StringInput)
Boolean = _type("BOOLEAN", _BooleanInput)
Combo = _type("COMBO", _ComboInput)


# ------------------------------------------------------------------------------------------ schema
@dataclasses.dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] | None = None
    outputs: list[Output] | None = None
    hidden: list[Hidden] | None = None
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def finalize(self) -> None:
        if self.is_output_node:
            self.hidden = list(self.hidden or [])
            for h in (Hidden.prompt, Hidden.extra_pnginfo):
                if h not in self.hidden:
                    self.hidden.append(h)
        for i, out in enumerate(self.outputs or []):
            if out.id is None:
                out.id = f"_{i}_{out.io_type}_"

    def validate(self) -> None:
        inputs = [i.id for i in self.inputs or []]
        outputs = [o.id for o in self.outputs or []]
        problems = [f"{what} ids must be unique: {sorted(k for k, n in Counter(ids).items() if n > 1)}"
                    for what, ids in (("input", inputs), ("output", outputs)) if len(set(ids)) != len(ids)]
        if set(inputs) & set(outputs):
            problems.append(f"ids shared by inputs and outputs: {sorted(set(inputs) & set(outputs))}")
        if problems:
            raise ValueError("; ".join(problems))

    def info_v1(self, python_module: str) -> dict[str, Any]:
        sections: dict[str, dict[str, Any]] = {"required": {}}
        for inp in self.inputs or []:
            opts = inp.options()
            opts.pop("optional", None)
            sections.setdefault("optional" if inp.optional else "required", {})[inp.id] = (inp.socket_type(), opts)
        for h in self.hidden or []:
            sections.setdefault("hidden", {})[h.name] = (h.value,)
        outputs = self.outputs or []
        return {
            "input": sections,
            "input_order": {k: list(v) for k, v in sections.items()},
            "output": [o.io_type for o in outputs],
            "output_is_list": [o.is_output_list for o in outputs],
            "output_name": [o.display_name or o.io_type for o in outputs],
            "output_tooltips": [o.tooltip or None for o in outputs],
            "name": self.node_id,
            "display_name": self.display_name,
            "description": self.description,
            "python_module": python_module,
            "category": self.category,
            "output_node": self.is_output_node,
            "deprecated": self.is_deprecated,
            "experimental": self.is_experimental,
            "api_node": self.is_api_node,
        }


# ------------------------------------------------------------------------------------------ nodes
class NodeOutput:
    def __init__(self, *args: Any, ui: Any = None, expand: Any = None, block_execution: str | None = None):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple | None:
        return self.args or None

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


class ComfyNode:
    """Base of V3 nodes. ComfyUI runs ``execute`` on a locked clone of the class, never on an instance."""

    RELATIVE_PYTHON_MODULE: str | None = None
    SCHEMA: Schema | None = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        for name in ("define_schema", "execute"):
            if getattr(cls, name).__func__ is getattr(ComfyNode, name).__func__:
                raise Exception(f"No {name} function was defined for node class {cls.__name__}.")
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict[str, Any]:
        return cls.GET_SCHEMA().info_v1(cls.RELATIVE_PYTHON_MODULE or "nodes")

    @classmethod
    def EXECUTE_NORMALIZED(cls, **kwargs: Any) -> NodeOutput:
        out = cls.execute(**kwargs)
        if out is None:
            return NodeOutput()
        if isinstance(out, NodeOutput):
            return out
        if isinstance(out, tuple):
            return NodeOutput(*out)
        raise Exception(f"Invalid return type from node: {type(out)}")
