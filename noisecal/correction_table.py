"""The Noise Level Correction table r(sigma), as a calibration file stores it.

Kept apart from the calibration (noisecal/correction.py) so the store can
check a file's table with the same rules the sampler reads it by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .levels import check_descending


class CorrectionTable:
    """r as a function of the sampler's sigma: piecewise linear in log sigma
    between the calibrated levels, the end values held beyond them."""

    def __init__(self, sigmas: Sequence[float], r: Sequence[float]):
        sigmas = [float(s) for s in sigmas]
        r = [float(v) for v in r]
        if len(sigmas) != len(r) or not sigmas:
            raise ValueError(
                f"a correction table needs one r per sigma, got {len(sigmas)} and {len(r)}"
            )
        if any(not math.isfinite(v) for v in sigmas + r) or any(s <= 0 for s in sigmas):
            raise ValueError("correction table sigmas must be finite and > 0, r finite")
        check_descending(sigmas, "correction table sigmas")
        if any(abs(v) > 1 for v in r):
            raise ValueError("correction table r must lie in [-1, 1]")
        self.sigmas, self.r = sigmas, r
        # ascending copies for np.interp
        self._log_sigma = np.log(np.asarray(sigmas[::-1], dtype=np.float64))
        self._r = np.asarray(r[::-1], dtype=np.float64)

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        flat = sigma.detach().to("cpu", torch.float64).reshape(-1).numpy()
        out = np.interp(np.log(np.maximum(flat, 1e-12)), self._log_sigma, self._r)
        return torch.from_numpy(out).reshape(sigma.shape).to(sigma.device, torch.float64)

    def to_json(self) -> dict:
        return {"sigmas": list(self.sigmas), "r": list(self.r)}

    @classmethod
    def from_json(cls, data: dict) -> CorrectionTable:
        return cls(data["sigmas"], data["r"])
