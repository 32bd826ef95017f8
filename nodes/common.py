"""Small things every node module needs."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..noisecal_host import calibrations, folders, installer, user_messages
from .checks import ChecksInputs
from .widgets import Combo, Float, Socket, String, input_types

CATEGORY = "sampling/noise_calibration"
CALIBRATION_TYPE = (
    "NOISE_CALIBRATION"  # a list of calibration records (dicts, noisecal/calibration_record.py)
)

log = logging.getLogger("noise_calibration")


def rgb_to_image(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)


class UsesCalibrationStore:
    """A node that reads or writes calibration files. ComfyUI creates nodes
    without arguments (the user folder); the CLI and benchmarks pass a store."""

    def __init__(self, calibration_store=None):
        self.calibration_store = calibration_store

    def store(self):
        return self.calibration_store or folders.user_store()


class CalibratedModelNode(ChecksInputs, UsesCalibrationStore):
    """A MODEL -> MODEL node that reads calibrations when sampling. Its `apply`
    (the headless entry point) takes `notes`, a list for the warnings a user must
    see; ComfyUI calls `run` (each node declares FUNCTION = "run" beside its
    `apply`), which shows them on the node (headless callers get them in the log)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        # calibration files are written by another node or the CLI: re-run when they change
        return folders.user_store().fingerprint_files()

    def run(self, **inputs):
        return self.shown(inputs)[0]

    def shown(self, inputs: dict) -> tuple[dict, user_messages.NodeText]:
        """run's output, and the node's text (its warnings and calibrated sizes)."""
        notes = user_messages.NodeText()
        result = self.apply(**inputs, notes=notes)
        text = "\n".join(user_messages.gui_text(note) for note in notes)
        return {"ui": {"text": [text] if notes else []}, "result": result}, notes


class LevelPatchNode(CalibratedModelNode):
    """NoiseShift, Noise Level Correction and Apply: MODEL -> MODEL with a
    calibration resolved at sampling time (noisecal_host.level_patches). A subclass names
    its tooltips, what is missing without a calibration, and the widgets
    between strength and if_missing; its `apply` keeps its own
    (shipped) signature plus `notes`, checks its inputs and calls the host
    function."""

    TOOLTIPS: dict = {}
    MISSING = "calibration"
    RANGE_INPUTS: tuple = ()

    def run(self, **inputs):
        """As CalibratedModelNode's, and the sizes calibrated for the connected checkpoint
        (noisecal_host.calibrations: the web extension shows them on the node), read
        by the patch itself (or here, where it read none: strength 0)."""
        out, notes = self.shown(inputs)
        status = notes.calibrated
        if status is None:
            try:
                status = calibrations.calibrated(
                    inputs["model"],
                    inputs.get("label", ""),
                    self.store(),
                    self.MISSING != "calibration",
                )
            except Exception:  # what the node shows must never break the node
                return out
        out["ui"][calibrations.UI_KEY] = [status]
        return out

    @classmethod
    def INPUT_TYPES(cls):
        return input_types(
            cls.TOOLTIPS,
            required=[
                Socket("MODEL", "model"),
                Float("strength", 1.0, min=0.0, max=2.0, step=0.05),
                *cls.RANGE_INPUTS,
                Combo("if_missing", installer.ON_MISSING, "error"),
                String("label"),
            ],
            # appended: saved workflows keep their sockets and widgets
            optional=[
                Socket(CALIBRATION_TYPE, "calibration"),
                String("inline_calibration", multiline=True),
                Socket("LATENT", "latent"),
            ],
        )
