"""V1 INPUT_TYPES written one line per input, as ComfyUI's V3 schema reads
(`io.Int.Input("steps", default=20, min=2, max=200)`).

Each helper gives (name, (type, options)); `input_types` puts them in order
under "required" and "optional" and adds each input's tooltip from the node's
tooltip table (nodes/tooltips.py), refusing an input without one or a tooltip
for no input. Options are written only when given, so a widget's spec is what
ComfyUI received before these helpers existed.
"""

from __future__ import annotations


def _options(**options) -> dict:
    return {key: value for key, value in options.items() if value is not None}


def Socket(kind: str, name: str):
    """An input without a widget: a link from another node (MODEL, LATENT, ...)."""
    return name, (kind, {})


def Int(name, default, *, min=None, max=None, step=None):  # noqa: A002  (V3's names)
    return name, ("INT", _options(default=default, min=min, max=max, step=step))


def Float(name, default, *, min=None, max=None, step=None, round=None):  # noqa: A002
    return name, ("FLOAT", _options(default=default, min=min, max=max, step=step, round=round))


def String(name, default="", *, multiline=None):
    return name, ("STRING", _options(multiline=multiline, default=default))


def Combo(name, choices, default=None):
    return name, (list(choices), _options(default=default))


def input_types(tooltips: dict[str, str], required, optional=()) -> dict:
    """{"required": {...}, "optional": {...}} with every input's tooltip."""
    unused = set(tooltips) - {name for name, _ in (*required, *optional)}
    if unused:
        raise KeyError(f"tooltips for no input: {sorted(unused)}")

    def group(widgets):
        specs = {}
        for name, (kind, options) in widgets:
            if name not in tooltips:
                raise KeyError(f"input {name!r} has no tooltip")
            specs[name] = (kind, {**options, "tooltip": tooltips[name]})
        return specs

    types = {"required": group(required)}
    if optional:
        types["optional"] = group(optional)
    return types
