"""The NoiseShift curve: sigma -> sigma_hat, monotone and piecewise linear in sigma.

What the sampler applies (noisecal/noiseshift.py) and what the store checks a
file's sigma_hat by (one definition of the rules); calibrated by
noisecal/noiseshift_search.py.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SigmaHatCurve", "interp_sigma_hat", "as_sigma_list"]


def as_sigma_list(sigmas) -> list[float]:
    """A schedule (1-D tensor or array-like) as a list of floats."""
    if isinstance(sigmas, torch.Tensor):
        if sigmas.dim() != 1:
            raise ValueError(f"sigmas must be 1-D, got shape {tuple(sigmas.shape)}")
        return [float(s) for s in sigmas.detach().cpu().tolist()]
    return [float(s) for s in np.asarray(sigmas, dtype=np.float64).reshape(-1)]


def interp_sigma_hat(sigmas, sigma_hat, query, *, max_level: float | None = None):
    """Monotone, piecewise-linear (in sigma) map sigma -> sigma_hat.

    Exact at the calibrated points; between the smallest calibrated level and
    0 it runs linearly to (0, 0), so sigma = 0 gives 0. Above the largest
    calibrated level it keeps that level's additive shift
    (``sigma + sigma_hat_max - sigma_max``, slope 1), clipped to
    ``[0, max_level]`` when ``max_level`` is given (1.0 for flow models).
    Negative queries are returned unchanged. ``query`` may be a float (float
    returned), a tensor (tensor of the same dtype and device) or an
    array-like (numpy array). To evaluate one curve many times (every
    sampling step), build a `SigmaHatCurve` once instead.
    """
    return SigmaHatCurve(sigmas, sigma_hat, max_level=max_level)(query)


class SigmaHatCurve:
    """The map of `interp_sigma_hat`, validated once; calls cost a few microseconds."""

    def __init__(self, sigmas, sigma_hat, *, max_level: float | None = None):
        xs = as_sigma_list(sigmas)
        ys = as_sigma_list(sigma_hat)
        if len(xs) != len(ys) or not xs:
            raise ValueError("sigmas and sigma_hat must be non-empty and of equal length")
        pairs = sorted(zip(xs, ys, strict=True))
        if any(x < 0 or y < 0 for x, y in pairs):
            raise ValueError("calibrated levels must be >= 0")
        pairs = [(x, y) for x, y in pairs if x > 0 or y != 0]  # (0, 0) is the anchor anyway
        if any(x == 0 for x, _ in pairs):
            raise ValueError("sigma_hat at sigma = 0 must be 0")
        if not pairs:
            raise ValueError("no calibrated level > 0")
        pairs = [(0.0, 0.0), *pairs]
        if any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:], strict=False)):
            raise ValueError("calibrated sigmas must be distinct")
        if any(b[1] < a[1] for a, b in zip(pairs, pairs[1:], strict=False)):
            raise ValueError("sigma_hat must be monotone (non-increasing along the schedule)")
        self.kx = np.array([p[0] for p in pairs], dtype=np.float64)
        self.ky = np.array([p[1] for p in pairs], dtype=np.float64)
        self.max_level = None if max_level is None else float(max_level)

    def __call__(self, query):
        if isinstance(query, torch.Tensor):
            flat = query.detach().to("cpu", torch.float64).numpy().reshape(-1)
            res = torch.from_numpy(self._evaluate(flat)).reshape(query.shape)
            return res.to(device=query.device, dtype=query.dtype)
        if isinstance(query, (int, float)):
            return float(self._evaluate(np.array([float(query)]))[0])
        arr = np.asarray(query, dtype=np.float64)
        return self._evaluate(arr.reshape(-1)).reshape(arr.shape)

    def _evaluate(self, flat: np.ndarray) -> np.ndarray:
        kx, ky, top = self.kx, self.ky, self.max_level
        inside = np.interp(flat, kx, ky)
        above = np.maximum(flat + (ky[-1] - kx[-1]), 0.0)
        if top is not None:
            above = np.minimum(above, top)
        res = np.where(flat > kx[-1], above, inside)
        if top is not None:
            # inside the calibrated range values never exceed max_level for valid
            # input; the clamp keeps the contract for hand-edited tables
            res = np.minimum(res, top)
        return np.where(flat < 0, flat, res)
