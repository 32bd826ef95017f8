"""The Apply node's patch: for the latent size being sampled, the combination the
calibration's held-out check recommended (noisecal/held_out_check.py).

A record's recommendation gives NoiseShift's strength and a correction table
(calibrated alone or with NoiseShift on) with its strength; "plain" gives the
model unchanged, bit for bit. A record without a check (version 1 files, or
calibrated with the check off) recommends NoiseShift, as the NoiseShift node
does. A recommendation may add Noise Awareness Guidance at the weight the
check chose. Between two calibrated sizes the two records are blended as the
NoiseShift and NLC nodes blend them (the guidance weight too), only when both
recommend the same combination; otherwise the sample is plain (never worse
than plain) and a warning says so.
"""

from __future__ import annotations

import math

import torch

from .calibration_record import recommendation
from .correction import CorrectionMap
from .correction_table import CorrectionTable
from .guidance import GuidanceSettings
from .noiseshift import ShiftMap
from .resolver import CalibrationResolver

PLAIN = (None, None, None)


def _guidance(records, weights, chosen, strength) -> GuidanceSettings | None:
    """The check's guidance, its weight blended like the strengths (None: none)."""
    weight = strength * sum(w * c["guidance"] for w, c in zip(weights, chosen, strict=True))
    if weight <= 0:
        return None
    section = next(
        r["check"]["guidance"] for r, c in zip(records, chosen, strict=True) if c["guidance"]
    )
    return GuidanceSettings(
        weight=weight,
        mode=section["mode"],
        offset=section["offset"],
        weight_schedule=section["weight_schedule"],
    )


class RecommendedResolver(CalibrationResolver):
    """Per latent size: (NoiseShift map, correction map, guidance settings), each
    None where the recommendation has none."""

    what = "Noise Calibration: Apply"

    def build(self, records, weights):
        chosen = [recommendation(r) for r in records]
        names = sorted({c["base"] for c in chosen})
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
        return shift, correction, _guidance(records, weights, chosen, self.strength)

    def parts_for(self, latent_hw):
        if latent_hw is None:
            return PLAIN
        return self.map_for(latent_hw) or PLAIN


class RecommendedLevel:
    """The conditioning-level function (NoiseShift's part)."""

    def __init__(self, resolver: RecommendedResolver):
        self.resolver = resolver

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        shift, _, _ = self.resolver.parts_for(latent_hw)
        return sigma if shift is None else shift(sigma)


class RecommendedState:
    """The evaluation-level function (Noise Level Correction's part)."""

    def __init__(self, resolver: RecommendedResolver):
        self.resolver = resolver

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        _, correction, _ = self.resolver.parts_for(latent_hw)
        return sigma if correction is None else correction(sigma)


class RecommendedGuidance:
    """The guidance settings for a latent size (None: no guidance there)."""

    def __init__(self, resolver: RecommendedResolver):
        self.resolver = resolver

    def __call__(self, latent_hw) -> GuidanceSettings | None:
        return self.resolver.parts_for(latent_hw)[2]
