"""Spectrally-guided noise schedules (docs/design.md section 2.4): bounds and step placement.

Per-frequency SNR. With ``P(f)`` the data's power per Fourier coefficient
(``noisecal.spectra``; orthonormal DFT, so unit-variance noise has power 1 per
coefficient), a noise level sigma gives

- flow (SD3, Flux; ``x = (1 - s) x0 + s eps``): ``SNR_f = (1 - s)^2 P(f) / s^2``
- ve (SD1.5, SDXL in k-diffusion sigmas; ``x = x0 + sigma eps``): ``SNR_f = P(f) / sigma^2``

Both are ``SNR_f = P(f) * exp(lam)`` with one offset ``lam`` per level
(flow ``2 log((1 - s) / s)``, ve ``-2 log sigma``). All the placement below is
done in ``lam``; the parameterization only maps ``lam`` back to sigma. So the
schedule is a set of absolute noise levels: it composes with a model's shift
by construction (a shift changes the model's sigma range and its timestep
map, not what a level does to the data), and the caller passes the model's
sigma range so nothing falls outside it.

Bounds (``schedule_bounds``). The DC bin (the mean) is excluded; the
channel-mean spectrum is used, since one sigma serves all channels.

- ``sigma_max``: the level at which even the strongest frequency has
  ``SNR <= snr_low``. Above it every frequency is drowned. Sampling that
  starts at ``sigma_max`` starts from pure noise at that scale (for flow,
  ComfyUI's CONST noise scaling is ``sigma * noise + (1 - sigma) * latent``,
  which for an empty latent is ``sigma * noise``: pure noise at a lower scale,
  not a noised image), so the strongest frequency starts with its amplitude
  short by a factor ``1 / sqrt(1 + snr_low)``, about ``snr_low / 2``.
  That start is ``start="spectral bound"``; the default, ``"model maximum"``,
  starts at the model's largest sigma instead (see ``DEFAULT_START``) and
  places the steps from there.
- ``sigma_min``: the level at which even the weakest frequency has
  ``SNR >= snr_high``. The last step jumps from there to 0 and returns the
  posterior mean, which shrinks a frequency's amplitude by
  ``sqrt(SNR / (1 + SNR))``, about ``1 - 1 / (2 snr_high)`` for the weakest.

So each threshold is an amplitude tolerance at one end of the range. The
defaults (``DEFAULT_SNR_LOW = 0.1``, ``DEFAULT_SNR_HIGH = 10``: a decade below
and above SNR = 1, i.e. about 5% amplitude at either end) hold at
``REFERENCE_STEPS = 8``. ``spectral_sigmas`` scales them with the step count,
``snr_low * (8 / steps)^2`` and ``snr_high * (steps / 8)^2`` (clamped so
``snr_low <= 1 <= snr_high``): with more steps the sampler's own error
shrinks, so the end errors must too. The exponent 2 is what the FD-optimal
schedules of the exact-denoiser testbed do: with Euler, their first level
keeps ``SNR_max * steps^2`` and their last ``SNR_min / steps^2`` within about
25% (first level) and a factor 3.5 (last level) from 4 to 16 steps
(``bench/schedules.py``, ``docs/results-schedules.md``). Fixed thresholds
(the exponent 0) lose to the core schedulers at 32 steps.

Placement. Between the bounds, steps are placed so each one makes the same
spectral progress. The progress of frequency f at a level is its amplitude
fraction ``a_f = sqrt(SNR_f) / (1 + sqrt(SNR_f))`` (flow:
``(1 - s) sqrt(P) / ((1 - s) sqrt(P) + s)``: signal std over signal std plus
noise std); the schedule's progress is the weighted mean of ``a_f`` over
frequencies, and the levels are where it crosses equal fractions of its
change from ``sigma_max`` to ``sigma_min``. The variants differ in the weights:

- ``"mix"`` (default): ``n_f * sqrt(P_f)``: every Fourier coefficient counts,
  by its amplitude: the geometric mean of the frequency and power weights.
- ``"logfreq"``: ``dlog f`` per bin: the frequency where SNR = 1 moves by equal
  amounts in log frequency (for a power-law spectrum: equal steps in log SNR).
- ``"frequency"``: ``n_f`` (coefficients in the bin): every Fourier
  coefficient counts the same, so high frequencies, which are most of them,
  get most steps.
- ``"power"``: ``n_f * P_f``: progress in resolved power, so steps go where
  the strong (low) frequencies resolve.

For a flat spectrum (all P equal) in flow, the amplitude fraction is linear in
s, so every variant is the linear ("simple") schedule between the bounds.

Why "mix" is the default (measured on the testbed, ``docs/results-schedules.md``):
with Euler, "mix", "logfreq" and "power" all beat every core scheduler at 4-8
steps on six spectra ("power" and "logfreq" by more); with dpmpp_2m, "power"
and "logfreq" put one very long step at the low end and lose 2-4x on average
(geometric mean over spectra and step counts), while "mix" stays below the
best core scheduler on average. No setting suits heun (a one-step
second-order method): a tight range costs it the end errors above, which its
own small error does not hide; wider thresholds (``snr_low=0.03``,
``snr_high=30``) with "power" serve it better (about even with the best core
scheduler: geometric mean ratio 0.98, worst 4.3x).

Per-seed schedules: with ``seed`` set, the spectrum is redrawn as
``log P_f + spread_f * (z0 + z1 * u_f) / sqrt(1 + u_f^2)``, with
``(z0, z1) ~ N(0, I)`` from ``torch.Generator().manual_seed(seed)`` and ``u_f``
running linearly in log f from -1 (lowest detail frequency) to +1 (highest):
a random level and tilt whose per-frequency standard deviation is exactly the
measured log spread. Same seed, same schedule; a zero spread gives the mean
schedule.
"""

