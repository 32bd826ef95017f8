"""A calibration run from latents and a schedule: what the Calibrate node does
around `calibrate.calibrate`, for the node and the command line alike."""

from __future__ import annotations

import comfy.samplers
import torch

from . import calibrate

LATENT_DOWNSCALE = 8  # pixels per latent pixel for SD1/SDXL/SD3/Flux VAEs


def schedule_sigmas(model, scheduler: str, steps: int, sigmas=None) -> torch.Tensor:
    """The sigmas to calibrate at: `sigmas` when given, else `steps` of `scheduler`
    on the model's own sampling (so a ModelSampling shift is respected)."""
    if sigmas is not None:
        return sigmas
    ms = model.get_model_object("model_sampling")
    return comfy.samplers.calculate_sigmas(ms, scheduler, steps)


def calibrate_latents(
    model, latents: torch.Tensor, sigmas, *, sample_count: int | None = None, **options
):
    """Calibrate on the first `sample_count` latents (LATENT samples, all of them
    when None); the record's image size is the latent's in pixels. `options` are
    calibrate.calibrate's (source, positive, mode, seed, label, max_batch,
    calibration_store, progress, correction). Returns (record, path)."""
    latents = latents[:sample_count] if sample_count is not None else latents
    h, w = latents.shape[-2:]
    return calibrate.calibrate(
        model,
        latents,
        sigmas,
        image_size=(w * LATENT_DOWNSCALE, h * LATENT_DOWNSCALE),
        **options,
    )
