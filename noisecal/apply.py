"""The Apply node's patch: for the latent size being sampled, the combination the
calibration's held-out check recommended (noisecal/held_out_check.py).

A record's recommendation gives NoiseShift's strength and a correction table
(calibrated alone or with NoiseShift on) with its strength; "plain" gives the
model unchanged, bit for bit. A record without a check (version 1 files, or
calibrated with the check off) recommends NoiseShift, as the NoiseShift node
does. Between two calibrated sizes the two records are blended as the
NoiseShift and NLC nodes blend them, only when both recommend the same
combination; otherwise the sample is plain (never worse than plain) and a
warning says so.
"""

from __future__ import annotations

import math

import torch

from .correction import CorrectionMap
from .correction_table import CorrectionTable
from .noiseshift import ShiftMap
from .resolver import CalibrationResolver
from .store import recommendation

PLAIN = (None, None)


class RecommendedResolver(CalibrationResolver):
    """Per latent size: (NoiseShift map or None, correction map or None)."""

    what = "Noise Calibration: Apply"

    def build(self, records, weights):
        chosen = [recommendation(r) for r in records]
        names = sorted({c["name"] for c in chosen})
        if len(names) > 1:
            self.warn(
                f"{self.what}: the two calibrations around this size recommend different "
                f"methods ({', '.join(names)}): sampling plain here; calibrate this size"
            )
            return PLAIN
        pick = chosen[0]
        # the node's strength scales what was verified (1: as recommended, 0: off)
        shift_strength = self.strength * pick["noiseshift"]
        correction_strength = self.strength * pick["correction"]
        shift = None
        if shift_strength > 0:
            shift = ShiftMap.from_records(records, weights, shift_strength, self.max_level)
        correction = None
        if correction_strength > 0:
            tables = [CorrectionTable.from_json(r[pick["table"]]) for r in records]
            correction = CorrectionMap(
                tables, weights, correction_strength, (0.0, math.inf), self.max_level
            )
        return shift, correction

    def pair_for(self, latent_hw):
        if latent_hw is None:
            return PLAIN
        return self.map_for(latent_hw) or PLAIN


class RecommendedLevel:
    """The conditioning-level function (NoiseShift's part)."""

    def __init__(self, resolver: RecommendedResolver):
        self.resolver = resolver

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        shift, _ = self.resolver.pair_for(latent_hw)
        return sigma if shift is None else shift(sigma)


class RecommendedState:
    """The evaluation-level function (Noise Level Correction's part)."""

    def __init__(self, resolver: RecommendedResolver):
        self.resolver = resolver

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        _, correction = self.resolver.pair_for(latent_hw)
        return sigma if correction is None else correction(sigma)
