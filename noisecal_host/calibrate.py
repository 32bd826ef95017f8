"""Run the NoiseShift calibration search on a ComfyUI MODEL and store it.

The network is evaluated through ComfyUI's own sampling pipeline: a custom
KSAMPLER receives the guided denoiser (conditioning prepared, model loaded
within ComfyUI's memory management for a batch of `max_batch` latents) and
runs the whole search inside it, with cfg = 1 so only the positive branch is
evaluated. The conditioning level of each row is set through the
`conditioning_level` patch; input scaling and the denoised estimate use the
row's true sigma, exactly as NoiseShift will at sampling time.

With `correction` set, the same sampler call then calibrates the Noise Level
Correction table (noisecal/correction.py): there the guided denoiser is
simply called at sigma_hat, which is what the correction patch does when
sampling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ..noisecal import store
from ..noisecal.correction_search import SAMPLERS as CORRECTION_SAMPLERS
from ..noisecal.correction_search import CorrectionResult, calibrate_correction
from ..noisecal.levels import check_descending, check_parameterization
from ..noisecal.noiseshift_search import SearchResult, calibrate_noiseshift
from ..noisecal.spectra import rapsd
from . import conditioning_level
from .fingerprint import checkpoint_key
from .model_info import max_level, parameterization_of, zero_conditioning


def run_search(
    model,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    positive=None,
    mode: str = "fast",
    seed: int = 0,
    max_batch: int = 32,
    progress: Callable[[int, int], None] | None = None,
    correction: str | None = None,
) -> tuple[SearchResult, CorrectionResult | None]:
    """latents: clean latents as a LATENT holds them (before process_latent_in).

    correction: None, or the sampler ("euler", "heun") to calibrate the Noise
    Level Correction table for, after the NoiseShift search.
    """
    if correction is not None and correction not in CORRECTION_SAMPLERS:
        raise store.InvalidInput(f"correction must be None or one of {CORRECTION_SAMPLERS}")
    param = parameterization_of(model)
    family = check_parameterization(param)  # flow or ve: the searches' level space
    steps = sum(1 for s in sigmas.tolist()[:-1] if s > 0)
    phases = 2 if correction else 1
    latents = latents.to(torch.float32)
    x0 = model.model.process_latent_in(latents)  # the model's own latent space
    override = conditioning_level.LevelOverride()
    patched = conditioning_level.patch_model(model, override)
    positive = positive if positive is not None else zero_conditioning(model)
    result: dict = {}

    def search_inside_sampler(
        model_k, x, sampler_sigmas, extra_args=None, callback=None, disable=None
    ):
        extra_args = extra_args or {}

        def denoise_at(xb, sigma):
            """The guided denoiser at `sigma` for input, conditioning and denoised
            alike (what the correction patch does when sampling)."""
            comfy.model_management.throw_exception_if_processing_interrupted()
            # ComfyUI repeats the conditioning to each call's batch size
            out = model_k(xb.to(x.device, x.dtype), sigma.to(x.device, torch.float32), **extra_args)
            return out.to(x0.device, x0.dtype)

        def denoise(xb, sigma, sigma_cond):
            """The same with the network told `sigma_cond` (NoiseShift's search)."""
            cond = sigma_cond.to(x.device, torch.float32)
            with override.active(lambda level: cond):
                return denoise_at(xb, sigma)

        def phase_progress(phase):
            if progress is None:
                return None
            return lambda done, total: progress(phase * steps + done, phases * steps)

        result["search"] = calibrate_noiseshift(
            denoise,
            x0,
            sigmas.tolist(),
            parameterization=family,
            mode=mode,
            seed=seed,
            max_batch=max_batch,
            progress=phase_progress(0),
            sigma_max=max_level(model) if param != "flow" else None,
        )
        if correction:
            result["correction"] = calibrate_correction(
                denoise_at,
                x0,
                sigmas.tolist(),
                parameterization=family,
                seed=seed,
                max_batch=max_batch,
                progress=phase_progress(1),
                sigma_max=max_level(model),
                sampler=correction,
            )
        return x

    shape = (max_batch, *latents.shape[1:])
    dummy = torch.zeros(shape)
    sampler = comfy.samplers.KSAMPLER(search_inside_sampler)
    outer_sigmas = torch.tensor([float(sigmas[0]), 0.0])
    comfy.sample.sample_custom(
        patched,
        dummy,
        1.0,
        sampler,
        outer_sigmas,
        positive,
        positive,
        dummy,
        disable_pbar=True,
        seed=seed,
    )
    return result["search"], result.get("correction")


def comfy_progress(total: int, also: Callable[[int, int], None] | None = None):
    """Progress to ComfyUI's bar; honours Cancel between calibration steps."""
    bar = comfy.utils.ProgressBar(total)

    def update(done: int, total_steps: int) -> None:
        bar.update_absolute(done, total_steps)
        if also is not None:
            also(done, total_steps)
        comfy.model_management.throw_exception_if_processing_interrupted()

    return update


def check_inputs(model, latents, sigmas: torch.Tensor) -> None:
    """Refuse calibration data and schedules the search cannot use, before any
    network call (each of these used to fail deep inside the search, or after it)."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        shape = list(getattr(latents, "shape", [])) or type(latents).__name__
        raise store.CalibrationError(
            f"the calibration latents must be a batch [count, channels, height, width], got {shape}"
        )
    channels = model.model.latent_format.latent_channels
    if latents.shape[1] != channels:
        raise store.CalibrationError(
            f"the calibration latents have {latents.shape[1]} channels but this model's "
            f"latents have {channels}: encode the images with this model's VAE"
        )
    if latents.shape[0] < 1 or min(latents.shape[-2:]) < 2:
        raise store.CalibrationError(
            f"calibration needs at least one latent of at least 2x2 latent pixels "
            f"(16x16 image pixels), got {list(latents.shape)}"
        )
    if not bool(torch.isfinite(latents).all()):
        raise store.CalibrationError(
            "the calibration latents contain NaN or infinite values: check the images and "
            "the VAE that encoded them"
        )
    if sigmas.numel() < 2:
        raise store.CalibrationError(
            f"the schedule has {sigmas.numel()} sigma(s): calibration needs at least two "
            f"levels (one step); connect a longer SIGMAS or set steps >= 1"
        )
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()):
        raise store.CalibrationError("the schedule's sigmas must be finite and not negative")
    try:
        check_descending(sigmas.tolist(), "the schedule's sigmas")
    except ValueError as exc:
        raise store.CalibrationError(str(exc)) from None


def calibrate(
    model,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    image_size,
    source: str,
    positive=None,
    mode="fast",
    seed=0,
    label=None,
    max_batch=32,
    calibration_store=None,
    progress=None,
    correction=None,
    generation: dict | None = None,
) -> tuple[dict, str | None]:
    """Search, build the schema-1 record and (if a store is given) write it atomically.

    generation: the settings self-generated data was made with (None: real data).
    Returns (record, path). Nothing is written unless the search completed.
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    check_inputs(model, latents, sigmas)
    key = checkpoint_key(model, label)
    started = time.perf_counter()
    searched, corrected = run_search(
        model,
        latents,
        sigmas,
        positive=positive,
        mode=mode,
        seed=seed,
        max_batch=max_batch,
        progress=progress,
        correction=correction,
    )
    spectrum = rapsd(model.model.process_latent_in(latents.to(torch.float32))).to_json()
    record = store.make_record(
        key=key,
        image_size=image_size,
        latent_size=tuple(latents.shape[-2:]),
        parameterization=parameterization_of(model),
        method=f"noiseshift-{mode}",
        method_params={**searched.params, "max_batch": max_batch},
        sigmas=searched.sigmas,
        sigma_hat=searched.sigma_hat,
        calibration_set={
            "count": int(latents.shape[0]),
            "source": source,
            "seed": int(seed),
            **({"generation": dict(generation)} if generation is not None else {}),
        },
        error_before=searched.error_before,
        error_after=searched.error_after,
        network_evaluations=searched.nfe + (corrected.nfe if corrected else 0),
        correction=corrected.to_record() if corrected else None,
        spectrum=spectrum,
        wall_time_s=time.perf_counter() - started,
    )
    path = str(calibration_store.save(record)) if calibration_store is not None else None
    return record, path
