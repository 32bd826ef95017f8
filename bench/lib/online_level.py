"""A naive online source of the conditioning level: at every network call, each
sample's "apparent noise level", the flow level s whose marginal spectrum
(1 - s)^2 S_data + s^2 (S_data from the calibration latents) best matches the
sample's radially averaged power, installed as the correction's state function."""

from __future__ import annotations

import torch

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
from noise_calibration.noisecal.spectra import per_sample_rapsd
from noise_calibration.noisecal_host import conditioning_level


def apparent_level(data_power, weights, grid: int):
    """Per-sample level whose marginal spectrum best matches the sample (flow)."""
    coarse = torch.linspace(0.0, 1.0, grid, dtype=torch.float64)
    step = 1.0 / (grid - 1)

    def distance(amp, levels):
        # amp [n, C, F], levels [n, S] -> [n, S]
        model = (1 - levels)[:, :, None, None] ** 2 * data_power + levels[:, :, None, None] ** 2
        diff = (amp[:, None] - model.sqrt()).square()
        return (diff * weights).sum(-1).mean(-1)

    def estimate(x):
        power, _, _ = per_sample_rapsd(x)
        amp = power.sqrt()
        d = distance(amp, coarse.expand(x.shape[0], -1))
        best = coarse[d.argmin(dim=1)]
        fine = best[:, None] + step * torch.linspace(-1, 1, 41, dtype=torch.float64)
        fine = fine.clamp(0.0, 1.0)
        d = distance(amp, fine)
        return fine.gather(1, d.argmin(dim=1, keepdim=True)).reshape(-1)

    return estimate


def online_model(model, x0, grid: int, log: list | None = None):
    """The model with the per-sample apparent level as its state function."""
    power, _, counts = per_sample_rapsd(x0)
    data_power = power.mean(dim=0)  # [C, F]
    weights = counts.to(torch.float64) / counts.sum()
    estimate = apparent_level(data_power, weights, grid)
    current: dict = {}

    def wrapper(apply_model, args):
        x, t = args["input"], args["timestep"]
        current["call"] = (t, estimate(x))
        return apply_model(x, t, **args["c"])

    def state_fn(sigma, latent_hw):
        call = current.get("call")
        if call is None or call[0] is not sigma:
            return sigma
        s64 = sigma.to(torch.float64)
        hat = torch.where(s64 > 0, torch.maximum(call[1], 1e-3 * s64).clamp(max=1.0), s64)
        if log is not None:
            log.append((float(s64.mean()), (hat / s64.clamp(min=1e-12) - 1).tolist()))
        return hat.to(sigma.dtype)

    patched = conditioning_level.patch_model(model, state_fn=state_fn)
    patched.set_model_unet_function_wrapper(wrapper)
    return patched
