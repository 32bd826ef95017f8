"""Noise Level Correction (arXiv 2412.05488): the denoiser evaluated at a corrected level.

NLC evaluates the denoiser at ``sigma_hat = sigma * (1 + r)`` instead of the
sampler's sigma: input scaling, conditioning and the denoised estimate all use
sigma_hat, the sampler's own sigmas stay as they are. With a denoised
estimate formed at sigma_hat, ComfyUI's Euler step
``x + (sigma' - sigma) (x - denoised) / sigma`` is the paper's DDIM-NLC step,
so the correction works as a MODEL patch under any sampler.

The table r(sigma) is calibrated by ``noisecal/correction_search.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .correction_table import CorrectionTable

__all__ = ["CorrectionMap"]


class CorrectionMap:
    """sigma -> sigma_hat = sigma * (1 + strength * r(sigma)) for the levels in
    ``sigma_range`` (the sampler's sigma, inclusive); other levels pass through.

    ``tables``/``weights``: the records bracketing the resolution and their
    weights (the store's lookup), blended linearly in r.
    """

    def __init__(
        self,
        tables: Sequence[CorrectionTable],
        weights: Sequence[float],
        strength: float = 1.0,
        sigma_range: tuple[float, float] = (0.0, math.inf),
        max_level: float | None = None,
    ):
        if len(tables) != len(weights) or not tables:
            raise ValueError("need one weight per table and at least one table")
        lo, hi = (float(v) for v in sigma_range)
        if not lo <= hi:
            raise ValueError(f"sigma range must have min <= max, got {lo} > {hi}")
        self.tables = list(tables)
        self.weights = [float(w) for w in weights]
        self.strength = float(strength)
        self.sigma_range = (lo, hi)
        self.max_level = max_level

    def r(self, sigma: torch.Tensor) -> torch.Tensor:
        """The applied relative correction at each sigma (0 outside the range)."""
        sigma64 = torch.as_tensor(sigma).to(torch.float64)
        blended = sum(w * t(sigma64) for t, w in zip(self.tables, self.weights, strict=True))
        lo, hi = self.sigma_range
        inside = (sigma64 >= lo) & (sigma64 <= hi)
        return torch.where(inside, self.strength * blended, torch.zeros_like(sigma64))

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.strength == 0.0:
            return sigma
        sigma64 = sigma.to(torch.float64)
        hat = sigma64 * (1 + self.r(sigma64))
        # keep a positive level the model knows; sigma 0 stays 0
        hat = torch.where(sigma64 > 0, hat.clamp(min=sigma64 * 1e-3), sigma64)
        if self.max_level is not None:
            hat = hat.clamp(max=max(float(self.max_level), float(sigma64.max())))
        return hat.to(sigma.dtype)
