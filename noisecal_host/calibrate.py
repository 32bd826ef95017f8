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

import logging
import math
import time
from collections.abc import Callable

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ..noisecal import calibration_record, errors, held_out_check
from ..noisecal.correction_search import SAMPLERS as CORRECTION_SAMPLERS
from ..noisecal.correction_search import CorrectionResult, calibrate_correction
from ..noisecal.levels import check_parameterization
from ..noisecal.noiseshift_search import SearchResult, calibrate_noiseshift
from ..noisecal.sigma_hat_curve import SigmaHatCurve
from ..noisecal.spectra import rapsd
from . import calibrate_inputs, conditioning_level, memory, store
from .calibration_phases import CHECK, CORRECTION, GENERATION, GUIDANCE, NOISESHIFT, Phases
from .fingerprint import checkpoint_key
from .held_out_run import run_check
from .model_info import max_level, parameterization_of, zero_conditioning

log = logging.getLogger("noise_calibration")


def _inside_sampler(model, latents, sigmas, positive, seed, max_batch, work, level_fn=None):
    """Run work(denoise_at, denoise, x0) inside a ComfyUI sampler call on `model`.

    denoise_at(x, sigma): the guided denoiser at sigma for input, conditioning and
    denoised estimate alike (what the correction patch does when sampling), with
    the told level passed through `level_fn` when given (NoiseShift's map).
    denoise(x, sigma, sigma_cond): the same with the network told sigma_cond.
    """
    latents = latents.to(torch.float32)
    x0 = model.model.process_latent_in(latents)  # the model's own latent space
    override = conditioning_level.LevelOverride()
    patched = conditioning_level.patch_model(model, override)
    positive = positive if positive is not None else zero_conditioning(model)

    def inside(model_k, x, sampler_sigmas, extra_args=None, callback=None, disable=None):
        extra_args = extra_args or {}

        def call(xb, sigma):
            comfy.model_management.throw_exception_if_processing_interrupted()
            # ComfyUI repeats the conditioning to each call's batch size
            out = model_k(xb.to(x.device, x.dtype), sigma.to(x.device, torch.float32), **extra_args)
            return out.to(x0.device, x0.dtype)

        def denoise_at(xb, sigma):
            if level_fn is None:
                return call(xb, sigma)
            with override.active(level_fn):
                return call(xb, sigma)

        def denoise(xb, sigma, sigma_cond):
            cond = sigma_cond.to(x.device, torch.float32)
            with override.active(lambda level: cond):
                return call(xb, sigma)

        work(denoise_at, denoise, x0)
        return x

    dummy = torch.zeros((max_batch, *latents.shape[1:]))
    outer_sigmas = torch.tensor([float(sigmas[0]), 0.0])
    comfy.sample.sample_custom(
        patched,
        dummy,
        1.0,
        comfy.samplers.KSAMPLER(inside),
        outer_sigmas,
        positive,
        positive,
        dummy,
        disable_pbar=True,
        seed=seed,
    )


def _phase_progress(progress, steps: int, phases: int):
    def for_phase(phase):
        if progress is None:
            return None
        return lambda done, total: progress(phase * steps + done, phases * steps)

    return for_phase


def _check_correction(correction) -> None:
    if correction is not None and correction not in CORRECTION_SAMPLERS:
        raise errors.InvalidInput(f"correction must be None or one of {CORRECTION_SAMPLERS}")


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
    search_params: dict | None = None,
    warm_start: tuple[list[float], list[float]] | None = None,
) -> tuple[SearchResult, CorrectionResult | None]:
    """latents: clean latents as a LATENT holds them (before process_latent_in).

    correction: None, or the sampler ("euler", "heun") to calibrate the Noise
    Level Correction table for, after the NoiseShift search.
    search_params: overrides of the search mode's settings.
    warm_start: (sigmas, sigma_hat) of this network's calibration at another
    resolution, where the lean search starts each step (`warm_start_curve`).
    """
    _check_correction(correction)
    param = parameterization_of(model)
    family = check_parameterization(param)  # flow or ve: the searches' level space
    phase = _phase_progress(progress, step_count(sigmas), 2 if correction else 1)
    result: dict = {}

    def work(denoise_at, denoise, x0):
        result["search"] = calibrate_noiseshift(
            denoise,
            x0,
            sigmas.tolist(),
            parameterization=family,
            mode=mode,
            seed=seed,
            max_batch=max_batch,
            progress=phase(0),
            sigma_max=max_level(model) if param != "flow" else None,
            search_params=search_params,
            warm_start=warm_start,
        )
        if correction:
            result["correction"] = _correction(
                model, denoise_at, x0, sigmas, family, seed, max_batch, phase(1), correction
            )

    _inside_sampler(model, latents, sigmas, positive, seed, max_batch, work)
    return result["search"], result.get("correction")


