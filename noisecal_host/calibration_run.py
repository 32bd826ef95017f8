"""A calibration run from latents and a schedule: what the Calibrate node does
around `calibrate.calibrate`, for the node and the command line alike."""

from __future__ import annotations

import logging

import comfy.samplers
import torch

from ..noisecal import errors, reuse
from . import calibrate, store

log = logging.getLogger("noise_calibration")

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


def find_reusable(calibration_store, key, latent_size, **request) -> tuple[dict, str] | None:
    """The stored calibration of this checkpoint and latent size that stands for the
    request (noisecal/reuse.py: sigmas, method, correction, count, generation), else
    None. A file that cannot be read or was made for something else is logged and
    recalibrated, never an error: recalibrating loses nothing."""
    path = calibration_store.files_for(key).get(tuple(latent_size))
    if path is None:
        return None
    try:
        record = store.load_for(path, key)
    except errors.CalibrationError as exc:
        log.warning("not reusing it: %s; calibrating again", exc)
        return None
    why = reuse.mismatch(record, **request)
    if why is not None:
        log.info("not reusing %s: %s; calibrating again", path, why)
        return None
    return record, str(path)
