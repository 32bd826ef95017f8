"""Noise Awareness Guidance, training-free (after arXiv 2510.12497).

The paper mixes `(w + 1) s(x | t) - w s(x)`, s(x) a noise-level-unconditional
score learned by noise-condition dropout. Pretrained SD3/Flux/SDXL have no
such branch, so the second branch is the same network conditioned on
another level, and the mix is done in denoised space on top of CFG:

    out = cfg_result + w_eff * (cond - cond_other)

Levels are handled in the flow-equivalent level u in [0, 1] (flow: u = sigma;
eps/v models: u = sigma / (1 + sigma), the flow level with the same
signal-to-noise ratio), so the same settings mean the same on every model.

Modes for the other level:
- `offset`: u shifted by `offset` in log-SNR, lambda = 2 log((1 - u) / u):
  lambda_other = lambda - offset (offset > 0: a noisier level). Free.
- `estimated`: the level read off the latent itself: the power in the top
  frequency band (the outer `band` fraction of radial frequency, where
  latents of natural images hold little signal) taken as noise power,
  u_est = sqrt(power) for flow states (noise std u), sigma_est = sqrt(power)
  for VE states. Cost: one FFT of the latent per step, no network call. It
  over-estimates the noise when the data has strong fine detail.
- `pseudo-level`: a fixed level u = `pseudo_level`, for models fine-tuned with
  noise-condition dropout whose "null" level stands for "unknown noise".

Weight: `w` per step (`constant`, the paper's form), or per unit of u
travelled (`per step size`, w_eff = w * (u - u_next)): the correction then
shrinks with the step, as discretization error does, instead of
over-correcting at many steps. Guidance is off outside [level_end,
level_start] (in u). Guard: a term whose RMS exceeds `guard` x the RMS of
(cfg_result - x) is scaled down to that, per sample, and non-finite terms are
dropped, so a bad step cannot blow a sample up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .levels import log_snr, sigma_from_log_snr, sigma_to_u, u_to_sigma

MODES = ("offset", "estimated", "pseudo-level")
WEIGHT_SCHEDULES = ("per step size", "constant")
_EDGE = 1e-4  # keep u inside (0, 1) for the log-SNR


to_u = sigma_to_u  # sigma -> u; back with from_u, which keeps u near 1 finite


def from_u(u: torch.Tensor, parameterization: str) -> torch.Tensor:
    return u_to_sigma(u, parameterization, floor=_EDGE)


def offset_level(u: torch.Tensor, offset: float) -> torch.Tensor:
    u = u.clamp(_EDGE, 1 - _EDGE)
    return sigma_from_log_snr(log_snr(u, "flow") - offset, "flow")


def estimated_level(x: torch.Tensor, parameterization: str, band: float = 0.25) -> torch.Tensor:
    """Per-sample level from the top `band` of radial frequency (see module doc)."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device).abs()[:, None]
    fx = torch.fft.fftfreq(w, device=x.device).abs()[None, :]
    radius = torch.sqrt(fy**2 + fx**2) / math.sqrt(0.5)  # 1 at the corner
    mask = radius >= 1 - band
    spectrum = torch.fft.fft2(x.float(), norm="ortho").abs().pow(2)
    power = spectrum[..., mask].flatten(1).mean(dim=1)
    level = power.sqrt()
    return sigma_to_u(level, parameterization).clamp(0.0, 1.0)


@dataclass(frozen=True)
class GuidanceSettings:
    weight: float = 0.0
    mode: str = "offset"
    offset: float = 1.0
    pseudo_level: float = 1.0
    weight_schedule: str = "per step size"
    level_start: float = 1.0
    level_end: float = 0.0
    guard: float = 1.0
    band: float = 0.25

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.weight_schedule not in WEIGHT_SCHEDULES:
            raise ValueError(f"weight_schedule must be one of {WEIGHT_SCHEDULES}")
        if not 0 <= self.level_end <= self.level_start <= 1:
            raise ValueError("need 0 <= level_end <= level_start <= 1 (flow-equivalent levels)")

    def active(self, u: torch.Tensor) -> torch.Tensor:
        return (u <= self.level_start) & (u >= self.level_end)

    def other_level(self, level_u: torch.Tensor, x: torch.Tensor, parameterization: str):
        """The other branch's level, in u (`level_u` is what the cond branch was told)."""
        if self.mode == "offset":
            return offset_level(level_u, self.offset)
        if self.mode == "estimated":
            return estimated_level(x, parameterization, self.band).to(level_u)
        return torch.full_like(level_u, self.pseudo_level)

    def weight_at(self, u: torch.Tensor, u_next: torch.Tensor | None) -> torch.Tensor:
        """Per-sample effective weight; zero outside the level range."""
        w = torch.full_like(u, float(self.weight))
        if self.weight_schedule == "per step size":
            step = (u - u_next).clamp(min=0) if u_next is not None else torch.zeros_like(u)
            w = w * step
        return torch.where(self.active(u), w, torch.zeros_like(w))


def combine(cfg_result, cond, cond_other, x, weight, guard: float):
    """out = cfg_result + w * (cond - cond_other), the term limited per sample."""
    shape = (-1,) + (1,) * (cfg_result.dim() - 1)
    term = weight.view(shape).to(cfg_result) * (cond - cond_other)
    dims = tuple(range(1, term.dim()))
    finite = torch.isfinite(term).all(dim=dims)
    term = torch.where(finite.view(shape), term, torch.zeros_like(term))
    rms_term = term.pow(2).mean(dim=dims).sqrt()
    rms_step = (cfg_result - x).pow(2).mean(dim=dims).sqrt()
    limit = guard * rms_step
    scale = torch.where(
        rms_term > limit, limit / rms_term.clamp(min=1e-12), torch.ones_like(rms_term)
    )
    return cfg_result + term * scale.view(shape)
