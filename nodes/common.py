"""Small things every node module needs."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..noisecal import store
from ..noisecal_host import folders

CATEGORY = "sampling/noise_calibration"
CALIBRATION_TYPE = "NOISE_CALIBRATION"  # a list of schema-1 records (dicts)
LATENT_DOWNSCALE = 8  # pixels per latent pixel for SD1/SDXL/SD3/Flux VAEs

log = logging.getLogger("noise_calibration")


def rgb_to_image(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)


def provided_records(key, calibration, inline_calibration: str, what: str) -> list[dict]:
    """Records connected to a node (calibration input, then pasted JSON); a record
    made for another checkpoint is used but logged."""
    records = list(calibration or [])
    if inline_calibration.strip():
        records += store.loads_many(inline_calibration, "inline_calibration")
    for record in records:
        if store.record_key(record).identity != key.identity:
            log.warning(
                "%s: a connected calibration was made for %s, this model is %s; using it anyway",
                what,
                store.record_key(record).describe(),
                key.describe(),
            )
    return records


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


PAIR_WARNING = (
    "NoiseShift and Noise Level Correction are both on this model. Each was "
    "calibrated without the other, and on the testbed the pair was often worse than "
    "either alone (docs/results-correction.md): use one of them."
)


def installed(model, kind: str, cls) -> bool:
    """Whether the model's sampling object already carries a `cls` level (kind
    "level_fns") or state (kind "state_fns") function."""
    ms = model.get_model_object("model_sampling")
    return any(isinstance(fn, cls) for fn in getattr(ms, kind, ()))


ON_MISSING = ["error", "pass through"]


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
