"""Noise levels: parameterizations, the flow-equivalent level, log-SNR, schedule checks.

Parameterizations. The calibration file names a model's by its prediction:
``"flow"`` (SD3, Flux: ``x = (1 - s) x0 + s eps``), ``"eps"`` or ``"v"``
(SD1.5, SDXL). Level arithmetic needs only the family: eps and v models
sample in ComfyUI's k-diffusion form ``x = x0 + sigma eps``, family ``"ve"``.
The searches take a family; the spectral schedule and the guidance take
either name.

Flow-equivalent level ``u`` (the same signal-to-noise ratio as ``sigma``):
flow ``u = sigma``; ve ``u = sigma / (1 + sigma)``, back ``sigma = u / (1 - u)``.

Log-SNR offset ``lam`` (``SNR_f = P_f * exp(lam)`` for a frequency of power
``P_f``): flow ``2 log((1 - s) / s)``, ve ``-2 log sigma``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "PARAMETERIZATIONS",
    "FAMILIES",
    "check_parameterization",
    "sigma_to_u",
    "u_to_sigma",
    "log_snr",
    "sigma_from_log_snr",
    "check_descending",
]

PARAMETERIZATIONS = ("flow", "eps", "v")  # the calibration file's names
FAMILIES = ("flow", "ve")  # level spaces: what the searches take
_FAMILY = {"flow": "flow", "eps": "ve", "v": "ve", "ve": "ve"}


def check_parameterization(parameterization: str, allowed: Sequence[str] = tuple(_FAMILY)) -> str:
    """The family ("flow" or "ve") of ``parameterization``; ValueError unless it is in ``allowed``."""
    if parameterization not in allowed:
        raise ValueError(
            f"parameterization must be one of {tuple(allowed)}, got {parameterization!r}"
        )
    return _FAMILY[parameterization]


def sigma_to_u(sigma, parameterization: str):
    """Flow-equivalent level of ``sigma`` (a float or a tensor)."""
    if check_parameterization(parameterization) == "flow":
        return sigma
    return sigma / (1 + sigma)


def u_to_sigma(u, parameterization: str, *, floor: float | None = None):
    """Inverse of :func:`sigma_to_u`. A ve ``u >= 1`` has no sigma: for a float it
    raises; for a tensor pass ``floor``, the least ``1 - u`` divided by."""
    if check_parameterization(parameterization) == "flow":
        return u
    if floor is not None:
        return u / (1 - u).clamp(min=floor)
    if u >= 1.0:
        raise ValueError(f"flow-equivalent level u={u} has no ve sigma (needs u < 1)")
    return u / (1 - u)


def log_snr(sigma: torch.Tensor, parameterization: str) -> torch.Tensor:
    """Log-SNR offset ``lam`` of the levels ``sigma``, in their own dtype."""
    if check_parameterization(parameterization) == "flow":
        return 2 * torch.log((1 - sigma) / sigma)
    return -2.0 * torch.log(sigma)


def sigma_from_log_snr(lam: torch.Tensor, parameterization: str) -> torch.Tensor:
    """Inverse of :func:`log_snr`."""
    if check_parameterization(parameterization) == "flow":
        return torch.sigmoid(-lam / 2)
    return torch.exp(-lam / 2)


def check_descending(levels: Sequence[float], what: str = "sigmas") -> None:
    """ValueError unless ``levels`` is strictly descending."""
    if any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
        raise ValueError(f"{what} must be strictly descending")
