"""NoiseShift at sampling time: the calibrated map sigma -> sigma_hat.

A map is built once per (checkpoint, resolution) from one calibration record,
or from the two records whose token counts bracket the resolution (weights
from the store's lookup, linear in log token count). Each record's curve is
monotone and piecewise linear in sigma (`sigma_hat_curve.interp_sigma_hat`), so the
blend is monotone too and any scheduler and step count can use it.
`strength` scales the shift: 0 is the plain level, 1 the calibrated one.
"""

from __future__ import annotations

import torch

from .sigma_hat_curve import SigmaHatCurve


class ShiftMap:
    def __init__(self, curves, weights, strength: float = 1.0, max_level: float | None = None):
        """curves: [(sigmas, sigma_hat), ...]; weights: one per curve, summing to 1."""
        if len(curves) != len(weights) or not curves:
            raise ValueError("need one weight per curve and at least one curve")
        self.curves = [([float(v) for v in s], [float(v) for v in h]) for s, h in curves]
        self.weights = [float(w) for w in weights]
        self.strength = float(strength)
        self.max_level = max_level
        # validated once here, not at every sampling step
        self.maps = [SigmaHatCurve(s, h, max_level=max_level) for s, h in self.curves]

    @classmethod
    def from_records(cls, records, weights, strength=1.0, max_level=None) -> ShiftMap:
        return cls([(r["sigmas"], r["sigma_hat"]) for r in records], weights, strength, max_level)

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.strength == 0.0:
            return sigma
        blended = sum(w * curve(sigma) for curve, w in zip(self.maps, self.weights, strict=True))
        if self.strength == 1.0 and len(self.curves) == 1:
            return blended
        return sigma + self.strength * (blended - sigma)

    def max_shift(self) -> float:
        """Largest |sigma_hat - sigma| over the calibrated levels (for messages)."""
        return max(
            abs(h - s) for sigmas, hats in self.curves for s, h in zip(sigmas, hats, strict=True)
        )