from __future__ import annotations

import math

import torch

from .levels import check_parameterization, log_snr, sigma_from_log_snr
from .spectra import SpectrumStats

__all__ = [
    "VARIANTS",
    "DEFAULT_VARIANT",
    "STARTS",
    "DEFAULT_START",
    "DEFAULT_SNR_LOW",
    "DEFAULT_SNR_HIGH",
    "REFERENCE_STEPS",
    "THRESHOLD_EXPONENT",
    "default_thresholds",
    "log_snr_offset",
    "sigma_from_log_snr_offset",
    "schedule_bounds",
    "seed_power",
    "spectral_progress",
    "spectral_sigmas",
]

VARIANTS = ("mix", "logfreq", "frequency", "power")
DEFAULT_VARIANT = VARIANTS[0]
# Where the schedule starts: the model's largest sigma, or the spectral bound
# sigma_max. Starting at the bound samples pure noise at a lower scale, which
# lacks the low-frequency content a state at that level holds; on the
# dead-leaves networks that made patch SWD up to 3.5x worse than "simple" at
# 8 Euler steps (docs/results-dead-leaves.md), so the model's maximum is the default.
STARTS = ("model maximum", "spectral bound")
DEFAULT_START = STARTS[0]
DEFAULT_SNR_LOW = 0.1
DEFAULT_SNR_HIGH = 10.0
REFERENCE_STEPS = 8
THRESHOLD_EXPONENT = 2.0
_DEFAULT_RANGE = {"flow": (0.0, 1.0), "ve": (0.0, math.inf)}
_GRID = 4001  # lam grid for inverting the progress (interpolated in between)
_UNIFORM_FLOOR = 1e-3  # share of progress uniform in lam: keeps it strictly increasing
_FLOW_TOP = 1e-4  # flow's top level for the placement: sigma 1 - this (the first step uses 1)
_MIN_WIDTH = 1.0  # narrowest lam range (a flat spectrum at 1-2 steps would collapse)
_P_FLOOR = 1e-30


def log_snr_offset(sigma, parameterization: str = "flow") -> torch.Tensor:
    """``lam`` with ``SNR_f = P_f * exp(lam)`` (``levels.log_snr``), float64."""
    return log_snr(torch.as_tensor(sigma, dtype=torch.float64), parameterization)


def sigma_from_log_snr_offset(lam, parameterization: str = "flow") -> torch.Tensor:
    """Inverse of ``log_snr_offset`` (float64)."""
    return sigma_from_log_snr(torch.as_tensor(lam, dtype=torch.float64), parameterization)


