"""Mixture testbed: non-Gaussian data with an exact posterior-mean denoiser.

Each sample is drawn from one of K stationary Gaussian fields (its
"component", chosen with the mixture's weights); components differ in
spectrum shape and amplitude, so per-sample spectra and marginals are far
from one Gaussian, yet the optimal denoiser is still known in closed form:

    E[x0 | x_s] = sum_k r_k(x_s) * W_k(s) x_s

with W_k the Fourier-domain Wiener filter of component k and r_k its
posterior responsibility, a softmax over k of ``log w_k + log N(x_s; 0, V_k)``
where ``V_k = (1 - s)^2 P_k + s^2`` per orthonormal Fourier coefficient.
For a real field the sum over all coefficients of
``-|X|^2 / (2 V) - 0.5 log V`` is the exact log-likelihood up to a constant
(a conjugate pair counts twice, a self-conjugate bin once).

Flow parameterization and the trained-at-M / run-at-N variants are those of
``testbed.py``: every component's assumed power is mismatched the same way,
and so are the responsibilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .testbed import VARIANTS, ExactDenoiser, FieldSpectrum, _check_res, _level, sample_field

__all__ = [
    "FieldMixture",
    "MixtureDenoiser",
    "sample_mixture",
    "log_posterior",
    "classify",
    "gaussian_denoise",
    "MIXTURES",
]


@dataclass(frozen=True)
class FieldMixture:
    """K Gaussian fields: ``spectra[k]`` scaled by ``amplitudes[k]`` (per-pixel std), weight ``weights[k]``."""

    spectra: tuple[FieldSpectrum, ...]
    amplitudes: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.spectra)
        if k < 1 or len(self.amplitudes) != k or len(self.weights) != k:
            raise ValueError("spectra, amplitudes and weights need the same length >= 1")
        if len({sp.channels for sp in self.spectra}) != 1:
            raise ValueError("every component needs the same channel count")
        if not all(a > 0 for a in self.amplitudes) or not all(w > 0 for w in self.weights):
            raise ValueError("amplitudes and weights must be > 0")

    @property
    def channels(self) -> int:
        return self.spectra[0].channels

    @property
    def probs(self) -> torch.Tensor:
        """Normalized weights [K] float64."""
        w = torch.tensor(self.weights, dtype=torch.float64)
        return w / w.sum()

    def component_powers(self, n: int) -> torch.Tensor:
        """True per-frequency power of each component at n, [K, n, n] float64."""
        return torch.stack(
            [a * a * sp.power(n) for sp, a in zip(self.spectra, self.amplitudes, strict=True)]
        )

    def power(self, n: int) -> torch.Tensor:
        """Mean per-frequency power of the mixture at n (what a batch spectrum sees), [n, n]."""
        return (self.probs[:, None, None] * self.component_powers(n)).sum(0)


def sample_mixture(
    mixture: FieldMixture, n: int, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` true samples at n and their component labels: ([count, C, n, n] float32, [count] long)."""
    labels = torch.multinomial(mixture.probs, count, replacement=True, generator=generator)
    out = torch.empty((count, mixture.channels, n, n), dtype=torch.float32)
    for k, (sp, amp) in enumerate(zip(mixture.spectra, mixture.amplitudes, strict=True)):
        idx = torch.nonzero(labels == k).reshape(-1)
        if idx.numel():
            out[idx] = amp * sample_field(sp, n, idx.numel(), generator)
    return out, labels


