"""Exact-denoiser testbed: Gaussian-field data with a known optimal denoiser.

No real checkpoint is available, so quality is measured on a "model" whose
optimum is known in closed form: a stationary Gaussian field per channel and
its posterior-mean denoiser, diagonal in the Fourier basis. Flow
parameterization throughout, as SD3/Flux: ``x_s = (1 - s) x0 + s * eps``,
network output ``v ~ eps - x0``, ``denoised = x - s * v``.

A model "trained at M" and run at another resolution N is mismatched the way
a real network is (see docs/design.md section 5):

- ``"pixel"``: a convolution trained at M works in cycles per pixel, so at N
  it uses the M-spectrum at frequency ``k * M / N``.
- ``"image"``: the model knows content in cycles per image but assumes the
  M-resolution power per frequency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "FieldSpectrum",
    "sample_field",
    "ExactDenoiser",
    "euler_sample",
    "flow_sigmas",
]

VARIANTS = ("pixel", "image")


def _radial_freq(n: int) -> torch.Tensor:
    """|k| in cycles per image for each 2D DFT bin of an n x n grid (float64)."""
    k = torch.fft.fftfreq(n, dtype=torch.float64) * n
    return torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)


@dataclass(frozen=True)
class FieldSpectrum:
    """Continuous spectrum S(f) = (f0^2 + f^2)^(-alpha/2), f in cycles per image."""

    f0: float = 3.0
    alpha: float = 2.5
    channels: int = 4

    def __post_init__(self) -> None:
        # f0 > 0 keeps S(0) finite; the DC bin is always sampled.
        if not self.f0 > 0:
            raise ValueError(f"FieldSpectrum.f0 must be > 0, got {self.f0}")
        if self.channels < 1:
            raise ValueError(f"FieldSpectrum.channels must be >= 1, got {self.channels}")

    def density(self, freq: torch.Tensor) -> torch.Tensor:
        """Unnormalized S at the given frequencies (cycles per image)."""
        freq = torch.as_tensor(freq, dtype=torch.float64)
        return (self.f0**2 + freq**2) ** (-self.alpha / 2)

    def normalizer(self, n: int) -> float:
        """Mean of S over the n x n DFT grid: dividing by it gives unit per-pixel variance."""
        _check_res(n)
        return float(self.density(_radial_freq(n)).mean())

    def power_at(self, n: int, scale: float = 1.0, ref: int | None = None) -> torch.Tensor:
        """S(|k| * scale) / normalizer(ref) on the n x n grid, [n, n] float64.

        ``scale`` maps the n-grid onto the frequency axis a model assumes and
        ``ref`` is the resolution whose variance normalization it learnt
        (defaults to n, i.e. the true field at n).
        """
        _check_res(n)
        ref = n if ref is None else ref
        return self.density(_radial_freq(n) * scale) / self.normalizer(ref)

    def power(self, n: int) -> torch.Tensor:
        """True per-frequency power of the field at resolution n, [n, n] float64, mean 1."""
        return self.power_at(n)


def _check_res(n: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"resolution must be a positive integer, got {n!r}")


def sample_field(
    spectrum: FieldSpectrum, n: int, count: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` true field samples at resolution n, [count, C, n, n] float32.

    Colours white noise in the orthonormal Fourier basis, so the per-frequency
    power is exactly ``spectrum.power(n)``.
    """
    white = torch.randn((count, spectrum.channels, n, n), generator=generator, dtype=torch.float64)
    amp = spectrum.power(n).sqrt()
    field = torch.fft.ifft2(amp * torch.fft.fft2(white, norm="ortho"), norm="ortho").real
    return field.to(torch.float32)


def _level(s, x: torch.Tensor) -> torch.Tensor:
    """Noise level(s) as float64 [B or 1, 1, 1, 1] for broadcasting against x."""
    s = torch.as_tensor(s, dtype=torch.float64, device=x.device).reshape(-1)
    if s.numel() not in (1, x.shape[0]):
        raise ValueError(f"s_cond has {s.numel()} levels for a batch of {x.shape[0]}")
    # The posterior mean is defined for s in [0, 1]; a search window that
    # spills past the ends sees the end value (pure data / pure noise).
    return s.clamp(0.0, 1.0).reshape(-1, 1, 1, 1)


