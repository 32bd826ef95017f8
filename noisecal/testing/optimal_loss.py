"""The lowest flow-matching loss any network can reach on the testbed's Gaussian field.

Training pairs are ``x_t = (1 - t) x0 + t eps`` with target ``u = eps - x0``.
In the orthonormal Fourier basis every frequency k is an independent Gaussian
pair with ``Var(x0_k) = P_k`` and ``Var(eps_k) = 1``, so the best predictor of
u from x_t is linear per frequency and its mean squared error is

    1 + P - (t - (1 - t) P)^2 / ((1 - t)^2 P + t^2)

(``Var(u) - Cov(u, x_t)^2 / Var(x_t)``). By Parseval the per-element MSE a
network is trained on is the mean of that over the frequencies; the loss of a
training run is its further average over the distribution of t. For the
logit-normal distribution (``t = sigmoid(m + s z)``, z standard normal) the
t-average is a one-dimensional integral over z, done here by the trapezoid rule
on a fine grid (the integrand is smooth and bounded by ``1 + max P``).

Host-free: torch only.
"""

from __future__ import annotations

import math

import torch

from .testbed import FieldSpectrum

__all__ = ["mmse_per_frequency", "optimal_loss_at", "optimal_flow_loss"]


def mmse_per_frequency(power: torch.Tensor, t) -> torch.Tensor:
    """Minimum MSE of predicting ``eps - x0`` from ``x_t`` for each power P and level t.

    ``power`` and ``t`` broadcast against each other; float64 result.
    """
    p = torch.as_tensor(power, dtype=torch.float64)
    t = torch.as_tensor(t, dtype=torch.float64)
    cov = t - (1 - t) * p
    var_x = (1 - t) ** 2 * p + t**2
    return 1 + p - cov**2 / var_x


def optimal_loss_at(spectrum: FieldSpectrum, n: int, t) -> torch.Tensor:
    """Optimal per-element loss at level(s) t for the field at resolution n (mean over k)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    p = spectrum.power(n).reshape(-1)
    return mmse_per_frequency(p, t.reshape(*t.shape, 1)).mean(dim=-1)


def optimal_flow_loss(
    spectrum: FieldSpectrum,
    n: int,
    t_mean: float = 0.0,
    t_std: float = 1.0,
    nodes: int = 4001,
    z_max: float = 10.0,
) -> float:
    """Optimal flow-matching loss on the field at resolution n, t ~ logit-normal(t_mean, t_std).

    The average over t is the trapezoid rule on ``nodes`` points of z in
    [-z_max, z_max]; the defaults are accurate to far below 1e-6.
    """
    if not t_std > 0:
        raise ValueError(f"t_std must be > 0, got {t_std}")
    z = torch.linspace(-z_max, z_max, nodes, dtype=torch.float64)
    weight = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    t = torch.sigmoid(t_mean + t_std * z)
    loss = optimal_loss_at(spectrum, n, t)
    return float(torch.trapezoid(loss * weight, z) / torch.trapezoid(weight, z))