def warm_start_curve(calibration_store, key, latent_size, parameterization):
    """The calibration of checkpoint `key` at the latent size nearest to `latent_size`
    (in log token count; a tie goes to the smaller size), other than that size
    itself, made for the same parameterization: ((sigmas, sigma_hat), where), or
    None. `where` names it for the record. A file that does not load is skipped
    (logged): a warm start is an optimization, never a reason to fail."""
    if calibration_store is None:
        return None
    own = (int(latent_size[0]), int(latent_size[1]))
    tokens = math.log(own[0] * own[1])
    files = calibration_store.files_for(key)
    sizes = sorted(
        (size for size in files if size != own),
        key=lambda size: (abs(math.log(size[0] * size[1]) - tokens), size[0] * size[1]),
    )
    for size in sizes:
        try:
            record = store.load_for(files[size], key)
        except errors.CalibrationError as exc:
            log.warning("no warm start: %s", exc)
            continue
        if record["parameterization"] != parameterization:
            continue
        where = {
            "latent_height": size[0],
            "latent_width": size[1],
            "method": record["method"]["name"],
            "file": files[size].name,
        }
        return (record["sigmas"], record["sigma_hat"]), where
    return None


def _correction(
    model, denoise_at, x0, sigmas, family, seed, max_batch, progress, sampler, verify=True
):
    return calibrate_correction(
        denoise_at,
        x0,
        sigmas.tolist(),
        parameterization=family,
        seed=seed,
        max_batch=max_batch,
        progress=progress,
        sigma_max=max_level(model),
        sampler=sampler,
        verify=verify,
    )


