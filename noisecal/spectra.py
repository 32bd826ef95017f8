"""Radially averaged power spectral density (RAPSD) of latents.

The spectral schedule (docs/design.md section 2.4) reads the data's power per spatial
frequency from calibration latents at the target resolution. Conventions:

- Orthonormal 2D DFT (``norm="ortho"``) per sample and channel, so ``|X_k|^2``
  is the power of one Fourier coefficient and the mean of ``|X_k|^2`` over all
  bins equals the per-pixel mean of ``x^2`` (Parseval). A field of unit
  per-pixel variance has mean power 1: that is the scale the model's noise
  (variance 1 per coefficient) is compared against.
- Frequency in cycles per pixel, radial ``f = sqrt(fx^2 + fy^2)`` with
  ``fx, fy`` from ``fftfreq`` (so Nyquist is 0.5 and the corners of the 2D
  grid reach 0.5 * sqrt(2)). Bins are annuli of width ``1 / max(h, w)``
  centred on ``j / max(h, w)``, j = 0, 1, ...; bin 0 holds only DC (the mean,
  not detail: excluded from the schedule's bounds). The corners beyond
  Nyquist are kept: they are part of the latent and of the FD measure.
  Empty bins (possible for non-square latents) are dropped.
- ``power[c][j]``: the mean over samples of the per-sample RAPSD (itself the
  mean of ``|X_k|^2`` over the bin's 2D coefficients).
- ``spread[c][j]``: the standard deviation over samples of the natural log of
  the per-sample RAPSD: a relative spread, used to draw per-seed spectra as
  ``log P + spread * z``. ``spread_mean[j]``: the same for the channel-mean
  RAPSD, which is what the schedule uses (channels that vary independently
  average out, so it is smaller than the per-channel spread). Both include the
  estimator's own noise (a bin of m complex coefficients of a Gaussian field
  has a log-spread of about ``1 / sqrt(m)``), so low-frequency bins, which
  hold few coefficients, show more spread than content variation alone gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["SpectrumStats", "rapsd", "radial_bins", "per_sample_rapsd", "fourier_power", "bin_mean"]

SPECTRUM_FORMAT = "rapsd-v1"
_LOG_FLOOR = 1e-30  # keeps log finite for an all-zero bin (a constant latent)


def radial_bins(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bin index of each 2D DFT coefficient, bin centres (cycles per pixel) and counts.

    Returns ``(index [h, w] long, centres [F] float64, counts [F] long)`` with
    empty bins removed and indices renumbered 0..F-1 (bin 0 is DC).
    """
    if h < 1 or w < 1:
        raise ValueError(f"latent size must be positive, got {h}x{w}")
    n_ref = max(h, w)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    raw = torch.round(radius * n_ref).to(torch.long)
    counts_raw = torch.bincount(raw.reshape(-1))
    present = torch.nonzero(counts_raw > 0).reshape(-1)
    remap = torch.full((counts_raw.numel(),), -1, dtype=torch.long)
    remap[present] = torch.arange(present.numel())
    index = remap[raw]
    centres = present.to(torch.float64) / n_ref
    return index, centres, counts_raw[present]