class ExactDenoiser:
    """Posterior-mean denoiser of a model trained at resolution ``train_res``.

    Applied at resolution n it assumes ``assumed_power(n)`` per frequency;
    at n == train_res that is the truth and the denoiser is optimal.
    """

    def __init__(self, spectrum: FieldSpectrum, train_res: int, variant: str = "pixel"):
        _check_res(train_res)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.spectrum = spectrum
        self.train_res = int(train_res)
        self.variant = variant
        self._power_cache: dict[int, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (
            f"ExactDenoiser({self.spectrum!r}, train_res={self.train_res}, "
            f"variant={self.variant!r})"
        )

    def native(self, n: int) -> ExactDenoiser:
        """The same kind of model trained at n: the reference a method is measured against."""
        return ExactDenoiser(self.spectrum, n, self.variant)

    def assumed_power(self, n: int) -> torch.Tensor:
        """Per-frequency power [n, n] float64 the model assumes at resolution n."""
        _check_res(n)
        if n not in self._power_cache:
            m = self.train_res
            if n == m:
                p = self.spectrum.power(m)
            elif self.variant == "pixel":
                p = self.spectrum.power_at(n, scale=m / n, ref=m)
            else:
                p = self.spectrum.power_at(n, scale=1.0, ref=m)
            self._power_cache[n] = p
        return self._power_cache[n]

    def _apply(self, x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        # The gain is real and symmetric in k, so the filtered field is real.
        xf = torch.fft.fft2(x.to(torch.float64), norm="ortho")
        return torch.fft.ifft2(gain * xf, norm="ortho").real.to(x.dtype)

    def _power_for(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"expected x of shape [B, C, n, n], got {tuple(x.shape)}")
        return self.assumed_power(x.shape[-1]).to(x.device)

    def denoise(self, x: torch.Tensor, s_cond) -> torch.Tensor:
        """Posterior mean E[x0 | x_s] assuming level ``s_cond`` (scalar or [B])."""
        p = self._power_for(x)
        s = _level(s_cond, x)
        # Wiener gain; the denominator is > 0 on [0, 1] since P > 0, so s = 0
        # gives the identity and s = 1 gives zero without NaN.
        gain = (1 - s) * p / ((1 - s) ** 2 * p + s**2)
        return self._apply(x, gain)

    def velocity(self, x: torch.Tensor, s_cond) -> torch.Tensor:
        """Posterior-mean velocity E[eps - x0 | x_s] for the level the model is told.

        Equals ``(x - denoise(x, s)) / s``, but is formed in closed form,
        ``(s - (1 - s) P) / ((1 - s)^2 P + s^2)`` per frequency, so it stays
        exact as s -> 0 (where it tends to -x, since eps is independent of
        x0) instead of needing a clamp on the division. A sampler forms
        ``denoised = x - s_true * v``: a changed conditioning level changes
        the step only through v.
        """
        p = self._power_for(x)
        s = _level(s_cond, x)
        gain = (s - (1 - s) * p) / ((1 - s) ** 2 * p + s**2)
        return self._apply(x, gain)


def euler_sample(
    denoiser: ExactDenoiser,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    sigma_cond_fn: Callable[[float], object] | None = None,
) -> torch.Tensor:
    """Deterministic Euler on the flow ODE, step for step as ComfyUI's sample_euler.

    Starts from ``sigmas[0] * noise`` (ComfyUI's CONST noise scaling with an
    empty latent). ``sigma_cond_fn(sigma)`` is the level fed to the model
    (NoiseShift); the trajectory, the input and ``denoised = x - sigma * v``
    keep the true sigma.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    x = noise * float(sigmas[0])
    for i in range(len(sigmas) - 1):
        sigma = float(sigmas[i])
        sigma_next = float(sigmas[i + 1])
        if sigma <= 0:
            break  # already at the data; to_d would divide by zero
        sigma_cond = sigma if sigma_cond_fn is None else sigma_cond_fn(sigma)
        denoised = x - sigma * denoiser.velocity(x, sigma_cond)
        d = (x - denoised) / sigma
        x = x + d * (sigma_next - sigma)
    return x


def flow_sigmas(steps: int, shift: float = 1.0) -> torch.Tensor:
    """Linear flow schedule 1 -> 0 with ``steps + 1`` levels, float64.

    For shift != 1 applies ComfyUI's time shift ``shift*t / (1 + (shift-1)*t)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t