def run_correction(
    model,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    searched: SearchResult | None,
    correction: str,
    *,
    verify: bool = True,
    positive=None,
    seed: int = 0,
    max_batch: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> CorrectionResult:
    """The correction table, calibrated alone (`searched` None) or with NoiseShift
    (the curve `searched`) applied, so the pair is one consistent correction, not
    two of the same error: the denoiser is evaluated at sigma_hat and told
    NoiseShift's level for sigma_hat, exactly what the two patches do together
    when sampling. verify: choose the table's strength on these latents (off
    where the held-out check chooses it on others)."""
    _check_correction(correction)
    family = check_parameterization(parameterization_of(model))
    curve = None
    if searched is not None:
        curve = SigmaHatCurve(searched.sigmas, searched.sigma_hat, max_level=max_level(model))
    result: dict = {}

    def work(denoise_at, denoise, x0):
        result["table"] = _correction(
            model, denoise_at, x0, sigmas, family, seed, max_batch, progress, correction, verify
        )

    _inside_sampler(model, latents, sigmas, positive, seed, max_batch, work, level_fn=curve)
    return result["table"]


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
    calibrate_inputs.check_all(model, latents, sigmas)


def step_count(sigmas: torch.Tensor) -> int:
    """Sampler steps the schedule takes (a step from 0 is none)."""
    return sum(1 for s in sigmas.tolist()[:-1] if s > 0)


def plan(sigmas, count: int, check: bool, correction: str | None, generation: int = 0) -> dict:
    """Each phase's expected network evaluations (the progress bar's shares) for a run
    on `count` latents over `sigmas`; generation: rows of self-generation first."""
    steps = step_count(torch.as_tensor(sigmas).flatten())
    fit, held = held_out_check.split(count) if check else (count, 0)
    out = {GENERATION: generation} if generation else {}
    out[NOISESHIFT] = 4 * fit * steps
    if correction:
        out[CORRECTION] = 3 * fit * steps * (2 if correction == "heun" else 1)
    if held:
        out[CHECK] = 4 * held * steps
        out[GUIDANCE] = 2 * len(held_out_check.GUIDANCE_WEIGHTS) * held * steps
    return out


def _noiseshift(model, fit, sigmas, mode, warm_store, key, phases, options):
    """The NoiseShift search as a phase: (result, the record's method params).
    warm_store: where to look for a warm start (lean search only; None: none)."""
    found = None
    if warm_store is not None and mode == "lean":
        found = warm_start_curve(warm_store, key, fit.shape[-2:], parameterization_of(model))
    with phases.phase(NOISESHIFT, model) as step_done:
        warm = found[0] if found else None
        searched, _ = run_search(
            model, fit, sigmas, mode=mode, warm_start=warm, progress=step_done, **options
        )
    params = dict(searched.params)
    if mode == "lean":
        params["warm_start"] = found[1] if found else None
    return searched, params


def _correction_tables(model, fit, sigmas, searched, correction, held, phases, options) -> dict:
    """The correction table, named as the record holds it ({}: none). With the
    check, the table the check can use: with NoiseShift on where the curve shifts."""
    if not correction:
        return {}
    _check_correction(correction)
    shifts = held > 0 and held_out_check.curve_shifts(searched.sigmas, searched.sigma_hat)
    with phases.phase(CORRECTION, model) as step_done:
        table = run_correction(
            model,
            fit,
            sigmas,
            searched if shifts else None,
            correction,
            verify=not held,
            progress=step_done,
            **options,
        )
    return {"correction_joint" if shifts else "correction": table}


def _new_record(model, key, latents, image_size, mode, params, searched, tables, calibration_set):
    # the data spectrum (for the spectral scheduler) from every latent: the check does not use it
    spectrum = rapsd(model.model.process_latent_in(latents.to(torch.float32))).to_json()
    return calibration_record.make_record(
        key=key,
        image_size=image_size,
        latent_size=tuple(latents.shape[-2:]),
        parameterization=parameterization_of(model),
        method=f"noiseshift-{mode}",
        method_params=params,
        sigmas=searched.sigmas,
        sigma_hat=searched.sigma_hat,
        calibration_set=calibration_set,
        error_before=searched.error_before,
        error_after=searched.error_after,
        **{name: t.to_record() for name, t in tables.items()},
        spectrum=spectrum,
    )


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
    check: bool = False,
    warm_start: bool = False,
    phases: Phases | None = None,
) -> tuple[dict, str | None]:
    """Search, build the record and (if a store is given) write it atomically.

    generation: the settings self-generated data was made with (None: real data).
    check: hold back part of the latents (noisecal/held_out_check.py) and run the
    candidates on them; with `correction`, one table is calibrated for the check:
    with NoiseShift on ("correction_joint") where the curve shifts, alone
    ("correction") where it does not (the two are then the same table), its
    strength left to the check. Without the check, the table is calibrated alone
    and its strength verified on the calibration latents. The record stores the
    scores, the recommendation and each phase's cost. Returns (record, path).
    Nothing is written unless it all completed.
    warm_start: with the lean search, start each step from this checkpoint's
    calibration at the nearest other resolution in `calibration_store`, when
    there is one (`warm_start_curve`); the record says which in
    method.params.warm_start (null: none). Off by default: on the benchmark
    it did not pay (docs/results-calibration-cost.md).
    phases: the progress bar and cost of a run that began before (self-generation).
    """
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    check_inputs(model, latents, sigmas)
    key = checkpoint_key(model, label)
    if calibration_store is not None:
        calibration_store.check_writable(key, tuple(latents.shape[-2:]))
    started = time.perf_counter()
    calibrated_on, held = held_out_check.split(latents.shape[0]) if check else (len(latents), 0)
    fit, held_out = latents[:calibrated_on], latents[calibrated_on:]
    if phases is None:
        phases = Phases(plan(sigmas, len(latents), check, correction), progress)
    # as many latents a call as fit in the free memory, at most max_batch
    batch = memory.batch_size(model, latents.shape, max_batch)
    options = dict(positive=positive, seed=seed, max_batch=batch)
    warm_store = calibration_store if warm_start else None
    searched, params = _noiseshift(model, fit, sigmas, mode, warm_store, key, phases, options)
    params = {**params, "max_batch": max_batch}
    tables = _correction_tables(model, fit, sigmas, searched, correction, held, phases, options)
    calibration_set = {"count": int(latents.shape[0]), "source": source, "seed": int(seed)}
    if generation is not None:
        calibration_set["generation"] = dict(generation)
    record = _new_record(
        model, key, latents, image_size, mode, params, searched, tables, calibration_set
    )
    if held:
        batch = memory.batch_size(model, latents.shape, max_batch, rows_per_latent=2)
        checked = dict(sampler=correction or "euler", positive=positive, seed=seed, batch=batch)
        record["check"] = {
            **run_check(model, record, held_out, sigmas, phases=phases, **checked),
            "calibrated_on": calibrated_on,
            "network_evaluations": phases.evaluations(CHECK, GUIDANCE),
        }
    record["cost"] = {
        # the evaluations at the target size; self-generation is in `phases`
        "network_evaluations": phases.evaluations(NOISESHIFT, CORRECTION, CHECK, GUIDANCE),
        "wall_time_s": time.perf_counter() - started,
        "phases": phases.cost,
    }
    calibration_record.validate(record, "new calibration")
    path = str(calibration_store.save(record)) if calibration_store is not None else None
    return record, path