def per_sample_rapsd(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RAPSD of each sample and channel: ``([n, C, F] float64, centres [F], counts [F])``."""
    if latents.ndim != 4:
        raise ValueError(f"expected latents of shape [n, C, h, w], got {tuple(latents.shape)}")
    n, c, h, w = latents.shape
    if n < 1 or c < 1:
        raise ValueError(f"expected at least one sample and channel, got {tuple(latents.shape)}")
    index, centres, counts = radial_bins(h, w)
    x = latents.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("latents contain NaN or infinite values")
    return bin_mean(fourier_power(x), index, counts), centres, counts


def fourier_power(x: torch.Tensor) -> torch.Tensor:
    """``|X_k|^2`` of each orthonormal 2D DFT coefficient of ``x`` [..., h, w], float64."""
    return torch.fft.fft2(x.to(torch.float64), norm="ortho").abs().square()


def bin_mean(power2d: torch.Tensor, index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean of ``power2d`` [..., h, w] within each radial bin (``radial_bins``): [..., F]."""
    lead, (h, w) = power2d.shape[:-2], power2d.shape[-2:]
    flat = power2d.reshape(-1, h * w)
    sums = torch.zeros(flat.shape[0], counts.numel(), dtype=torch.float64, device=flat.device)
    sums.index_add_(1, index.reshape(-1).to(flat.device), flat)
    return (sums / counts.to(flat.device, torch.float64)).reshape(*lead, -1)


@dataclass
class SpectrumStats:
    """Per-channel RAPSD of a set of latents (see the module docstring for conventions).

    ``freqs``: bin centres in cycles per pixel, ``[F]``, ascending, ``freqs[0] == 0`` (DC).
    ``power``: ``[C][F]`` mean over samples. ``spread``: ``[C][F]`` std over samples of
    the log per-sample RAPSD (0 for a single sample). ``counts``: 2D coefficients per
    bin. ``count``: samples measured. ``latent_size``: ``(h, w)``.
    """

    freqs: list[float]
    power: list[list[float]]
    spread: list[list[float]]
    count: int
    latent_size: tuple[int, int]
    counts: list[int] = field(default_factory=list)
    spread_mean: list[float] | None = None

    def __post_init__(self) -> None:
        self.freqs = [float(v) for v in self.freqs]
        self.power = [[float(v) for v in row] for row in self.power]
        self.spread = [[float(v) for v in row] for row in self.spread]
        self.count = int(self.count)
        self.latent_size = (int(self.latent_size[0]), int(self.latent_size[1]))
        n_f = len(self.freqs)
        if n_f < 2:
            raise ValueError("a spectrum needs at least the DC bin and one frequency")
        if any(b <= a for a, b in zip(self.freqs, self.freqs[1:], strict=False)):
            raise ValueError("spectrum freqs must be strictly ascending")
        if not self.power or any(len(row) != n_f for row in self.power):
            raise ValueError(f"spectrum power must be [C][{n_f}]")
        if len(self.spread) != len(self.power) or any(len(row) != n_f for row in self.spread):
            raise ValueError(f"spectrum spread must be [C][{n_f}] like power")
        values = [v for row in self.power + self.spread for v in row] + self.freqs
        if not all(math.isfinite(v) for v in values):
            raise ValueError("spectrum values must be finite")
        if any(v < 0 for row in self.power + self.spread for v in row):
            raise ValueError("spectrum power and spread must be >= 0")
        if self.count < 1:
            raise ValueError(f"spectrum count must be >= 1, got {self.count}")
        if self.counts:
            self.counts = [int(v) for v in self.counts]
            if len(self.counts) != n_f or any(v < 1 for v in self.counts):
                raise ValueError(f"spectrum counts must be {n_f} positive integers")
        else:
            # unknown (a hand-written spectrum): weigh bins like full annuli, ~ 2 pi f n
            n_ref = max(self.latent_size)
            self.counts = [1] + [max(1, round(2 * math.pi * f * n_ref)) for f in self.freqs[1:]]
        if self.spread_mean is not None:
            self.spread_mean = [float(v) for v in self.spread_mean]
            if len(self.spread_mean) != n_f:
                raise ValueError(f"spectrum spread_mean must have {n_f} values")
            if not all(math.isfinite(v) and v >= 0 for v in self.spread_mean):
                raise ValueError("spectrum spread_mean must be finite and >= 0")

    @property
    def channels(self) -> int:
        return len(self.power)

    def mean_power(self) -> torch.Tensor:
        """Channel-mean power ``[F]`` float64: the schedule is shared by all channels."""
        return torch.tensor(self.power, dtype=torch.float64).mean(dim=0)

    def mean_spread(self) -> torch.Tensor:
        """Log spread of the channel-mean spectrum, ``[F]`` float64.

        ``spread_mean`` when measured; otherwise (a hand-written spectrum) the
        root-mean-square of the channel spreads, as if channels varied together.
        """
        if self.spread_mean is not None:
            return torch.tensor(self.spread_mean, dtype=torch.float64)
        s = torch.tensor(self.spread, dtype=torch.float64)
        return s.square().mean(dim=0).sqrt()

    def to_json(self) -> dict:
        """Plain lists and numbers for the calibration record's ``spectrum`` field."""
        return {
            "format": SPECTRUM_FORMAT,
            "freq_unit": "cycles/pixel",
            "spread_kind": "std of log per-sample RAPSD",
            "freqs": list(self.freqs),
            "power": [list(row) for row in self.power],
            "spread": [list(row) for row in self.spread],
            "spread_mean": None if self.spread_mean is None else list(self.spread_mean),
            "counts": list(self.counts),
            "count": self.count,
            "latent_size": [self.latent_size[0], self.latent_size[1]],
        }

    @classmethod
    def from_json(cls, data: dict) -> SpectrumStats:
        """Inverse of ``to_json``; raises ValueError (naming the problem) on bad input."""
        if not isinstance(data, dict):
            raise ValueError(f"spectrum must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format", SPECTRUM_FORMAT)
        if fmt != SPECTRUM_FORMAT:
            raise ValueError(
                f"spectrum format {fmt!r} is not supported (expected {SPECTRUM_FORMAT})"
            )
        try:
            return cls(
                freqs=data["freqs"],
                power=data["power"],
                spread=data.get("spread") or [[0.0] * len(data["freqs"]) for _ in data["power"]],
                count=data["count"],
                latent_size=tuple(data["latent_size"]),
                counts=data.get("counts") or [],
                spread_mean=data.get("spread_mean"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"spectrum is missing or has a malformed field: {exc}") from None


def rapsd(latents: torch.Tensor) -> SpectrumStats:
    """RAPSD statistics of ``latents`` ``[n, C, h, w]`` (model-space latents at the target size)."""
    per_sample, centres, counts = per_sample_rapsd(latents)
    n = per_sample.shape[0]
    power = per_sample.mean(dim=0)
    if n > 1:
        spread = per_sample.clamp_min(_LOG_FLOOR).log().std(dim=0, unbiased=True)
        channel_mean = per_sample.mean(dim=1).clamp_min(_LOG_FLOOR)
        spread_mean = channel_mean.log().std(dim=0, unbiased=True)
    else:
        spread = torch.zeros_like(power)
        spread_mean = torch.zeros(power.shape[-1], dtype=torch.float64)
    return SpectrumStats(
        freqs=centres.tolist(),
        power=power.tolist(),
        spread=spread.tolist(),
        count=n,
        latent_size=(latents.shape[-2], latents.shape[-1]),
        counts=counts.tolist(),
        spread_mean=spread_mean.tolist(),
    )
