"""Small things every node module needs."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from ..noisecal import errors
from ..noisecal_host import folders, level_patches, node_status, user_messages

CATEGORY = "sampling/noise_calibration"
CALIBRATION_TYPE = (
    "NOISE_CALIBRATION"  # a list of calibration records (dicts, noisecal/calibration_record.py)
)

log = logging.getLogger("noise_calibration")


def rgb_to_image(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)


CALIBRATION_INPUTS = {
    "calibration": (
        CALIBRATION_TYPE,
        {"tooltip": "A calibration straight from the Calibrate node; used before any file."},
    ),
    "inline_calibration": (
        "STRING",
        {
            "multiline": True,
            "default": "",
            "tooltip": "Paste a calibration file's JSON (one record or a list) so a "
            "shared workflow carries its own schedule.",
        },
    ),
}


LATENT_CHECK_INPUT = (
    "LATENT",
    {
        "tooltip": "Optional: the latent you sample (e.g. Empty Latent Image). With "
        "if_missing = error, a missing calibration for its size stops the run at this "
        "node, before sampling."
    },
)

ON_MISSING = list(level_patches.ON_MISSING)


def if_missing_input(what: str):
    return (
        ON_MISSING,
        {
            "default": "error",
            "tooltip": f"No {what} for this checkpoint and resolution: stop with "
            "instructions, or sample unchanged with a warning.",
        },
    )


LABEL_INPUT = (
    "STRING",
    {
        "default": "",
        "tooltip": "Optional name used instead of the weights fingerprint to find "
        "calibrations (must match the label used when calibrating). Leave empty normally.",
    },
)


class UsesCalibrationStore:
    """A node that reads or writes calibration files. ComfyUI creates nodes
    without arguments (the user folder); the CLI and benchmarks pass a store."""

    def __init__(self, calibration_store=None):
        self.calibration_store = calibration_store

    def store(self):
        return self.calibration_store or folders.user_store()


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
            raise errors.InvalidInput(problem)

    @classmethod
    def check_widgets(cls, **values) -> None:
        """As `check`, with each widget's min/max too: for a node whose function
        must refuse what its UI cannot send (a headless call's steps 0)."""
        problem = cls.input_problem(values, bounds=True)
        if problem:
            raise errors.InvalidInput(problem)


class CalibratedModelNode(ChecksInputs, UsesCalibrationStore):
    """A MODEL -> MODEL node that reads calibrations when sampling. Its `apply`
    (the headless entry point) takes `notes`, a list for the warnings a user must
    see; ComfyUI calls `run`, which shows them on the node (headless callers get
    them in the log)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        # calibration files are written by another node or the CLI: re-run when they change
        return folders.user_store().fingerprint_files()

    def run(self, **inputs):
        notes: list[str] = []
        result = self.apply(**inputs, notes=notes)
        text = "\n".join(user_messages.gui_text(note) for note in notes)
        return {"ui": {"text": [text] if notes else []}, "result": result}


class LevelPatchNode(CalibratedModelNode):
    """NoiseShift, Noise Level Correction and Apply: MODEL -> MODEL with a
    calibration resolved at sampling time (noisecal_host.level_patches). A subclass names
    its strength tooltip, what is missing without a calibration, and the
    widgets between strength and if_missing; its `apply` keeps its own
    (shipped) signature plus `notes`, checks its inputs and calls the host
    function."""

    STRENGTH_TOOLTIP = ""
    MISSING = "calibration"
    RANGE_INPUTS: dict = {}

    def run(self, **inputs):
        """As CalibratedModelNode's, and the sizes calibrated for the connected checkpoint
        (noisecal_host.node_status: the web extension shows them on the node)."""
        out = super().run(**inputs)
        try:
            status = node_status.calibrated(
                inputs["model"],
                inputs.get("label", ""),
                self.store(),
                self.MISSING != "calibration",
            )
        except Exception:  # what the node shows must never break the node
            return out
        out["ui"][node_status.UI_KEY] = [status]
        return out

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model to patch."}),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.05,
                        "tooltip": cls.STRENGTH_TOOLTIP,
                    },
                ),
                **cls.RANGE_INPUTS,
                "if_missing": if_missing_input(cls.MISSING),
                "label": LABEL_INPUT,
            },
            # appended: saved workflows keep their sockets and widgets
            "optional": {**CALIBRATION_INPUTS, "latent": LATENT_CHECK_INPUT},
        }
