"""The spectra the Noise Level Correction search compares: the power a true
state at a level has, a batch's per-channel radially binned power, and the
distance between two (FD-like, in amplitude)."""

from __future__ import annotations

import torch

from .levels import FAMILIES, check_parameterization
from .spectra import bin_mean, fourier_power, radial_bins

# A step keeps r = 0 unless its gain beats this many times the distance the
# target's estimation error alone would add (target_noise)
NOISE_FLOOR_FACTOR = 1.0


def marginal_power(data_power: torch.Tensor, sigma: float, parameterization: str) -> torch.Tensor:
    """Expected power of a true state at ``sigma``: data and unit-variance noise mixed."""
    check_parameterization(parameterization, FAMILIES)
    if parameterization == "flow":
        return (1.0 - sigma) ** 2 * data_power + sigma**2
    return data_power + sigma**2


class Spectrum:
    """Per-channel, radially binned power of a batch (spectra.py's bins and DFT)."""

    def __init__(self, h: int, w: int, device):
        index, _, counts = radial_bins(h, w)
        self.index = index.reshape(-1).to(device)
        self.counts = counts.to(device, torch.float64)
        self.weights = self.counts / self.counts.sum()

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """[C, F] mean power over the batch ``x`` [n, C, h, w]."""
        return bin_mean(fourier_power(x).mean(dim=0), self.index, self.counts)

    def power_of(self, transform: torch.Tensor) -> torch.Tensor:
        """`power` of a batch from its orthonormal 2D DFT (one transform serves both)."""
        return bin_mean(transform.abs().square().mean(dim=0), self.index, self.counts)


def target_noise(data_weight: float, data_power, target, counts, samples: int, weights) -> float:
    """Expected spectral_distance that the target's own estimation error adds.

    The target's data part ``data_weight * S`` is estimated from ``samples``
    latents; a bin of m coefficients (m / 2 independent: real input) gives S
    with variance S^2 / (samples * m / 2), so sqrt(target) varies by
    ``data_weight^2 S^2 / (4 target samples m / 2)``. A gain below this is
    indistinguishable from fitting that error.
    """
    dof = samples * counts.clamp(min=2) / 2
    var = (data_weight * data_power).square() / (4 * target.clamp(min=1e-30) * dof)
    return float((var * weights).sum(dim=-1).mean())


def step_target(level, data_power, noise_power, parameterization, spectrum, samples):
    """The spectrum a batch at ``level`` should have (scaled by its own noise's
    fluctuation) and the gain needed to beat the target's estimation noise."""
    target = marginal_power(data_power, level, parameterization) * noise_power
    data_weight = (1.0 - level) ** 2 if parameterization == "flow" else 1.0
    floor = NOISE_FLOOR_FACTOR * target_noise(
        data_weight, data_power, target, spectrum.counts, samples, spectrum.weights
    )
    return target, floor


def spectral_distance(power: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> float:
    """FD-like distance of two [C, F] spectra: mean over coefficients of the squared
    amplitude difference (``weights``: each bin's share of the coefficients)."""
    diff = (power.clamp(min=0).sqrt() - target.clamp(min=0).sqrt()).square()
    return float((diff * weights).sum(dim=-1).mean())
