"""Quality measures for the exact-denoiser testbed.

Generated and true fields are zero-mean and (being stationary) diagonal in
the Fourier basis, so the Frechet distance reduces to a per-frequency
comparison of standard deviations, estimated from samples.
"""

from __future__ import annotations

import math

import torch

from ..spectra import fourier_power

__all__ = ["frechet_distance", "fd_noise_floor", "gap_closed"]


def _sample_power(samples: torch.Tensor) -> torch.Tensor:
    """Empirical per-frequency power [n, n], averaged over samples and channels."""
    if samples.ndim < 3 or samples.shape[-1] != samples.shape[-2]:
        raise ValueError(f"expected samples of shape [count, C, n, n], got {tuple(samples.shape)}")
    return fourier_power(samples).reshape(-1, *samples.shape[-2:]).mean(dim=0)


def frechet_distance(samples: torch.Tensor, power: torch.Tensor) -> float:
    """FD between ``samples`` [count, C, n, n] and the zero-mean field with ``power`` [n, n].

    Mean over all n*n frequencies of (sqrt(v_gen) - sqrt(P))^2, with v_gen the
    empirical power. Even true samples score above 0: see ``fd_noise_floor``.
    """
    power = torch.as_tensor(power, dtype=torch.float64)
    if power.shape != samples.shape[-2:]:
        raise ValueError(
            f"power shape {tuple(power.shape)} does not match samples {tuple(samples.shape)}"
        )
    v_gen = _sample_power(samples).cpu()
    return float((v_gen.sqrt() - power.sqrt()).square().mean())


def _expected_sqrt_chi2_ratio(d: int) -> float:
    """E[sqrt(X / d)] for X ~ chi-square(d); lgamma keeps large d finite."""
    return math.sqrt(2.0 / d) * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def fd_noise_floor(power: torch.Tensor, count: int, channels: int) -> float:
    """Expected ``frechet_distance`` of ``count`` true samples with ``channels`` channels.

    Each frequency's estimate is P * X / d with X ~ chi-square(d), so its
    expected term is 2P (1 - E[sqrt(X/d)]). Real and imaginary parts give
    d = 2 * count * channels; self-conjugate frequencies (k == -k mod n: DC
    and, for even n, the Nyquist bins) are real, so d = count * channels.
    """
    if count < 1 or channels < 1:
        raise ValueError(f"count and channels must be >= 1, got {count}, {channels}")
    power = torch.as_tensor(power, dtype=torch.float64).cpu()
    if power.ndim != 2 or power.shape[0] != power.shape[1]:
        raise ValueError(f"expected power of shape [n, n], got {tuple(power.shape)}")
    n = power.shape[0]
    k = torch.arange(n)
    self_conj_1d = (2 * k) % n == 0
    self_conj = self_conj_1d[:, None] & self_conj_1d[None, :]
    d_full = 2 * count * channels
    d_real = count * channels
    shrink = torch.where(
        self_conj,
        torch.tensor(1.0 - _expected_sqrt_chi2_ratio(d_real), dtype=torch.float64),
        torch.tensor(1.0 - _expected_sqrt_chi2_ratio(d_full), dtype=torch.float64),
    )
    return float((2.0 * power * shrink).mean())


def gap_closed(fd_plain: float, fd_method: float, fd_native: float) -> float:
    """Fraction of the FD gap between the plain model and a native one that a method closes.

    1.0 means the method matches a model trained at the target resolution;
    above 1.0 it also corrects error the native model still has (e.g.
    discretization); below 0 it made things worse.
    """
    if not fd_plain > fd_native:
        raise ValueError(
            f"no gap to close: fd_plain ({fd_plain:.6g}) must exceed fd_native "
            f"({fd_native:.6g}); the plain model already matches the native one"
        )
    return (fd_plain - fd_method) / (fd_plain - fd_native)