def default_thresholds(steps: int) -> tuple[float, float]:
    """``(snr_low, snr_high)`` used by ``spectral_sigmas`` at ``steps`` (see module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    scale = (REFERENCE_STEPS / steps) ** THRESHOLD_EXPONENT
    return min(DEFAULT_SNR_LOW * scale, 1.0), max(DEFAULT_SNR_HIGH / scale, 1.0)


def _check_thresholds(snr_low: float, snr_high: float) -> None:
    for name, v in (("snr_low", snr_low), ("snr_high", snr_high)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


def _detail(stats: SpectrumStats, power=None):
    """Detail bins (DC excluded): ``(freqs, power, counts)`` float64 ``[F-1]``."""
    if not isinstance(stats, SpectrumStats):
        raise TypeError(f"stats must be a SpectrumStats, got {type(stats).__name__}")
    p = stats.mean_power() if power is None else torch.as_tensor(power, dtype=torch.float64)
    freqs = torch.tensor(stats.freqs[1:], dtype=torch.float64)
    counts = torch.tensor(stats.counts[1:], dtype=torch.float64)
    p = p[1:] if p.numel() == len(stats.freqs) else p
    if not bool((p > 0).any()):
        raise ValueError("the spectrum has no power outside DC: nothing to schedule")
    return freqs, p.clamp_min(_P_FLOOR), counts


def _bounds_lam(p: torch.Tensor, snr_low: float, snr_high: float) -> tuple[float, float]:
    lam_lo = math.log(snr_low) - math.log(float(p.max()))
    lam_hi = math.log(snr_high) - math.log(float(p.min()))
    return lam_lo, lam_hi


def schedule_bounds(
    stats: SpectrumStats,
    parameterization: str = "flow",
    *,
    snr_high: float = DEFAULT_SNR_HIGH,
    snr_low: float = DEFAULT_SNR_LOW,
) -> tuple[float, float]:
    """``(sigma_min, sigma_max)`` of the spectrum (not clipped to any model's range).

    ``sigma_max``: strongest detail frequency at ``SNR = snr_low``; ``sigma_min``:
    weakest at ``SNR = snr_high``. Closed form with ``P_max``, ``P_min`` the
    extreme channel-mean powers (DC excluded): flow ``1 / (1 + sqrt(snr / P))``,
    ve ``sqrt(P / snr)``. A lower ``snr_low`` raises ``sigma_max``; a higher
    ``snr_high`` lowers ``sigma_min``.
    """
    _check_thresholds(snr_low, snr_high)
    _, p, _ = _detail(stats)
    lam_lo, lam_hi = _bounds_lam(p, snr_low, snr_high)
    sigma_max = float(sigma_from_log_snr_offset(lam_lo, parameterization))
    sigma_min = float(sigma_from_log_snr_offset(lam_hi, parameterization))
    return sigma_min, sigma_max


def _weights(variant: str, freqs: torch.Tensor, p: torch.Tensor, counts: torch.Tensor):
    if variant == "mix":
        w = counts * p.sqrt()
    elif variant == "logfreq":
        w = torch.gradient(freqs)[0] / freqs if freqs.numel() > 1 else torch.ones_like(freqs)
    elif variant == "frequency":
        w = counts.clone()
    elif variant == "power":
        w = counts * p
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return w / w.sum()


def _progress(lam: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Weighted mean amplitude fraction sigmoid((log P + lam) / 2) at each lam."""
    x = 0.5 * (torch.log(p)[None, :] + lam.reshape(-1, 1))
    return (w * torch.sigmoid(x)).sum(-1)


def seed_power(stats: SpectrumStats, seed: int | None) -> torch.Tensor:
    """Channel-mean power ``[F]`` for ``seed`` (the mean spectrum when seed is None)."""
    p = stats.mean_power()
    if seed is None:
        return p
    spread = stats.mean_spread()
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(2, generator=gen, dtype=torch.float64)
    logf = torch.log(torch.tensor(stats.freqs[1:], dtype=torch.float64))
    span = float(logf[-1] - logf[0]) if logf.numel() > 1 else 0.0
    u = (2 * (logf - logf[0]) / span - 1) if span > 0 else torch.zeros_like(logf)
    u = torch.cat([torch.zeros(1, dtype=torch.float64), u])  # DC: level only
    draw = (z[0] + z[1] * u) / torch.sqrt(1 + u * u)
    return torch.exp(torch.log(p.clamp_min(_P_FLOOR)) + spread * draw)


def spectral_progress(
    stats: SpectrumStats,
    sigmas,
    *,
    parameterization: str = "flow",
    variant: str = DEFAULT_VARIANT,
    power=None,
) -> torch.Tensor:
    """The variant's progress (weighted mean amplitude fraction, 0..1) at each sigma."""
    freqs, p, counts = _detail(stats, power)
    w = _weights(variant, freqs, p, counts)
    s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    lam = log_snr_offset(s, parameterization)
    out = _progress(lam.clamp(-1e4, 1e4), w, p)
    return torch.where(s <= 0, torch.ones_like(out), out)


def _model_lam_range(sigma_range, parameterization: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in sigma_range)
    if not (lo >= 0 and hi > lo):
        raise ValueError(f"sigma_range must be (min, max) with 0 <= min < max, got {sigma_range}")
    lam_lo = float(log_snr_offset(hi, parameterization)) if math.isfinite(hi) else -math.inf
    if check_parameterization(parameterization) == "flow" and hi >= 1.0:
        lam_lo = -math.inf
    lam_hi = float(log_snr_offset(lo, parameterization)) if lo > 0 else math.inf
    return lam_lo, lam_hi


def _model_start_lam(sigma_range, parameterization: str) -> float:
    """The log-SNR offset of the model's largest sigma (finite: flow's 1 is pure noise)."""
    hi = float(sigma_range[1])
    if check_parameterization(parameterization) == "flow":
        hi = min(hi, 1.0 - _FLOW_TOP)
    return float(log_snr_offset(hi, parameterization))


def _levels(stats, steps, parameterization, variant, sigma_range, power, snr_low, snr_high, start):
    """``steps`` descending sigmas (float64) from the start to sigma_min, no final 0."""
    freqs, p, counts = _detail(stats, power)
    w = _weights(variant, freqs, p, counts)
    lam_lo, lam_hi = _bounds_lam(p, snr_low, snr_high)
    if lam_hi - lam_lo < _MIN_WIDTH:
        mid = 0.5 * (lam_lo + lam_hi)
        lam_lo, lam_hi = mid - _MIN_WIDTH / 2, mid + _MIN_WIDTH / 2
    m_lo, m_hi = _model_lam_range(sigma_range, parameterization)
    lo, hi = max(lam_lo, m_lo), min(lam_hi, m_hi)
    if not hi > lo:
        s_min, s_max = (
            float(sigma_from_log_snr_offset(v, parameterization)) for v in (lam_hi, lam_lo)
        )
        raise ValueError(
            f"the spectrum's useful noise range [{s_min:.4g}, {s_max:.4g}] does not overlap the "
            f"model's sigma range [{sigma_range[0]:.4g}, {sigma_range[1]:.4g}]: wrong "
            f"parameterization or a spectrum from other latents?"
        )
    if start == "model maximum":
        lo = _model_start_lam(sigma_range, parameterization)
    if steps == 1:
        return sigma_from_log_snr_offset(torch.tensor([lo], dtype=torch.float64), parameterization)
    grid = torch.linspace(lo, hi, _GRID, dtype=torch.float64)
    prog = _progress(grid, w, p)
    prog = (prog - prog[0]) / (prog[-1] - prog[0]).clamp_min(1e-300)
    uniform = torch.linspace(0.0, 1.0, _GRID, dtype=torch.float64)
    prog = (1 - _UNIFORM_FLOOR) * prog + _UNIFORM_FLOOR * uniform
    targets = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    idx = torch.searchsorted(prog, targets).clamp(1, _GRID - 1)
    frac = (targets - prog[idx - 1]) / (prog[idx] - prog[idx - 1])
    lam = grid[idx - 1] + frac.clamp(0, 1) * (grid[idx] - grid[idx - 1])
    lam[0], lam[-1] = lo, hi
    return sigma_from_log_snr_offset(lam, parameterization)


def spectral_sigmas(
    stats: SpectrumStats,
    steps: int,
    *,
    parameterization: str = "flow",
    variant: str = DEFAULT_VARIANT,
    sigma_range=None,
    seed: int | None = None,
    denoise: float = 1.0,
    start: str = DEFAULT_START,
    snr_low: float | None = None,
    snr_high: float | None = None,
) -> torch.Tensor:
    """A SIGMAS tensor: descending float32, ``steps + 1`` values ending at 0.

    ``sigma_range``: the model's ``(sigma_min, sigma_max)`` (its
    ``model_sampling``); the bounds are intersected with it, so every nonzero
    value lies inside. Defaults: flow ``(0, 1)``, ve ``(0, inf)``.
    ``snr_low`` / ``snr_high``: fixed thresholds; None (default) uses
    ``default_thresholds(total steps)``. ``seed``: per-seed spectrum (see the
    module docstring). ``denoise < 1``: like ComfyUI's BasicScheduler, the last
    ``steps + 1`` values of the schedule for ``int(steps / denoise)`` steps;
    ``denoise <= 0`` gives an empty tensor. ``start``: ``"model maximum"``
    (default) begins at the model's largest sigma, ``"spectral bound"`` at the
    spectral sigma_max (see ``DEFAULT_START``).
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    steps = int(steps)
    if not (isinstance(denoise, (int, float)) and math.isfinite(denoise)):
        raise ValueError(f"denoise must be a finite number, got {denoise!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    param = check_parameterization(parameterization)
    if denoise <= 0:
        return torch.zeros(0, dtype=torch.float32)
    total = steps if denoise >= 0.9999 else int(steps / denoise)
    default_low, default_high = default_thresholds(total)
    snr_low = default_low if snr_low is None else float(snr_low)
    snr_high = default_high if snr_high is None else float(snr_high)
    _check_thresholds(snr_low, snr_high)
    if sigma_range is None:
        sigma_range = _DEFAULT_RANGE[param]
    power = seed_power(stats, seed)
    levels = _levels(stats, total, param, variant, sigma_range, power, snr_low, snr_high, start)
    lo, hi = float(sigma_range[0]), float(sigma_range[1])
    levels = levels.clamp(min=lo, max=hi)
    if start == "model maximum" and math.isfinite(hi):
        levels[0] = hi
    sigmas = torch.cat([levels, torch.zeros(1, dtype=torch.float64)]).to(torch.float32)
    if total != steps:
        sigmas = sigmas[-(steps + 1) :]
    return sigmas
