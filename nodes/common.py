"""Small things every node module needs."""

from __future__ import annotations

import logging

import numpy as np
import torch

CATEGORY = "sampling/noise_calibration"
CALIBRATION_TYPE = "NOISE_CALIBRATION"  # a list of schema-1 records (dicts)
LATENT_DOWNSCALE = 8  # pixels per latent pixel for SD1/SDXL/SD3/Flux VAEs

log = logging.getLogger("noise_calibration")


def rgb_to_image(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    return torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)
