"""NoiseShift at sampling time: the calibrated map sigma -> sigma_hat.

A map is built once per (checkpoint, resolution) from one calibration record,
or from the two records whose token counts bracket the resolution (weights
from the store's lookup, linear in log token count). Each record's curve is
monotone and piecewise linear in sigma (`search.interp_sigma_hat`), so the
blend is monotone too and any scheduler and step count can use it.
`strength` scales the shift: 0 is the plain level, 1 the calibrated one.
"""

from __future__ import annotations

import torch

from .search import SigmaHatCurve
from .store import CalibrationNotFound, choose_sizes, not_found, record_latent_size


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


class ShiftResolver:
    """The level function NoiseShift installs: picks the map for the latent size
    being sampled (provided records first, then the store), caches it.

    `on_missing` is "error" (raise CalibrationNotFound with instructions) or
    "pass through" (plain levels, one warning per size through `warn`).
    """

    def __init__(
        self,
        key,
        provided,
        calibration_store,
        *,
        strength=1.0,
        on_missing="error",
        max_level=None,
        warn=None,
    ):
        self.key = key
        self.provided = {record_latent_size(r): r for r in provided}
        self.store = calibration_store
        self.strength = strength
        self.on_missing = on_missing
        self.max_level = max_level
        self.warn = warn or (lambda message: None)
        self.maps: dict[tuple, ShiftMap | None] = {}
        self.sources: dict[tuple, tuple[str, ...]] = {}

    def map_for(self, latent_hw) -> ShiftMap | None:
        latent_hw = tuple(int(v) for v in latent_hw)
        if latent_hw not in self.maps:
            self.maps[latent_hw] = self._resolve(latent_hw)
        return self.maps[latent_hw]

    def _resolve(self, latent_hw):
        chosen = choose_sizes(list(self.provided), latent_hw)
        if chosen is not None:
            records = [self.provided[size] for size, _ in chosen]
            weights = [w for _, w in chosen]
            self.sources[latent_hw] = tuple("connected calibration" for _ in records)
        else:
            try:
                if self.store is None:
                    raise not_found(self.key, latent_hw, list(self.provided))
                match = self.store.find(self.key, latent_hw)
            except CalibrationNotFound as exc:
                if self.on_missing == "error":
                    raise
                self.warn(f"NoiseShift passes through: {exc}")
                return None
            records, weights = match.records, match.weights
            self.sources[latent_hw] = match.paths
        return ShiftMap.from_records(records, weights, self.strength, self.max_level)

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        if latent_hw is None:
            return sigma
        shift_map = self.map_for(latent_hw)
        return sigma if shift_map is None else shift_map(sigma)