def _coefficients(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected x of shape [B, C, n, n], got {tuple(x.shape)}")
    return torch.fft.fft2(x.to(torch.float64), norm="ortho")


def _log_posterior(xf: torch.Tensor, s: torch.Tensor, powers: torch.Tensor, probs) -> torch.Tensor:
    """log r_k up to a per-sample constant, [K, B], from coefficients xf [B, C, n, n]."""
    var = (1 - s[None]) ** 2 * powers[:, None, None] + s[None] ** 2  # [K, B|1, 1, n, n]
    quad = xf.abs().square().sum(1, keepdim=True)  # [B, 1, n, n]: channels share V
    ll = -(quad / (2 * var)).sum((-3, -2, -1)) - 0.5 * xf.shape[1] * var.log().sum((-3, -2, -1))
    return ll + probs.log().to(ll)[:, None]


def log_posterior(x: torch.Tensor, s, powers: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Normalized log responsibilities [K, B] of x [B, C, n, n] at level s under ``powers`` [K, n, n]."""
    lp = _log_posterior(_coefficients(x), _level(s, x), powers.to(x.device), probs)
    return lp - lp.logsumexp(0, keepdim=True)


def classify(mixture: FieldMixture, x0: torch.Tensor) -> torch.Tensor:
    """Component of each clean sample by the exact likelihood (posterior argmax at level 0), [B]."""
    powers = mixture.component_powers(x0.shape[-1])
    return log_posterior(x0, 0.0, powers, mixture.probs).argmax(0).cpu()


def _apply(x: torch.Tensor, xf: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    # real gains, symmetric in k: the filtered field is real
    return torch.fft.ifft2(gain * xf, norm="ortho").real.to(x.dtype)


def gaussian_denoise(x: torch.Tensor, s_cond, power: torch.Tensor) -> torch.Tensor:
    """Posterior mean of a single Gaussian field with ``power`` [n, n]: its Wiener filter."""
    s = _level(s_cond, x)
    p = power.to(x.device)
    return _apply(x, _coefficients(x), (1 - s) * p / ((1 - s) ** 2 * p + s**2))


class MixtureDenoiser:
    """Posterior-mean denoiser of the mixture for a model trained at ``train_res``.

    The interface of ``ExactDenoiser``: at n == train_res it is optimal; at
    another n every component's power is the one its ``variant`` assumes.
    """

    def __init__(self, mixture: FieldMixture, train_res: int, variant: str = "pixel"):
        _check_res(train_res)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.mixture = mixture
        self.train_res = int(train_res)
        self.variant = variant
        self._parts = [ExactDenoiser(sp, train_res, variant) for sp in mixture.spectra]
        self._power_cache: dict[int, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (
            f"MixtureDenoiser({self.mixture!r}, train_res={self.train_res}, "
            f"variant={self.variant!r})"
        )

    @property
    def channels(self) -> int:
        return self.mixture.channels

    def native(self, n: int) -> MixtureDenoiser:
        """The same kind of model trained at n."""
        return MixtureDenoiser(self.mixture, n, self.variant)

    def assumed_powers(self, n: int) -> torch.Tensor:
        """Per-component power [K, n, n] float64 the model assumes at n (each mismatched alike)."""
        if n not in self._power_cache:
            amps = self.mixture.amplitudes
            self._power_cache[n] = torch.stack(
                [a * a * part.assumed_power(n) for part, a in zip(self._parts, amps, strict=True)]
            )
        return self._power_cache[n]

    def responsibilities(self, x: torch.Tensor, s_cond) -> torch.Tensor:
        """Posterior component probabilities [K, B] the model assigns to x at level s_cond."""
        powers = self.assumed_powers(x.shape[-1])
        return log_posterior(x, s_cond, powers, self.mixture.probs).exp()

    def _filter(self, x: torch.Tensor, s_cond, gain_fn) -> torch.Tensor:
        """sum_k r_k * gain_fn(P_k, s) applied to x, per sample (one FFT in, one out)."""
        xf = _coefficients(x)
        s = _level(s_cond, x)
        powers = self.assumed_powers(x.shape[-1]).to(x.device)
        lp = _log_posterior(xf, s, powers, self.mixture.probs)
        r = torch.softmax(lp, dim=0)[:, :, None, None, None]  # [K, B, 1, 1, 1]
        gains = gain_fn(powers[:, None, None], s[None])  # [K, B|1, 1, n, n]
        return _apply(x, xf, (r * gains).sum(0))

    def denoise(self, x: torch.Tensor, s_cond) -> torch.Tensor:
        """Posterior mean E[x0 | x_s] assuming level ``s_cond`` (scalar or [B])."""
        return self._filter(x, s_cond, lambda p, s: (1 - s) * p / ((1 - s) ** 2 * p + s**2))

    def velocity(self, x: torch.Tensor, s_cond) -> torch.Tensor:
        """Posterior-mean velocity E[eps - x0 | x_s], in closed form as ExactDenoiser.velocity."""
        return self._filter(x, s_cond, lambda p, s: (s - (1 - s) * p) / ((1 - s) ** 2 * p + s**2))


def _mixture(parts) -> FieldMixture:
    """FieldMixture from (f0, alpha, amplitude, weight) rows, 4 channels."""
    return FieldMixture(
        tuple(FieldSpectrum(f0, alpha, 4) for f0, alpha, _, _ in parts),
        tuple(float(a) for _, _, a, _ in parts),
        tuple(float(w) for _, _, _, w in parts),
    )


# Components far apart in shape and amplitude: a smooth loud field, a rough
# quiet one, and (in "three") a very smooth, very loud rare one.
MIXTURES = {
    "two": _mixture([(3.0, 2.5, 1.0, 0.6), (1.0, 1.5, 0.5, 0.4)]),
    "three": _mixture([(3.0, 2.5, 1.0, 0.5), (1.0, 1.5, 0.5, 0.3), (8.0, 4.0, 2.0, 0.2)]),
}
