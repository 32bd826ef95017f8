"""One check of a node's widget values: its type, choices and range, for
VALIDATE_INPUTS (before a workflow runs) and for the node's own function."""

from __future__ import annotations

import math

from ..noisecal.errors import InvalidInput


def widget_specs(cls) -> dict[str, tuple]:
    """Every input of a node class by name: (type, options)."""
    inputs = cls.INPUT_TYPES()
    specs = {}
    for group in ("required", "optional"):
        for name, spec in inputs.get(group, {}).items():
            specs[name] = (spec[0], spec[1] if len(spec) > 1 else {})
    return specs


def widget_problem(name: str, value, kind, options: dict, *, bounds: bool) -> str | None:
    """What is wrong with one widget value (None: nothing). A list widget takes one
    of its choices; a number must be finite (NaN passes any min/max comparison) and,
    with `bounds`, inside the widget's min/max."""
    if isinstance(kind, (list, tuple)):
        if value not in kind:
            return f"{name} must be one of {list(kind)}, got {value!r}"
        return None
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name} must be text, got {value!r}"
    if kind not in ("FLOAT", "INT"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}"
    if kind == "INT" and value != int(value):
        return f"{name} must be a whole number, got {value!r}"
    if bounds and "min" in options and value < options["min"]:
        return f"{name} must be at least {options['min']}, got {value!r}"
    if bounds and "max" in options and value > options["max"]:
        return f"{name} must be at most {options['max']}, got {value!r}"
    return None


class ChecksInputs:
    """One check of a node's widget values, run twice: by ComfyUI before the
    workflow executes (VALIDATE_INPUTS, so the UI marks this node) and by the
    node's own function (headless callers never go through VALIDATE_INPUTS).

    Each node's VALIDATE_INPUTS names the inputs it checks, never **kwargs: the
    host skips its own type/range/choice checks for every input VALIDATE_INPUTS
    takes (for all of them with **kwargs, in the 2024 hosts), so naming only
    these keeps the host's checks on the rest, and `bounds` redoes the min/max
    of the named ones. An input ComfyUI passes as None is linked to another
    node's output: its value is known only at execution, where the node's
    function checks it.
    """

    # (low, high) input pairs that must satisfy low <= high
    ORDERED: tuple[tuple[str, str], ...] = ()

    @classmethod
    def input_problem(cls, values: dict, *, bounds: bool = False) -> str | None:
        specs = widget_specs(cls)
        for name, value in values.items():
            if value is not None:
                kind, options = specs[name]
                problem = widget_problem(name, value, kind, options, bounds=bounds)
                if problem:
                    return problem
        for low, high in cls.ORDERED:
            lo, hi = values.get(low), values.get(high)
            if lo is not None and hi is not None and lo > hi:
                return f"{low} ({lo}) must not exceed {high} ({hi})"
        return None

    @classmethod
    def validate(cls, **values) -> bool | str:
        """VALIDATE_INPUTS's answer: True, or the problem (naming the input)."""
        return cls.input_problem(values, bounds=True) or True

    @classmethod
    def check(cls, **values) -> None:
        """In the node's function: the pack's InvalidInput naming the input."""
        problem = cls.input_problem(values)
        if problem:
            raise InvalidInput(problem)

    @classmethod
    def check_widgets(cls, **values) -> None:
        """As `check`, with each widget's min/max too: for a node whose function
        must refuse what its UI cannot send (a headless call's steps 0)."""
        problem = cls.input_problem(values, bounds=True)
        if problem:
            raise InvalidInput(problem)
